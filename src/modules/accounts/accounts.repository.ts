import { type Kysely, sql, type Transaction } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { AccountRow, DB } from '../../db/schema.js';

/** All SQL on `accounts`. Other modules reach the table through the accounts service. */

export function insertAccount(
  db: Kysely<DB> | Transaction<DB>,
  account: { id: string; name: string; time_zone?: string },
) {
  return db.insertInto('accounts').values(account).returningAll().executeTakeFirstOrThrow();
}

export function findAccount(db: Kysely<DB> | Transaction<DB>, id: string) {
  return db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The account, locked until the transaction ends (read-modify-write with a version check). */
export function findAccountForUpdate(trx: Transaction<DB>, id: string) {
  return trx.selectFrom('accounts').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export function updateAccount(
  trx: Transaction<DB>,
  id: string,
  values: Partial<
    Pick<
      AccountRow,
      | 'name'
      | 'time_zone'
      | 'holiday_country'
      | 'supervisory_authority'
      | 'dpo_name'
      | 'dpo_email'
      | 'dpo_phone'
    >
  >,
  version: number,
) {
  return trx
    .updateTable('accounts')
    .set({ ...values, updated_at: new Date(), version })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Every customer account, oldest first (the provider's view). */
export function pageAccounts(
  db: Kysely<DB> | Transaction<DB>,
  page: { limit: number; cursor?: string | undefined },
) {
  // Across accounts, for operators: row-level security shows a connection its own account
  // only, so the directory comes from an owner-defined function (see the RLS migration).
  return pageByCreatedAt(
    db.selectFrom(sql<AccountRow>`account_directory()`.as('accounts')).selectAll(),
    page,
  );
}
