import type { Kysely, Transaction } from 'kysely';
import type { ApiKeyRow, DB } from '../../db/schema.js';
import { accountOf, inAccountOf, withTenant } from '../../db/tenant.js';
import { NotFoundError, UnauthorizedError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { Actor, ApiKeyScope, RequestContext } from '../identity/actor.js';
import { constantTimeEqualHex, newApiKey, parseApiKey, sha256Hex } from '../identity/tokens.js';
import {
  findApiKey,
  findApiKeyByPrefix,
  findApiKeyForUpdate,
  insertApiKey,
  markApiKeyRevoked,
  pageApiKeys,
  touchApiKey,
} from './api-keys.repository.js';

/**
 * The actor behind an API key (`cst_<prefix>_<secret>`), or 401: unknown, wrong secret,
 * revoked or expired. Called by authentication on every request that presents a key.
 */
export async function authenticateApiKey(db: Kysely<DB>, key: string): Promise<Actor> {
  const parsed = parseApiKey(key);
  const invalid = new UnauthorizedError('The API key is not valid.', 'invalid_api_key');
  if (!parsed) throw invalid;
  // Before the key is checked no account is bound: a definer function names the key's account.
  const row = await inAccountOf(
    () => accountOf(db, 'account_of_api_key', parsed.prefix),
    () => findApiKeyByPrefix(db, parsed.prefix),
  );
  if (!row || !constantTimeEqualHex(row.secret_hash, sha256Hex(parsed.secret))) throw invalid;
  if (row.revoked_at) throw new UnauthorizedError('The API key was revoked.', 'api_key_revoked');
  if (row.expires_at && row.expires_at < new Date()) {
    throw new UnauthorizedError('The API key has expired.', 'api_key_expired');
  }
  // Last use is informational: refresh it at most once a minute rather than on every call.
  if (!row.last_used_at || Date.now() - row.last_used_at.getTime() > 60_000) {
    await withTenant(row.account_id, () => touchApiKey(db, row.account_id, row.id));
  }
  return { type: 'api_key', id: row.id, accountId: row.account_id, scopes: row.scopes };
}

/** Creates a key and audits it inside the caller's transaction; the secret is in `key` only. */
export async function createApiKeyIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  input: { name: string; scopes: ApiKeyScope[]; expiresAt?: string | undefined },
): Promise<{ row: ApiKeyRow; key: string }> {
  const key = newApiKey();
  const row = await insertApiKey(trx, {
    account_id: accountId,
    name: input.name,
    prefix: key.prefix,
    secret_hash: key.secretHash,
    scopes: [...new Set(input.scopes)].sort(),
    created_by: ctx.actor.type === 'user' ? ctx.actor.id : null,
    expires_at: input.expiresAt ? new Date(input.expiresAt) : null,
  });
  await recordAudit(trx, ctx, {
    accountId,
    action: 'api_key.created',
    entityType: 'api_key',
    entityId: row.id,
    changedFields: ['name', 'scopes', 'expiresAt'],
  });
  return { row, key: key.key };
}

/** Revokes a key inside the caller's transaction. Idempotent: a revoked key stays as it is. */
export async function revokeApiKeyIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  id: string,
): Promise<ApiKeyRow> {
  const row = await findApiKeyForUpdate(trx, accountId, id);
  if (!row) throw new NotFoundError('The API key does not exist.');
  if (row.revoked_at) return row;
  const revoked = await markApiKeyRevoked(trx, accountId, id);
  await recordAudit(trx, ctx, {
    accountId,
    action: 'api_key.revoked',
    entityType: 'api_key',
    entityId: id,
    changedFields: ['revokedAt'],
  });
  return revoked;
}

/** Scoped keys for a customer's systems; the secret is shown once and stored only as a hash. */
export function createApiKeysService(deps: { db: Kysely<DB> }) {
  const { db } = deps;
  return {
    async get(accountId: string, id: string) {
      const row = await findApiKey(db, accountId, id);
      if (!row) throw new NotFoundError('The API key does not exist.');
      return row;
    },

    list(
      accountId: string,
      query: { limit: number; cursor?: string | undefined; includeRevoked: boolean },
    ) {
      return pageApiKeys(db, accountId, query);
    },

    create(
      ctx: RequestContext,
      accountId: string,
      input: { name: string; scopes: ApiKeyScope[]; expiresAt?: string | undefined },
    ) {
      return db.transaction().execute((trx) => createApiKeyIn(trx, ctx, accountId, input));
    },

    /** Idempotent: revoking a revoked key changes nothing and succeeds. */
    revoke(ctx: RequestContext, accountId: string, id: string) {
      return db.transaction().execute((trx) => revokeApiKeyIn(trx, ctx, accountId, id));
    },
  };
}

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
