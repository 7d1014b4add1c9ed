import { createHmac } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import type { DB } from '../../db/schema.js';
import { emailFingerprint } from '../../lib/keyed-hash.js';

/**
 * Used only when HASH_SECRET is unset and JWT_SECRET too (development): fixed, so fingerprints
 * (and with them the suppression list) stay the same across restarts. Production refuses to
 * start without HASH_SECRET (see `config.ts`).
 */
const DEVELOPMENT_HASH_SECRET = 'custodian-development-hash-secret-never-use-in-production';

/**
 * The secret of the keyed email hashes (Art. 17 erasure, suppression list). Without HASH_SECRET
 * (allowed outside production) it is derived from JWT_SECRET — an HMAC with a fixed label, so
 * the JWT key itself is never used for another purpose — or from a fixed development string,
 * and a warning is logged: such hashes are only as secret as that fallback.
 */
export function hashSecretOf(config: Config, log?: FastifyBaseLogger): string {
  if (config.HASH_SECRET) return config.HASH_SECRET;
  log?.warn(
    { fallback: config.JWT_SECRET ? 'derived from JWT_SECRET' : 'fixed development secret' },
    'HASH_SECRET is not set: erased addresses are hashed with a fallback key; set HASH_SECRET',
  );
  return createHmac('sha256', config.JWT_SECRET ?? DEVELOPMENT_HASH_SECRET)
    .update('custodian/hash-secret-fallback/v1')
    .digest('hex');
}

/** Whether an address (by its fingerprint) is on the account's suppression list. */
export async function isSuppressed(
  db: Kysely<DB>,
  accountId: string,
  emailHash: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('suppressions')
    .select('email_hash')
    .where('account_id', '=', accountId)
    .where('email_hash', '=', emailHash)
    .executeTakeFirst();
  return row !== undefined;
}

/** Adds a fingerprint to the suppression list; already there is fine. */
export async function suppress(
  trx: Kysely<DB>,
  accountId: string,
  emailHash: string,
  reason: string,
): Promise<void> {
  await trx
    .insertInto('suppressions')
    .values({ account_id: accountId, email_hash: emailHash, reason })
    .onConflict((oc) => oc.columns(['account_id', 'email_hash']).doNothing())
    .execute();
}

/**
 * The suppression list (Art. 17): keyed hashes of erased addresses, so that an erased address
 * is not re-created or re-imported by accident. Checking stores nothing.
 */
export function createSuppressionsService(deps: { db: Kysely<DB>; hashSecret: string }) {
  const { db, hashSecret } = deps;
  return {
    /** The keyed hash that stands for a (normalised) address. */
    fingerprint(email: string): string {
      return emailFingerprint(hashSecret, email);
    },

    async check(accountId: string, email: string): Promise<boolean> {
      return isSuppressed(db, accountId, emailFingerprint(hashSecret, email));
    },
  };
}

export type SuppressionsService = ReturnType<typeof createSuppressionsService>;
