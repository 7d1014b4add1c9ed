import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { cursors } from '../../db/keyset.js';
import type { DB, EventRow } from '../../db/schema.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { Timestamp, toIso } from '../../http/schemas.js';
import { type LinkSealer, linkSealer } from '../../lib/link-sealing.js';
import { hashSecretOf } from '../suppressions/suppressions.service.js';
import { EVENT_TYPES, listEvents, servedEventData } from './events.repository.js';

const EventSchema = z
  .object({
    id: z.uuid(),
    seq: z.number().int().describe('Position in the account’s feed; increases with each event.'),
    type: z.enum(EVENT_TYPES),
    contactId: z.uuid().nullable(),
    data: z
      .record(z.string(), z.unknown())
      .describe('Ids, links and times for the type; never an address or a name.'),
    createdAt: Timestamp,
  })
  .meta({
    id: 'Event',
    description:
      '`consent.granted`: a consent was recorded (not double opt-in). ' +
      '`consent.confirmation_requested`: send the contact the double opt-in message; ' +
      '`data.confirmation.url` is the single-use link to POST to when they confirm. ' +
      '`consent.confirmed`: the contact confirmed. `consent.withdrawn`: stop sending for ' +
      '`data.purposeId`.',
    example: {
      id: '0b7e6a52-3c1d-4e8f-9a0b-1c2d3e4f5a6b',
      seq: 42,
      type: 'consent.confirmation_requested',
      contactId: '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a',
      data: {
        contactId: '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a',
        purposeId: '5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d',
        noticeVersion: 1,
        confirmation: {
          url: '/v1/public/consent-confirmations/q3J0d2xYk1R8nH6pV9sT4wZ2cB7mF5aE0gL1iO3uK8y',
          expiresAt: '2026-11-28T17:00:00.000Z',
        },
      },
      createdAt: '2026-11-25T17:00:00.000Z',
    },
  });

const EventFeedQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size (1–1000).'),
  cursor: z
    .string()
    .max(512)
    .optional()
    .describe('`nextCursor` of the previous call; omit to read from the start of the feed.'),
  type: z
    .enum(EVENT_TYPES)
    .optional()
    .describe('Only events of this type (the cursor still moves past the others).'),
});

const EventFeed = z.object({
  data: z.array(EventSchema),
  nextCursor: z
    .string()
    .describe(
      'Where to read on. Always present: when `data` is empty there is nothing new yet; poll ' +
        'again later with the same cursor.',
    ),
});

function toEvent(row: EventRow, sealer: LinkSealer): z.input<typeof EventSchema> {
  return {
    id: row.id,
    seq: Number(row.seq),
    type: row.type as (typeof EVENT_TYPES)[number],
    contactId: row.contact_id,
    data: servedEventData(sealer, row),
    createdAt: toIso(row.created_at),
  };
}

/**
 * `GET /v1/events`: the account's outbox as a feed. A customer's mail system polls it to send
 * double opt-in messages and to stop sending after a withdrawal; it keeps `nextCursor` and
 * reads on from there, so each event is seen once and in order.
 */
export const eventsRoutes: FastifyPluginAsyncZod<{ db: Kysely<DB>; config: Config }> = async (
  app,
  { db, config },
) => {
  const sealer = linkSealer(hashSecretOf(config));
  app.get(
    '/events',
    {
      config: { auth: { permission: 'events:read' } },
      schema: {
        operationId: 'listEvents',
        tags: ['events'],
        summary: 'Read the event feed (double opt-in requests, confirmations, withdrawals)',
        description:
          'Events are written in the same transaction as the change they report and numbered ' +
          'in commit order per account. Read with `cursor` = the last `nextCursor` to get only ' +
          'what is new. Events about a contact are deleted when the contact is erased.',
        security: BEARER_OR_API_KEY,
        querystring: EventFeedQuery,
        response: { 200: EventFeed, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { limit, cursor, type } = request.query;
      const afterSeq = cursors.eventSeq.decode(cursor)?.[0] ?? 0;
      const rows = await listEvents(db, accountIdOf(request), {
        afterSeq,
        limit,
        types: type ? [type] : undefined,
      });
      const last = rows[rows.length - 1];
      return {
        data: rows.map((row) => toEvent(row, sealer)),
        nextCursor: cursors.eventSeq.encode([last ? Number(last.seq) : afterSeq]),
      };
    },
  );
};
