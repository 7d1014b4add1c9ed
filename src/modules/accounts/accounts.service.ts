import type { Kysely, Transaction } from 'kysely';
import type { AccountRow, DB } from '../../db/schema.js';
import { NotFoundError, PreconditionFailedError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';
import type { PrincipalCache } from '../identity/principal-cache.js';
import {
  findAccount,
  findAccountForUpdate,
  insertAccount,
  pageAccounts,
  updateAccount,
} from './accounts.repository.js';

// Other modules read and create accounts through these, never through the repository.
export { findAccount, insertAccount };

export interface AccountPatch {
  name?: string | undefined;
  timeZone?: string | undefined;
  /** null clears it. */
  holidayCountry?: string | null | undefined;
  /** null clears it. */
  supervisoryAuthority?: string | null | undefined;
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
  holidayCountry: 'holiday_country',
  supervisoryAuthority: 'supervisory_authority',
  'dpo.name': 'dpo_name',
  'dpo.email': 'dpo_email',
  'dpo.phone': 'dpo_phone',
} as const;

type AccountValues = Partial<
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
>;

/**
 * Applies a partial update inside the caller's transaction and audits it; with
 * `expectedVersion`, refuses (412) if someone changed the account since. The caller forgets
 * the account's cached principals after commit.
 */
export async function updateAccountIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  patch: AccountPatch,
  expectedVersion?: number,
): Promise<AccountRow> {
  const values: AccountValues = {};
  if (patch.name !== undefined) values[COLUMN_OF.name] = patch.name;
  if (patch.timeZone !== undefined) values[COLUMN_OF.timeZone] = patch.timeZone;
  if (patch.holidayCountry !== undefined) {
    values[COLUMN_OF.holidayCountry] = patch.holidayCountry;
  }
  if (patch.supervisoryAuthority !== undefined) {
    values[COLUMN_OF.supervisoryAuthority] = patch.supervisoryAuthority;
  }
  for (const key of ['name', 'email', 'phone'] as const) {
    const value = patch.dpo?.[key];
    if (value !== undefined) values[COLUMN_OF[`dpo.${key}`]] = value;
  }
  const current = await findAccountForUpdate(trx, accountId);
  if (!current) throw new NotFoundError('The account does not exist.');
  if (expectedVersion !== undefined && current.version !== expectedVersion) {
    throw new PreconditionFailedError();
  }
  const changed = Object.entries(values)
    .filter(([column, value]) => current[column as keyof typeof current] !== value)
    .map(([column]) => column);
  if (changed.length === 0) return current;
  const updated = await updateAccount(trx, accountId, values, current.version + 1);
  const fieldName = Object.fromEntries(Object.entries(COLUMN_OF).map(([k, v]) => [v, k]));
  await recordAudit(trx, ctx, {
    accountId,
    action: 'account.updated',
    entityType: 'account',
    entityId: accountId,
    changedFields: changed.map((column) => fieldName[column] ?? column),
  });
  return updated;
}

/** The customer's own settings: name, time zone, holiday country, DPO contact. */
export function createAccountsService(deps: {
  db: Kysely<DB>;
  principals: Pick<PrincipalCache, 'forgetAccount'>;
}) {
  const { db, principals } = deps;
  return {
    async get(accountId: string) {
      const account = await findAccount(db, accountId);
      if (!account) throw new NotFoundError('The account does not exist.');
      return account;
    },

    /** Every customer account, for the provider's staff. */
    list(page: { limit: number; cursor?: string | undefined }) {
      return pageAccounts(db, page);
    },

    /** Applies a partial update; with `expectedVersion`, refuses (412) if someone changed it since. */
    async update(
      ctx: RequestContext,
      accountId: string,
      patch: AccountPatch,
      expectedVersion?: number,
    ) {
      const result = await db
        .transaction()
        .execute((trx) => updateAccountIn(trx, ctx, accountId, patch, expectedVersion));
      principals.forgetAccount(accountId);
      return result;
    },
  };
}

export type AccountsService = ReturnType<typeof createAccountsService>;
