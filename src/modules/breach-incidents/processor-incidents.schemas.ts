import { z } from 'zod';
import type { ProcessorBreachIncidentRow } from '../../db/schema.js';
import { Id, Instant, toIso } from '../../http/schemas.js';
import { BREACH_KINDS, ContactPointInput } from './breach-incidents.schemas.js';
import type { ProcessorAccountRow } from './processor-incidents.repository.js';
import { ACKNOWLEDGEMENT_WINDOW_MS } from './processor-incidents.service.js';

/** The most accounts one processor incident may name (more: `all`). */
export const MAX_NAMED_ACCOUNTS = 10_000;

const Moment = z.iso.datetime({ offset: true });

export const ProcessorIncidentBody = z
  .strictObject({
    title: z.string().trim().min(1).max(200),
    description: z.string().trim().min(1).max(4000),
    kinds: z.array(z.enum(BREACH_KINDS)).min(1).max(3),
    occurredAt: Moment.optional(),
    awareAt: Moment.optional().describe('When the provider became aware. Default: now.'),
    contactPoint: ContactPointInput.describe(
      'The provider’s contact point, copied to accounts that have no DPO contact of their own.',
    ),
    accounts: z
      .union([z.literal('all'), z.array(Id).min(1).max(MAX_NAMED_ACCOUNTS)])
      .describe('The affected accounts by id, or `all`; an unknown id is a 422.'),
  })
  .meta({
    example: {
      title: 'Mail relay logs exposed',
      description: 'A misconfigured log bucket exposed delivery logs with recipient addresses.',
      kinds: ['confidentiality'],
      contactPoint: { name: 'Provider security team', email: 'security@example.com' },
      accounts: 'all',
    },
  });
export type ProcessorIncidentInput = z.output<typeof ProcessorIncidentBody>;

export const PublicCommunicationBody = z
  .strictObject({ url: z.url({ protocol: /^https?$/ }).max(2000), publishedAt: Moment })
  .meta({
    example: {
      url: 'https://status.example.com/incidents/2026-12-relay',
      publishedAt: '2026-12-02T10:00:00Z',
    },
  });

export const ProcessorIncidentSchema = z
  .object({
    id: Id,
    title: z.string(),
    description: z.string(),
    kinds: z.array(z.enum(BREACH_KINDS)),
    occurredAt: Instant.nullable(),
    awareAt: Instant,
    contactPoint: z.object({
      name: z.string().nullable(),
      email: z.string().nullable(),
      phone: z.string().nullable(),
    }),
    targets: z
      .union([z.literal('all'), z.array(Id)])
      .describe('The affected accounts as named, or `all`.'),
    fanOut: z.object({
      done: z.boolean(),
      doneAt: Instant.nullable(),
      toldAccounts: z.number().int(),
    }),
    publicCommunication: z
      .object({ url: z.string(), publishedAt: Instant, recordedAt: Instant })
      .nullable(),
    accounts: z
      .array(
        z.object({
          accountId: Id,
          incidentId: Id.describe('The account’s own incident.'),
          toldAt: Instant.describe('When the account was told: its incident’s awareAt.'),
          webhookDeliveredAt: Instant.nullable(),
          acknowledgedAt: Instant.nullable(),
          needsOtherContact: z
            .boolean()
            .describe(
              `Neither acknowledged nor reached by webhook ${ACKNOWLEDGEMENT_WINDOW_MS / 3_600_000} ` +
                'hours after being told: reach the customer another way.',
            ),
        }),
      )
      .describe('Each account told so far, in id order.'),
    createdAt: Instant,
  })
  .meta({ id: 'ProcessorBreachIncident' });

export function toProcessorIncident({
  row,
  accounts,
  now,
}: {
  row: ProcessorBreachIncidentRow;
  accounts: ProcessorAccountRow[];
  now: Date;
}) {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    kinds: row.kinds,
    occurredAt: toIso(row.occurred_at),
    awareAt: toIso(row.aware_at),
    contactPoint: row.contact_point,
    targets: row.target_account_ids ?? ('all' as const),
    fanOut: {
      done: row.fan_out_done_at !== null,
      doneAt: toIso(row.fan_out_done_at),
      toldAccounts: accounts.length,
    },
    publicCommunication: row.public_communication,
    accounts: accounts.map((a) => ({
      accountId: a.account_id,
      incidentId: a.incident_id,
      toldAt: toIso(a.told_at),
      webhookDeliveredAt: toIso(a.webhook_delivered_at),
      acknowledgedAt: toIso(a.acknowledged_at),
      needsOtherContact:
        a.acknowledged_at === null &&
        a.webhook_delivered_at === null &&
        now.getTime() - a.told_at.getTime() > ACKNOWLEDGEMENT_WINDOW_MS,
    })),
    createdAt: toIso(row.created_at),
  };
}
