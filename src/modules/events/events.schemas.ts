import { z } from 'zod';
import type { EventRow } from '../../db/schema.js';
import { Timestamp, toIso } from '../../http/schemas.js';
import type { LinkSealer } from '../../lib/link-sealing.js';
import { EVENT_TYPES, servedEventData } from './events.repository.js';

export const EventSchema = z
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

export const EventFeedQuery = z.object({
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

export const EventFeed = z.object({
  data: z.array(EventSchema),
  nextCursor: z
    .string()
    .describe(
      'Where to read on. Always present: when `data` is empty there is nothing new yet; poll ' +
        'again later with the same cursor.',
    ),
});

export function toEvent(row: EventRow, sealer: LinkSealer): z.input<typeof EventSchema> {
  return {
    id: row.id,
    seq: Number(row.seq),
    type: row.type as (typeof EVENT_TYPES)[number],
    contactId: row.contact_id,
    data: servedEventData(sealer, row),
    createdAt: toIso(row.created_at),
  };
}
