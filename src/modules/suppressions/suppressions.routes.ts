import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { SuppressionCheckBody, SuppressionCheckSchema } from '../contacts/contacts.schemas.js';
import type { SuppressionsService } from './suppressions.service.js';

/** `POST /v1/suppressions/check`: is an address suppressed? Stores nothing. */
export const suppressionsRoutes: FastifyPluginAsyncZod<{
  suppressions: SuppressionsService;
}> = async (app, { suppressions }) => {
  app.post(
    '/suppressions/check',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'checkSuppression',
        tags: ['contacts'],
        summary: 'Whether an address is on the suppression list (nothing is stored)',
        description:
          'An erased address (Art. 17) is kept only as a keyed hash on the suppression list. ' +
          'This compares the hash of the given address with the list; the address is not ' +
          'stored or logged.',
        security: BEARER_OR_API_KEY,
        body: SuppressionCheckBody,
        answers: { 200: { description: 'Whether the address is suppressed.' } },
        response: { 200: SuppressionCheckSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => ({
      suppressed: await suppressions.check(accountIdOf(request), request.body.email),
    }),
  );
};
