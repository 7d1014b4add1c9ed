import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../errors.js';
import {
  acceptLinkForms,
  FORM_CONTENT_TYPE,
  HtmlPageSchema,
  htmlPage,
  isFormPost,
  isLinkPageFailure,
  problemOrPage,
  sendPage,
} from '../../http/link-pages.js';
import { PUBLIC } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import {
  TokenParams,
  VerificationLinkBody,
  VerificationOutcomeSchema,
} from './data-subject-requests.schemas.js';
import type { DataSubjectRequestsService } from './data-subject-requests.service.js';
import {
  verificationFailurePage,
  verificationFormPage,
  verificationResultPage,
} from './verification-links.pages.js';
import { verificationPageLanguage } from './verification-links.texts.js';

const FAILURES = {
  404: 'The link is not valid (`token_invalid`).',
  409:
    'The link was used already, or the request no longer waits for it (verified another way, ' +
    'or decided): `token_used`.',
  410: 'The link has expired (`token_expired`).',
} as const;

/**
 * `/v1/public/data-subject-request-verifications/{token}`: the subject confirms that they made a
 * data-subject request (Art. 12(6)) with the single-use link the controller's systems sent them.
 * A GET shows a page (which request, in the contact's language, and a button); only a POST
 * verifies. Mail security scanners follow links with GET, so a GET must never verify for the
 * subject. The POST takes JSON (the controller's own page or system) or a form (the page's
 * button) and answers in kind. Audited as the data subject, without an IP address. Rate limited
 * by the global limiter like every route.
 */
export const verificationLinksRoutes: FastifyPluginAsyncZod<{
  requests: DataSubjectRequestsService;
}> = async (app, { requests }) => {
  // Only the link routes read forms: this plugin's context is theirs alone.
  acceptLinkForms(app);

  const path = '/public/data-subject-request-verifications/:token';

  /** A form post: the link verifies, and the answer is a page in the contact's language. */
  async function verifyOnForm(token: string, request: FastifyRequest, reply: FastifyReply) {
    // Read first, for the language of the answer; the POST itself decides what happens.
    const language = verificationPageLanguage((await requests.verificationView(token)).language);
    try {
      const row = await requests.verifyByLink(token, String(request.id));
      return sendPage(reply, 200, verificationResultPage(language, row.identity_verified_at!));
    } catch (err) {
      if (err instanceof AppError && isLinkPageFailure(err.status)) {
        return sendPage(reply, err.status, verificationFailurePage(err.status, language));
      }
      throw err;
    }
  }

  app.get(
    path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'showDataSubjectRequestVerification',
        tags: ['public'],
        summary: 'The verification page of a data-subject request: a button, nothing verified yet',
        description:
          'What the subject sees on opening the verification link: the type of the request in ' +
          'plain words, the controller (the account’s name) and the day it was received, in ' +
          'the contact’s language (English where no translation exists or no contact is ' +
          'matched), and a button that posts the form to the same URL. Nothing about the ' +
          'subject is shown. A GET changes nothing, so mail scanners that open links cannot ' +
          'verify for the subject.',
        security: PUBLIC,
        params: TokenParams,
        response: {
          200: htmlPage('A page saying which request is confirmed, with a button that posts.'),
          404: htmlPage('A page saying that the link is not valid.'),
          409: htmlPage('A page saying that the link was used already or can no longer be used.'),
          410: htmlPage('A page saying that the link has expired.'),
          ...problemResponses(400, 429),
        },
      },
    },
    async (request, reply) => {
      const view = await requests.verificationView(request.params.token);
      const language = verificationPageLanguage(view.language);
      if (view.refusal || !view.request) {
        const status = view.refusal?.status ?? 404;
        if (!isLinkPageFailure(status)) throw view.refusal;
        return sendPage(reply, status, verificationFailurePage(status, language));
      }
      return sendPage(reply, 200, verificationFormPage(language, view.request));
    },
  );

  app.post(
    path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'verifyDataSubjectRequestByLink',
        tags: ['public'],
        summary: 'The subject confirms a data-subject request with the link’s token',
        description:
          'Moves the request to `identity_verified`, audited as the data subject (without an ' +
          'IP address). The token works once and expires after REQUEST_VERIFICATION_TTL_HOURS. ' +
          'JSON in, JSON out; a form post (the verification page’s button) gets an HTML page. ' +
          'A request without a body reads as `{}`. The answer names no one.',
        security: PUBLIC,
        params: TokenParams,
        consumes: ['application/json', FORM_CONTENT_TYPE],
        body: VerificationLinkBody,
        response: {
          200: {
            description: 'The request is verified.',
            content: {
              'application/json': { schema: VerificationOutcomeSchema },
              'text/html': { schema: HtmlPageSchema },
            },
          },
          404: problemOrPage(FAILURES[404]),
          409: problemOrPage(FAILURES[409]),
          410: problemOrPage(FAILURES[410]),
          ...problemResponses(400, 413, 415, 429),
        },
      },
    },
    async (request, reply) => {
      const { token } = request.params;
      if (isFormPost(request)) return verifyOnForm(token, request, reply);
      const row = await requests.verifyByLink(token, String(request.id));
      return {
        status: 'identity_verified' as const,
        verifiedAt: row.identity_verified_at!.toISOString(),
      };
    },
  );
};
