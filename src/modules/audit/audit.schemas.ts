import { z } from 'zod';
import type { AuditCheckpointRow, AuditEventRow } from '../../db/schema.js';
import { Id, Instant, PageQuery, pageOf, Timestamp, toIso } from '../../http/schemas.js';

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

/** How to check a checkpoint's signature yourself; part of the contract, in every place. */
export const CHECKPOINT_MESSAGE_DOC =
  'The signature is Ed25519 (RFC 8032) over the UTF-8 bytes of exactly ' +
  '`{"accountId":"<accountId>","seq":<seq>,"hash":"<hash>","at":"<at>"}`: these four keys in ' +
  'this order, no whitespace, `seq` a bare integer, the other values as this API returns ' +
  'them. Verify it with `publicKey` (for example Node.js: ' +
  "`crypto.verify(null, Buffer.from(message), publicKey, Buffer.from(signature, 'base64'))`). " +
  '`keyId` is the first 16 hex digits of the SHA-256 of the key in SPKI DER form.';

/** A real checkpoint (of a key thrown away since): a verifier can be tested against it. */
const SAMPLE_PUBLIC_KEY =
  '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAWYJMzdfwLbOSz7DoYusD7AVvBmFIIYxZyorNRjbemVA=\n-----END PUBLIC KEY-----\n';
const SAMPLE_CHECKPOINT = {
  accountId: '0b9e6f4c-2f0a-4d7e-9a61-3c5f2e8d1a47',
  seq: 300,
  hash: '615d529ae623a975469bbf329227e8fcd6cebb6fe7915e82e4961d323b834e90',
  at: '2026-12-03T18:00:00.000Z',
  keyId: '0134f5ce1634db11',
  signature:
    'PeOA1r5s8opSuLofD7Aa5yVKkw1uLelAd56oAj7Gv+Dp21GOiHoM8XDJAyL6KIYEhzx/Y9V7g+UdA1nIh8fCDA==',
  publicKey: SAMPLE_PUBLIC_KEY,
};

export const CheckpointSchema = z
  .object({
    accountId: Id,
    seq: z.number().int().describe('The entry of the chain this checkpoint vouches for.'),
    hash: z.string().describe('That entry’s `hash` when the checkpoint was signed.'),
    at: Instant.describe('When it was signed (ISO-8601, UTC, milliseconds).'),
    keyId: z.string().describe('Id of the signing key.'),
    signature: z.string().describe(`Base64. ${CHECKPOINT_MESSAGE_DOC}`),
    publicKey: z
      .string()
      .describe('The signing key’s public half, SPKI PEM (kept with each checkpoint).'),
  })
  .meta({ id: 'AuditCheckpoint', example: SAMPLE_CHECKPOINT });

export const CheckpointPageSchema = pageOf(CheckpointSchema)
  .extend({
    keyId: z.string().describe('Id of the key this service signs new checkpoints with now.'),
    publicKey: z.string().describe('That key’s public half, SPKI PEM.'),
  })
  .meta({
    id: 'AuditCheckpointPage',
    example: {
      data: [SAMPLE_CHECKPOINT],
      nextCursor: 'WzMwMF0',
      keyId: SAMPLE_CHECKPOINT.keyId,
      publicKey: SAMPLE_PUBLIC_KEY,
    },
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
        id: Id.nullable().describe('The entry at `seq`; null when it is missing (`truncated`).'),
        reason: z
          .enum([
            'hash_mismatch',
            'broken_link',
            'gap',
            'hash_version_downgrade',
            'checkpoint_signature',
            'checkpoint_mismatch',
            'truncated',
          ])
          .describe(
            '`hash_mismatch`: the entry no longer matches its hash. `broken_link`: its ' +
              '`prevHash` is not the previous entry’s hash. `gap`: entries before it are ' +
              'missing. `hash_version_downgrade`: hashed with an older formula than an ' +
              'entry before it. `checkpoint_signature`: the checkpoint at `seq` does not ' +
              'verify with its own public key. `checkpoint_mismatch`: the entry differs from ' +
              'the signed checkpoint at `seq` (entries were removed or rewritten after the ' +
              'previous checkpoint, and the rest re-hashed). `truncated`: the chain ends ' +
              'before the newest checkpoint; `seq` is the first missing entry.',
          ),
      })
      .nullable()
      .describe('The first entry that fails verification, if any.'),
    checkpoint: z
      .object({
        seq: z.number().int(),
        hash: z.string(),
        at: Instant,
        keyId: z.string(),
        signedWithCurrentKey: z
          .boolean()
          .describe('Signed with the key this service signs with now (false after a rotation).'),
      })
      .nullable()
      .describe(
        'The newest signed checkpoint, which the chain was checked against (with every ' +
          'checkpoint before it); null before the first.',
      ),
  })
  .meta({
    id: 'AuditVerification',
    example: {
      valid: true,
      checked: 42,
      lastSeq: 42,
      lastHash: 'ab12…',
      firstBroken: null,
      checkpoint: {
        seq: 40,
        hash: '9f2c…',
        at: '2026-12-03T18:00:00.000Z',
        keyId: '0134f5ce1634db11',
        signedWithCurrentKey: true,
      },
    },
  });

export function toCheckpoint(row: AuditCheckpointRow) {
  return {
    accountId: row.account_id,
    seq: row.seq,
    hash: row.hash,
    at: toIso(row.signed_at),
    keyId: row.key_id,
    signature: row.signature,
    publicKey: row.public_key,
  };
}

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
