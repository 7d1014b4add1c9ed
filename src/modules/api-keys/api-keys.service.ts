import type { Kysely } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import { NotFoundError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { ApiKeyScope, RequestContext } from '../identity/actor.js';
import { newApiKey } from '../identity/tokens.js';

/** Scoped keys for a customer's systems; the secret is shown once and stored only as a hash. */
export function createApiKeysService(db: Kysely<DB>) {
  async function get(accountId: string, id: string) {
    const row = await db
      .selectFrom('api_keys')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('The API key does not exist.');
    return row;
  }

  return {
    get,

    async list(
      accountId: string,
      query: { limit: number; cursor?: string | undefined; includeRevoked: boolean },
    ) {
      let q = db.selectFrom('api_keys').selectAll().where('account_id', '=', accountId);
      if (!query.includeRevoked) q = q.where('revoked_at', 'is', null);
      return pageByCreatedAt(q, query);
    },

    async create(
      ctx: RequestContext,
      accountId: string,
      input: { name: string; scopes: ApiKeyScope[]; expiresAt?: string | undefined },
    ) {
      const key = newApiKey();
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .insertInto('api_keys')
          .values({
            account_id: accountId,
            name: input.name,
            prefix: key.prefix,
            secret_hash: key.secretHash,
            scopes: [...new Set(input.scopes)].sort(),
            created_by: ctx.actor.type === 'user' ? ctx.actor.id : null,
            expires_at: input.expiresAt ? new Date(input.expiresAt) : null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'api_key.created',
          entityType: 'api_key',
          entityId: row.id,
          changedFields: ['name', 'scopes', 'expiresAt'],
        });
        return { row, key: key.key };
      });
    },

    /** Idempotent: revoking a revoked key changes nothing and succeeds. */
    async revoke(ctx: RequestContext, accountId: string, id: string) {
      return db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('api_keys')
          .selectAll()
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .forUpdate()
          .executeTakeFirst();
        if (!row) throw new NotFoundError('The API key does not exist.');
        if (row.revoked_at) return row;
        const revoked = await trx
          .updateTable('api_keys')
          .set({ revoked_at: new Date() })
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'api_key.revoked',
          entityType: 'api_key',
          entityId: id,
          changedFields: ['revokedAt'],
        });
        return revoked;
      });
    },
  };
}

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
