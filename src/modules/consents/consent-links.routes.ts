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
import { problemResponses } from '../../http/problem.js';
import { toIso } from '../../http/schemas.js';
import type { ConsentLinkKind } from './consent-links.js';
import { linkFailurePage, linkFormPage, linkResultPage } from './consent-links.pages.js';
import type { ConsentLinksService, LinkRequest } from './consent-links.service.js';
import { pageLanguage } from './consent-links.texts.js';
import {
  ConfirmLinkBody,
  ConsentLinkOutcomeSchema,
  TokenParams,
  WithdrawLinkBody,
} from './consents.schemas.js';

const FAILURES = {
  404: 'The link is not valid (`token_invalid`).',
  409:
    'The link was used already (`token_used`), or the consent is no longer pending ' +
    '(`consent_not_pending`), or the contact is restricted (`restricted`).',
  410: 'The link has expired (`token_expired`).',
} as const;

const PAGE_RESPONSES = {
  200: htmlPage('A page saying what the link is for, with a button that posts the form.'),
  404: htmlPage('A page saying that the link is not valid.'),
  409: htmlPage('A page saying that the link was used already or can no longer be used.'),
  410: htmlPage('A page saying that the link has expired.'),
  ...problemResponses(400, 429),
};

const POST_RESPONSES = {
  404: problemOrPage(FAILURES[404]),
  409: problemOrPage(FAILURES[409]),
  410: problemOrPage(FAILURES[410]),
  ...problemResponses(400, 413, 415, 429),
};

function linkRequest(request: {
  id: unknown;
  ip: string;
  headers: Record<string, unknown>;
}): LinkRequest {
  const agent = request.headers['user-agent'];
  return {
    requestId: String(request.id),
    ip: request.ip,
    userAgent: typeof agent === 'string' ? agent.slice(0, 1024) : null,
  };
}

/**
 * `/v1/public/*`: the one-time links a data subject follows, without an account. A GET shows a
 * page (what the link is for, in the contact's language, and a button); only a POST acts. Mail
 * security scanners follow links with GET, so a GET must never confirm or withdraw for the
 * person. The POST takes JSON (a customer's landing page or system) or a form (the page's
 * button, or a mail client's RFC 8058 one-click unsubscribe) and answers in kind. Answers never
 * name the person, the contact or the account. Rate limited by the global limiter like every
 * route.
 */
export const consentLinksRoutes: FastifyPluginAsyncZod<{
  consentLinks: ConsentLinksService;
}> = async (app, { consentLinks }) => {
  // Only the link routes read forms: this plugin's context is theirs alone.
  acceptLinkForms(app);

  const links = {
    confirm: {
      path: '/public/consent-confirmations/:token',
      act: consentLinks.confirm,
      state: 'granted' as const,
    },
    withdraw: {
      path: '/public/consent-withdrawals/:token',
      act: consentLinks.withdrawByLink,
      state: 'withdrawn' as const,
    },
  };

  /** The page of a link: what it is for and the button, or why it cannot be used. */
  async function showPage(kind: ConsentLinkKind, token: string, reply: FastifyReply) {
    const view = await consentLinks.view(kind, token);
    const language = pageLanguage(view.language);
    if (view.refusal) {
      if (!isLinkPageFailure(view.refusal.status)) throw view.refusal;
      return sendPage(reply, view.refusal.status, linkFailurePage(view.refusal.status, language));
    }
    return sendPage(reply, 200, linkFormPage(kind, language, view));
  }

  /** A form post: the link acts, and the answer is a page in the contact's language. */
  async function actOnForm(
    kind: ConsentLinkKind,
    token: string,
    request: FastifyRequest,
    reply: FastifyReply,
  ) {
    // Read first, for the language of the answer; the POST itself decides what happens.
    const { language } = await consentLinks.view(kind, token);
    const pageIn = pageLanguage(language);
    try {
      const event = await links[kind].act(token, linkRequest(request));
      return sendPage(reply, 200, linkResultPage(kind, pageIn, event.recorded_at));
    } catch (err) {
      if (err instanceof AppError && isLinkPageFailure(err.status)) {
        return sendPage(reply, err.status, linkFailurePage(err.status, pageIn));
      }
      throw err;
    }
  }

  app.get(
    links.confirm.path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'showConsentConfirmation',
        tags: ['public'],
        summary: 'The double opt-in confirmation page: a button, nothing recorded yet',
        description:
          'What a person sees on opening the confirmation link: the purpose, the notice ' +
          'version and its text, in the contact’s language (English where no translation ' +
          'exists), and a button that posts the form to the same URL. A GET changes nothing, ' +
          'so mail scanners that open links cannot confirm for the person.',
        security: [],
        params: TokenParams,
        response: PAGE_RESPONSES,
      },
    },
    async (request, reply) => showPage('confirm', request.params.token, reply),
  );

  app.post(
    links.confirm.path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'confirmConsent',
        tags: ['public'],
        summary: 'Confirm a double opt-in consent with the link’s token',
        description:
          'Records a `confirmed` event with the time, IP address and user agent of this ' +
          'request; the consent becomes `granted`. The token works once and expires after ' +
          'CONSENT_TOKEN_TTL_HOURS. JSON in, JSON out; a form post (the confirmation page’s ' +
          'button) gets an HTML page. A request without a body reads as `{}`.',
        security: [],
        params: TokenParams,
        consumes: ['application/json', FORM_CONTENT_TYPE],
        body: ConfirmLinkBody,
        response: {
          200: {
            description: 'The consent is confirmed.',
            content: {
              'application/json': { schema: ConsentLinkOutcomeSchema },
              'text/html': { schema: HtmlPageSchema },
            },
          },
          ...POST_RESPONSES,
        },
      },
    },
    async (request, reply) => {
      if (isFormPost(request)) return actOnForm('confirm', request.params.token, request, reply);
      const event = await consentLinks.confirm(request.params.token, linkRequest(request));
      return { state: links.confirm.state, recordedAt: toIso(event.recorded_at) };
    },
  );

  app.get(
    links.withdraw.path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'showConsentWithdrawal',
        tags: ['public'],
        summary: 'The withdrawal page: a button, nothing recorded yet',
        description:
          'What a person sees on opening the withdrawal link: the purpose and the notice ' +
          'version they consented to, in the contact’s language (English where no translation ' +
          'exists), and a button that posts the form to the same URL. A GET changes nothing.',
        security: [],
        params: TokenParams,
        response: PAGE_RESPONSES,
      },
    },
    async (request, reply) => showPage('withdraw', request.params.token, reply),
  );

  app.post(
    links.withdraw.path,
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'withdrawConsentByLink',
        tags: ['public'],
        summary: 'Withdraw a consent with the withdrawal link’s token (Art. 7(3))',
        description:
          'Records a `withdrawn` event (method `withdrawal_link`) with the time, IP address and ' +
          'user agent of this request. The token works once and is valid for 365 days; each ' +
          'new grant comes with a new one. Also the target of RFC 8058 one-click unsubscribe: ' +
          'put the link in the message’s `List-Unsubscribe` header with ' +
          '`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the mail client posts ' +
          '`List-Unsubscribe=One-Click` as a form. JSON in, JSON out; a form post gets an ' +
          'HTML page. A request without a body reads as `{}`.',
        security: [],
        params: TokenParams,
        consumes: ['application/json', FORM_CONTENT_TYPE],
        body: WithdrawLinkBody,
        response: {
          200: {
            description: 'The consent is withdrawn.',
            content: {
              'application/json': { schema: ConsentLinkOutcomeSchema },
              'text/html': { schema: HtmlPageSchema },
            },
          },
          ...POST_RESPONSES,
        },
      },
    },
    async (request, reply) => {
      if (isFormPost(request)) return actOnForm('withdraw', request.params.token, request, reply);
      const event = await consentLinks.withdrawByLink(request.params.token, linkRequest(request));
      return { state: links.withdraw.state, recordedAt: toIso(event.recorded_at) };
    },
  );
};
