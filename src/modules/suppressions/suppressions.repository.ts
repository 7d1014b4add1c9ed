import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from '../../db/schema.js';

/**
 * The suppression list (Art. 17): keyed hashes of erased addresses, one account at a time.
 * The only module that reads or writes the `suppressions` table.
 */

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

/**
 * {@link isSuppressed} in set form, for a batch: which of these fingerprints are listed.
 * `= any($1::text[])` sends the batch as one array parameter (planned like `in (...)`).
 */
export async function suppressedFingerprints(
  db: Kysely<DB>,
  accountId: string,
  fingerprints: string[],
): Promise<Set<string>> {
  if (fingerprints.length === 0) return new Set();
  const rows = await db
    .selectFrom('suppressions')
    .select('email_hash')
    .where('account_id', '=', accountId)
    .where('email_hash', '=', sql<string>`any(${fingerprints}::text[])`)
    .execute();
  return new Set(rows.map((row) => row.email_hash));
}

/**
 * Adds fingerprints to the suppression list, in the erasure's transaction; already there is
 * fine. This is what an erasure leaves of a contact's addresses (Art. 17).
 */
export async function suppress(
  trx: Transaction<DB>,
  accountId: string,
  emailHashes: Iterable<string>,
  reason: string,
): Promise<void> {
  const values = [...emailHashes].map((hash) => ({
    account_id: accountId,
    email_hash: hash,
    reason,
  }));
  for (const value of values) {
    await trx
      .insertInto('suppressions')
      .values(value)
      .onConflict((oc) => oc.columns(['account_id', 'email_hash']).doNothing())
      .execute();
  }
}
