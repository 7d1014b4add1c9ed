import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { EventFeed, EventFeedQuery } from './events.schemas.js';
import type { EventsService } from './events.service.js';

/**
 * `GET /v1/events`: the account's outbox as a feed. A customer's mail system polls it (or gets
 * it pushed by a webhook) to send double opt-in messages, to stop sending after a withdrawal
 * or a restriction, and to forget an erased contact; it keeps `nextCursor` and
 * reads on from there, so each event is seen once and in order.
 */
export const eventsRoutes: FastifyPluginAsyncZod<{ events: EventsService }> = async (
  app,
  { events },
) => {
  app.get(
    '/events',
    {
      config: { auth: { permission: 'events:read' } },
      schema: {
        operationId: 'listEvents',
        tags: ['events'],
        summary: 'Read the event feed (consents, contact changes, erasures, requests)',
        description:
          'Events are written in the same transaction as the change they report and numbered ' +
          'in commit order per account. Read with `cursor` = the last `nextCursor` to get only ' +
          'what is new. `seq` counts within your account only. Events about a contact are ' +
          'deleted when the contact is erased, except `contact.erased`, which stays.',
        security: BEARER_OR_API_KEY,
        querystring: EventFeedQuery,
        answers: { 200: { description: 'The events after `cursor`, oldest first.' } },
        response: { 200: EventFeed, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => events.feed(accountIdOf(request), request.query),
  );
};
