import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { PUBLIC } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { toIso } from '../../http/schemas.js';
import {
  PasswordSetOutcomeSchema,
  PasswordSetupParams,
  setPasswordBody,
} from './password-setups.schemas.js';
import type { PasswordSetupsService } from './password-setups.service.js';

const ERRORS = (() => {
  const responses = problemResponses(400, 404, 409, 410, 429);
  return {
    ...responses,
    400: {
      ...responses[400],
      description:
        'The password breaks the policy (`password_too_short`, `password_common`, …); the ' +
        'link stays usable.',
    },
    404: { ...responses[404], description: 'The link is not valid (`token_invalid`).' },
    409: { ...responses[409], description: 'The link was used already (`token_used`).' },
    410: { ...responses[410], description: 'The link has expired (`token_expired`).' },
  };
})();

/**
 * `/v1/public/password-setups/{token}`: a user the provider created (a new account's owner)
 * chooses their password with the link they were given, without being signed in.
 */
export const passwordSetupsRoutes: FastifyPluginAsyncZod<{
  passwordSetups: PasswordSetupsService;
  /** PASSWORD_MIN_LENGTH, stated in the contract. */
  passwordMinLength: number;
}> = async (app, { passwordSetups, passwordMinLength }) => {
  app.post(
    '/public/password-setups/:token',
    {
      config: { auth: 'public' },
      schema: {
        operationId: 'setPasswordWithLink',
        tags: ['public'],
        summary: 'Set a new user’s password with their set-password link’s token',
        description:
          'The user chooses their password (the same policy as sign-up), and can sign in with ' +
          'it from then on. The token works once and expires after PASSWORD_SETUP_TTL_HOURS ' +
          '(72 by default); an operator can issue a new one.',
        security: PUBLIC,
        params: PasswordSetupParams,
        body: setPasswordBody(passwordMinLength),
        response: { 200: PasswordSetOutcomeSchema, ...ERRORS },
      },
    },
    async (request) => {
      const outcome = await passwordSetups.setPassword(
        request.params.token,
        request.body.password,
        { requestId: String(request.id), ip: request.ip },
      );
      return { email: outcome.email, passwordChangedAt: toIso(outcome.passwordChangedAt) };
    },
  );
};
