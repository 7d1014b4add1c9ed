import { z } from 'zod';
import type { WebhookDeliveryRow, WebhookEndpointRow } from '../../db/schema.js';
import { Id, PageQuery, Timestamp, toIso } from '../../http/schemas.js';
import { EVENT_TYPES } from '../events/events.service.js';

export const WEBHOOK_STATUSES = ['active', 'disabled'] as const;
export const DELIVERY_STATUSES = [
  'pending',
  'sending',
  'delivered',
  'failed',
  'cancelled',
] as const;

const WebhookUrl = z
  .url({ protocol: /^https?$/, error: 'must be an https URL' })
  .max(2048)
  .describe(
    'Where the events are POSTed: https, a public host (loopback, private, link-local and ' +
      'metadata addresses are refused, also after DNS, and redirects are not followed).',
  );

const EventTypes = z
  .array(z.enum(EVENT_TYPES))
  .min(1)
  .max(EVENT_TYPES.length)
  .refine((types) => new Set(types).size === types.length, { message: 'must not repeat a type' })
  .describe('The event types sent to this endpoint (as on `GET /v1/events`).');

const Description = z.string().trim().max(500).nullable();

const WEBHOOK_EXAMPLE = {
  id: '0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b',
  url: 'https://hooks.example.com/custodian',
  description: 'Mail system: double opt-in and withdrawals',
  eventTypes: ['consent.confirmation_requested', 'consent.withdrawn'],
  status: 'active',
  previousSecretExpiresAt: null,
  createdAt: '2026-12-05T09:00:00.000Z',
  updatedAt: '2026-12-05T09:00:00.000Z',
  version: 1,
};

export const WebhookSchema = z
  .object({
    id: Id,
    url: z.string(),
    description: z.string().nullable(),
    eventTypes: z.array(z.enum(EVENT_TYPES)),
    status: z
      .enum(WEBHOOK_STATUSES)
      .describe('`disabled`: nothing is sent; events keep queueing and go out once `active`.'),
    previousSecretExpiresAt: Timestamp.nullable().describe(
      'After a secret rotation, messages are signed with the old secret too until this time.',
    ),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    version: z.number().int().describe('Increases with each change; the ETag carries it.'),
  })
  .meta({
    id: 'Webhook',
    description: 'An endpoint the account’s events are POSTed to, signed (Standard Webhooks).',
    example: WEBHOOK_EXAMPLE,
  });

export const WebhookWithSecretSchema = WebhookSchema.extend({
  secret: z
    .string()
    .describe('The signing secret (`whsec_…`). Shown only in this response: store it now.'),
}).meta({
  id: 'WebhookWithSecret',
  example: { ...WEBHOOK_EXAMPLE, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3NNpPX7VcGw=' },
});

export const CreateWebhookBody = z
  .object({ url: WebhookUrl, eventTypes: EventTypes, description: Description.optional() })
  .strict()
  .meta({
    example: {
      url: 'https://hooks.example.com/custodian',
      eventTypes: ['consent.confirmation_requested', 'consent.withdrawn'],
      description: 'Mail system: double opt-in and withdrawals',
    },
  });

export const UpdateWebhookBody = z
  .object({
    url: WebhookUrl.optional(),
    eventTypes: EventTypes.optional(),
    description: Description.optional(),
    status: z.enum(WEBHOOK_STATUSES).optional(),
  })
  .strict()
  .refine((body) => Object.values(body).some((v) => v !== undefined), {
    message: 'name one field to change',
  })
  .meta({ minProperties: 1, example: { status: 'disabled' } });

export const WebhookIfMatchHeaders = z.looseObject({
  'if-match': z.string().max(100).optional().describe('ETag from a previous read; 412 if stale.'),
});

export const DeliveryParams = z.object({ id: Id, deliveryId: Id });

export const DeliveriesQuery = PageQuery.extend({
  status: z.enum(DELIVERY_STATUSES).optional().describe('Only deliveries in this status.'),
});

export const DeliverySchema = z
  .object({
    id: Id,
    webhookId: Id,
    eventId: Id.describe('The event, and the `webhook-id` header of every attempt.'),
    eventSeq: z.number().int(),
    eventType: z.string(),
    status: z
      .enum(DELIVERY_STATUSES)
      .describe(
        '`pending` (due at `nextAttemptAt`), `sending`, `delivered` (a 2xx answer), `failed` ' +
          '(still failing when its retry window ended) or `cancelled` (the event was erased ' +
          'with its contact).',
      ),
    attempts: z.number().int(),
    nextAttemptAt: Timestamp.nullable().describe('When it is tried next; null unless pending.'),
    lastAttempt: z
      .object({
        at: Timestamp,
        statusCode: z.number().int().nullable().describe('The answer’s HTTP status, if any.'),
        errorCode: z
          .string()
          .nullable()
          .describe(
            'Why it did not count as delivered: `http_error`, `redirect_not_followed`, ' +
              '`timeout`, `dns_failed`, `forbidden_address`, `url_forbidden`, ' +
              '`connection_refused`, `tls_error`, `network_error`…',
          ),
        durationMs: z.number().int().nullable(),
      })
      .nullable()
      .describe('The newest attempt: codes and timing only, never a body.'),
    deliveredAt: Timestamp.nullable().describe(
      'When a 2xx answer last came (a redelivery keeps it until the next one).',
    ),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .meta({
    id: 'WebhookDelivery',
    example: {
      id: '0193a1b3-0a1b-7c2d-9e3f-4a5b6c7d8e9f',
      webhookId: '0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b',
      eventId: '0193a1b3-0000-7aaa-8bbb-0c1d2e3f4a5b',
      eventSeq: 42,
      eventType: 'consent.withdrawn',
      status: 'pending',
      attempts: 1,
      nextAttemptAt: '2026-12-05T09:01:00.000Z',
      lastAttempt: {
        at: '2026-12-05T09:00:30.000Z',
        statusCode: 503,
        errorCode: 'http_error',
        durationMs: 84,
      },
      deliveredAt: null,
      createdAt: '2026-12-05T09:00:29.000Z',
      updatedAt: '2026-12-05T09:00:30.000Z',
    },
  });

/** The one place an endpoint row becomes an API object (its secrets never do). */
export function toWebhook(row: WebhookEndpointRow, now: Date): z.infer<typeof WebhookSchema> {
  const previousLive =
    row.previous_secret_expires_at !== null && row.previous_secret_expires_at > now;
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: row.event_types as z.infer<typeof WebhookSchema>['eventTypes'],
    status: row.status,
    previousSecretExpiresAt: previousLive ? toIso(row.previous_secret_expires_at) : null,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}

export function toDelivery(row: WebhookDeliveryRow): z.infer<typeof DeliverySchema> {
  return {
    id: row.id,
    webhookId: row.endpoint_id,
    eventId: row.event_id,
    eventSeq: Number(row.event_seq),
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.status === 'pending' ? toIso(row.next_attempt_at) : null,
    lastAttempt: row.last_attempt_at
      ? {
          at: toIso(row.last_attempt_at),
          statusCode: row.last_status_code,
          errorCode: row.last_error_code,
          durationMs: row.last_duration_ms,
        }
      : null,
    deliveredAt: toIso(row.delivered_at),
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
  };
}
