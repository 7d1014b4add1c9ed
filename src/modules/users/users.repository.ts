import type { Kysely, Transaction } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { DB, NewUser, UserRole, UserRow } from '../../db/schema.js';

/** All SQL on `users`. Other modules reach the table through the users service. */

export function findUserByEmail(db: Kysely<DB> | Transaction<DB>, email: string) {
  return db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
}

export function findUserById(db: Kysely<DB> | Transaction<DB>, id: string) {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** A user of one account; undefined for another account's user. */
export function findAccountUser(db: Kysely<DB> | Transaction<DB>, accountId: string, id: string) {
  return db
    .selectFrom('users')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** {@link findAccountUser}, locked until the transaction ends. */
export function findAccountUserForUpdate(trx: Transaction<DB>, accountId: string, id: string) {
  return trx
    .selectFrom('users')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

/** One page of an account's users, optionally of one role, oldest first. */
export function pageAccountUsers(
  db: Kysely<DB> | Transaction<DB>,
  accountId: string,
  page: { limit: number; cursor?: string | undefined; role?: UserRole | undefined },
) {
  let q = db.selectFrom('users').selectAll().where('account_id', '=', accountId);
  if (page.role) q = q.where('role', '=', page.role);
  return pageByCreatedAt(q, page);
}

/**
 * Inserts a user, or nothing when another user has the address: the unique index decides, so
 * two sign-ups racing for one address (each past any check of its own) end as one user and one
 * `undefined`, never as a unique-violation error.
 */
export function insertUser(
  db: Kysely<DB> | Transaction<DB>,
  user: NewUser,
): Promise<UserRow | undefined> {
  return db
    .insertInto('users')
    .values(user)
    .onConflict((oc) => oc.column('email').doNothing())
    .returningAll()
    .executeTakeFirst();
}

export function setUserRole(trx: Transaction<DB>, id: string, role: UserRole) {
  return trx
    .updateTable('users')
    .set({ role, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function deleteUser(trx: Transaction<DB>, id: string) {
  return trx.deleteFrom('users').where('id', '=', id).execute();
}

/** Replaces the stored hash of the same password (stronger parameters); not a password change. */
export function replacePasswordHash(trx: Transaction<DB>, id: string, passwordHash: string) {
  return trx
    .updateTable('users')
    .set({ password_hash: passwordHash })
    .where('id', '=', id)
    .execute();
}

/** A new password: its hash, and the time it changed (the password's age starts over). */
export function setPassword(trx: Transaction<DB>, id: string, passwordHash: string) {
  return trx
    .updateTable('users')
    .set({ password_hash: passwordHash, password_changed_at: new Date(), updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export function countOwners(db: Kysely<DB> | Transaction<DB>, accountId: string) {
  return db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<string | number | bigint>().as('n'))
    .where('account_id', '=', accountId)
    .where('role', '=', 'owner' satisfies UserRole)
    .executeTakeFirstOrThrow()
    .then((r) => Number(r.n));
}
