import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problemResponses } from '../../http/problem.js';
import { toIso } from '../../http/schemas.js';
import type { ConsentLinksService, LinkRequest } from './consent-links.service.js';
import { ConsentLinkOutcomeSchema, TokenParams } from './consents.schemas.js';

const LINK_ERRORS = (() => {
  const responses = problemResponses(400, 404, 409, 410, 429);
  return {
    ...responses,
    404: { ...responses[404], description: 'The link is not valid (`token_invalid`).' },
    409: {
      ...responses[409],
      description:
        'The link was used already (`token_used`), or the consent is no longer pending ' +
        '(`consent_not_pending`), or the contact is restricted (`restricted`).',
    },
    410: { ...responses[410], description: 'The link has expired (`token_expired`).' },
  };
})();

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
 * `/v1/public/*`: the one-time links a data subject follows, without an account. They are
 * POST, not GET, so mail scanners that prefetch links cannot confirm or withdraw for the
 * person: the customer's landing page posts the token. Answers never name the person, the
 * contact or the account. Rate limited by the global limiter like every route.
 */
export const consentLinksRoutes: FastifyPluginAsyncZod<{
  consentLinks: ConsentLinksService;
}> = async (app, { consentLinks }) => {
  app.post(
    '/public/consent-confirmations/:token',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'confirmConsent',
        tags: ['public'],
        summary: 'Confirm a double opt-in consent with the link’s token',
        description:
          'Records a `confirmed` event with the time, IP address and user agent of this ' +
          'request; the consent becomes `granted`. The token works once and expires after ' +
          'CONSENT_TOKEN_TTL_HOURS.',
        security: [],
        params: TokenParams,
        response: { 200: ConsentLinkOutcomeSchema, ...LINK_ERRORS },
      },
    },
    async (request) => {
      const event = await consentLinks.confirm(request.params.token, linkRequest(request));
      return { state: 'granted' as const, recordedAt: toIso(event.recorded_at) };
    },
  );

  app.post(
    '/public/consent-withdrawals/:token',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'withdrawConsentByLink',
        tags: ['public'],
        summary: 'Withdraw a consent with the withdrawal link’s token (Art. 7(3))',
        description:
          'Records a `withdrawn` event (method `withdrawal_link`) with the time, IP address and ' +
          'user agent of this request. The token works once and is valid for 365 days; each ' +
          'new grant comes with a new one.',
        security: [],
        params: TokenParams,
        response: { 200: ConsentLinkOutcomeSchema, ...LINK_ERRORS },
      },
    },
    async (request) => {
      const event = await consentLinks.withdrawByLink(request.params.token, linkRequest(request));
      return { state: 'withdrawn' as const, recordedAt: toIso(event.recorded_at) };
    },
  );
};
