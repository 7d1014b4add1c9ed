import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.js';
import { NotFoundError, PreconditionFailedError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';
import { findAccount } from '../identity/identity.repository.js';
import type { PrincipalCache } from '../identity/principal-cache.js';

export interface AccountPatch {
  name?: string | undefined;
  timeZone?: string | undefined;
  dpo?:
    | {
        name?: string | null | undefined;
        email?: string | null | undefined;
        phone?: string | null | undefined;
      }
    | undefined;
}

const COLUMN_OF = {
  name: 'name',
  timeZone: 'time_zone',
  'dpo.name': 'dpo_name',
  'dpo.email': 'dpo_email',
  'dpo.phone': 'dpo_phone',
} as const;

/** The customer's own settings: name, time zone, DPO contact. */
export function createAccountsService(db: Kysely<DB>, principals: PrincipalCache) {
  return {
    async get(accountId: string) {
      const account = await findAccount(db, accountId);
      if (!account) throw new NotFoundError('The account does not exist.');
      return account;
    },

    /** Applies a partial update; with `expectedVersion`, refuses (412) if someone changed it since. */
    async update(
      ctx: RequestContext,
      accountId: string,
      patch: AccountPatch,
      expectedVersion?: number,
    ) {
      const values: Record<string, string | null> = {};
      if (patch.name !== undefined) values[COLUMN_OF.name] = patch.name;
      if (patch.timeZone !== undefined) values[COLUMN_OF.timeZone] = patch.timeZone;
      for (const key of ['name', 'email', 'phone'] as const) {
        const value = patch.dpo?.[key];
        if (value !== undefined) values[COLUMN_OF[`dpo.${key}`]] = value;
      }
      const result = await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('accounts')
          .selectAll()
          .where('id', '=', accountId)
          .forUpdate()
          .executeTakeFirst();
        if (!current) throw new NotFoundError('The account does not exist.');
        if (expectedVersion !== undefined && current.version !== expectedVersion) {
          throw new PreconditionFailedError();
        }
        const changed = Object.entries(values)
          .filter(([column, value]) => current[column as keyof typeof current] !== value)
          .map(([column]) => column);
        if (changed.length === 0) return current;
        const updated = await trx
          .updateTable('accounts')
          .set({ ...values, updated_at: new Date(), version: current.version + 1 })
          .where('id', '=', accountId)
          .returningAll()
          .executeTakeFirstOrThrow();
        const fieldName = Object.fromEntries(Object.entries(COLUMN_OF).map(([k, v]) => [v, k]));
        await recordAudit(trx, ctx, {
          accountId,
          action: 'account.updated',
          entityType: 'account',
          entityId: accountId,
          changedFields: changed.map((column) => fieldName[column] ?? column),
        });
        return updated;
      });
      principals.forgetAccount(accountId);
      return result;
    },
  };
}

export type AccountsService = ReturnType<typeof createAccountsService>;
