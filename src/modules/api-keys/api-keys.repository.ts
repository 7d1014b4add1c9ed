import type { Kysely, Transaction } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';

/** All SQL on `api_keys`. Authentication reaches the table through the API-keys service. */

export function findApiKey(db: Kysely<DB> | Transaction<DB>, accountId: string, id: string) {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** {@link findApiKey}, locked until the transaction ends. */
export function findApiKeyForUpdate(trx: Transaction<DB>, accountId: string, id: string) {
  return trx
    .selectFrom('api_keys')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

/** One page of an account's keys, oldest first; revoked ones only when asked for. */
export function pageApiKeys(
  db: Kysely<DB> | Transaction<DB>,
  accountId: string,
  page: { limit: number; cursor?: string | undefined; includeRevoked: boolean },
) {
  let q = db.selectFrom('api_keys').selectAll().where('account_id', '=', accountId);
  if (!page.includeRevoked) q = q.where('revoked_at', 'is', null);
  return pageByCreatedAt(q, page);
}

export function insertApiKey(
  trx: Transaction<DB>,
  key: {
    account_id: string;
    name: string;
    prefix: string;
    secret_hash: string;
    scopes: string[];
    created_by: string | null;
    expires_at: Date | null;
  },
) {
  return trx.insertInto('api_keys').values(key).returningAll().executeTakeFirstOrThrow();
}

export function markApiKeyRevoked(trx: Transaction<DB>, accountId: string, id: string) {
  return trx
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The key with this public prefix, of any account: authentication then checks the secret. */
export function findApiKeyByPrefix(db: Kysely<DB> | Transaction<DB>, prefix: string) {
  return db.selectFrom('api_keys').selectAll().where('prefix', '=', prefix).executeTakeFirst();
}

export function touchApiKey(db: Kysely<DB> | Transaction<DB>, accountId: string, id: string) {
  return db
    .updateTable('api_keys')
    .set({ last_used_at: new Date() })
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .execute();
}
