import type { Kysely, Selectable, Transaction } from 'kysely';
import type { DB, PasswordSetupsTable } from '../../db/schema.js';

/** All SQL on `password_setups`. Other modules issue and redeem links through the service. */

export type PasswordSetupRow = Selectable<PasswordSetupsTable>;

export async function insertPasswordSetup(
  trx: Transaction<DB>,
  row: { token_hash: string; account_id: string; user_id: string; expires_at: Date },
): Promise<void> {
  await trx.insertInto('password_setups').values(row).execute();
}

export function findPasswordSetup(
  db: Kysely<DB> | Transaction<DB>,
  tokenHash: string,
): Promise<PasswordSetupRow | undefined> {
  return db
    .selectFrom('password_setups')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/** {@link findPasswordSetup}, locked until the transaction ends: two uses cannot both win. */
export function lockPasswordSetup(
  trx: Transaction<DB>,
  tokenHash: string,
): Promise<PasswordSetupRow | undefined> {
  return trx
    .selectFrom('password_setups')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .forUpdate()
    .executeTakeFirst();
}

export async function markPasswordSetupUsed(trx: Transaction<DB>, tokenHash: string, at: Date) {
  await trx
    .updateTable('password_setups')
    .set({ used_at: at })
    .where('token_hash', '=', tokenHash)
    .execute();
}

/** Deletes a user's links that were never used: a newer link, or the password set, replaces them. */
export async function deleteUnusedPasswordSetups(trx: Transaction<DB>, userId: string) {
  await trx
    .deleteFrom('password_setups')
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .execute();
}
