import { z } from 'zod';
import type { AuditEventRow } from '../../db/schema.js';
import { Id, PageQuery, Timestamp, toIso } from '../../http/schemas.js';

export const AuditEventSchema = z
  .object({
    id: Id,
    seq: z.number().int().describe('Position in the account’s chain, from 1.'),
    occurredAt: Timestamp,
    actor: z.object({
      type: z.string().describe('user, api_key or operator.'),
      id: z.string().nullable(),
    }),
    action: z.string().describe('e.g. `user.created`, `account.updated`.'),
    entity: z.object({ type: z.string(), id: z.string().nullable() }),
    changedFields: z.array(z.string()).describe('Names of changed fields; never their values.'),
    requestId: z.string().nullable(),
    ip: z.string().nullable(),
    prevHash: z.string().describe('Hash of the previous entry (64 zeros for the first).'),
    hash: z.string().describe('SHA-256 over this entry’s fields and prevHash.'),
  })
  .meta({ id: 'AuditEvent' });

export const AuditQuery = PageQuery.extend({
  action: z.string().max(100).optional(),
  entityType: z.string().max(50).optional(),
  entityId: z.string().max(100).optional(),
  actorId: z.string().max(100).optional(),
  since: Timestamp.optional().describe('Entries at or after this time.'),
  until: Timestamp.optional().describe('Entries before this time.'),
});

export const VerificationSchema = z
  .object({
    valid: z.boolean(),
    checked: z.number().int().describe('Entries checked.'),
    lastSeq: z.number().int().nullable().describe('Last entry verified intact.'),
    lastHash: z.string().nullable(),
    firstBroken: z
      .object({
        seq: z.number().int(),
        id: Id,
        reason: z
          .enum(['hash_mismatch', 'broken_link', 'gap', 'hash_version_downgrade'])
          .describe(
            '`hash_mismatch`: the entry no longer matches its hash. `broken_link`: its ' +
              '`prevHash` is not the previous entry’s hash. `gap`: entries before it are ' +
              'missing. `hash_version_downgrade`: hashed with an older formula than an ' +
              'entry before it.',
          ),
      })
      .nullable()
      .describe('The first entry that fails verification, if any.'),
  })
  .meta({
    id: 'AuditVerification',
    example: { valid: true, checked: 42, lastSeq: 42, lastHash: 'ab12…', firstBroken: null },
  });

export function toAuditEvent(row: AuditEventRow) {
  return {
    id: row.id,
    seq: row.seq,
    occurredAt: toIso(row.occurred_at),
    actor: { type: row.actor_type, id: row.actor_id },
    action: row.action,
    entity: { type: row.entity_type, id: row.entity_id },
    changedFields: row.changed_fields,
    requestId: row.request_id,
    ip: row.ip,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
