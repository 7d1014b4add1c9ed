import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { AccountRole, RequestContext } from '../identity/actor.js';
import { enforcePasswordPolicy } from '../identity/auth.service.js';
import {
  countOwners,
  emailTaken,
  findAccount,
  insertUser,
  revokeUserSessions,
} from '../identity/identity.repository.js';
import { hashPassword } from '../identity/password.js';
import type { PrincipalCache } from '../identity/principal-cache.js';

/** Only an owner may create, promote to, or demote from, the owner role. */
function assertMayAssign(ctx: RequestContext, role: AccountRole | undefined, currentRole?: string) {
  const isOwner = ctx.actor.type === 'user' && ctx.actor.role === 'owner';
  if ((role === 'owner' || currentRole === 'owner') && !isOwner) {
    throw new ForbiddenError('Only an owner may grant or remove the owner role.', 'owner_required');
  }
}

/** The people of one account and their roles. Every query is scoped by the account id. */
export function createUsersService(deps: {
  db: Kysely<DB>;
  config: Config;
  principals: PrincipalCache;
}) {
  const { db, config, principals } = deps;

  async function getRow(accountId: string, id: string) {
    const row = await db
      .selectFrom('users')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new NotFoundError('The user does not exist.');
    return row;
  }

  return {
    get: getRow,

    async list(
      accountId: string,
      query: { limit: number; cursor?: string | undefined; role?: string | undefined },
    ) {
      let q = db.selectFrom('users').selectAll().where('account_id', '=', accountId);
      if (query.role) q = q.where('role', '=', query.role as AccountRole);
      return pageByCreatedAt(q, query);
    },

    async create(
      ctx: RequestContext,
      accountId: string,
      input: { email: string; password: string; role: AccountRole },
    ) {
      assertMayAssign(ctx, input.role);
      const account = await findAccount(db, accountId);
      enforcePasswordPolicy(config, input.password, {
        email: input.email,
        accountName: account?.name,
      });
      const passwordHash = await hashPassword(input.password);
      return db.transaction().execute(async (trx) => {
        const user = await insertUser(trx, {
          account_id: accountId,
          email: input.email,
          password_hash: passwordHash,
          role: input.role,
        });
        if (!user) throw emailTaken();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'user.created',
          entityType: 'user',
          entityId: user.id,
          changedFields: ['email', 'role', 'password'],
        });
        return user;
      });
    },

    async changeRole(ctx: RequestContext, accountId: string, id: string, role: AccountRole) {
      const updated = await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('users')
          .selectAll()
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .forUpdate()
          .executeTakeFirst();
        if (!current) throw new NotFoundError('The user does not exist.');
        assertMayAssign(ctx, role, current.role);
        if (current.role === role) return current;
        if (current.role === 'owner' && (await countOwners(trx, accountId)) <= 1) {
          throw new ConflictError('last_owner', 'An account must keep at least one owner.');
        }
        const updated = await trx
          .updateTable('users')
          .set({ role, updated_at: new Date() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'user.role_changed',
          entityType: 'user',
          entityId: id,
          changedFields: ['role'],
        });
        return updated;
      });
      principals.forgetUser(id);
      return updated;
    },

    async remove(ctx: RequestContext, accountId: string, id: string) {
      await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('users')
          .selectAll()
          .where('account_id', '=', accountId)
          .where('id', '=', id)
          .forUpdate()
          .executeTakeFirst();
        if (!current) throw new NotFoundError('The user does not exist.');
        assertMayAssign(ctx, undefined, current.role);
        if (current.role === 'owner' && (await countOwners(trx, accountId)) <= 1) {
          throw new ConflictError('last_owner', 'An account must keep at least one owner.');
        }
        await revokeUserSessions(trx, id, 'user_removed');
        await trx.deleteFrom('users').where('id', '=', id).execute();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'user.removed',
          entityType: 'user',
          entityId: id,
        });
      });
      principals.forgetUser(id);
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
