import type { Kysely, Transaction } from 'kysely';
import type { AccountRow, DB, UserRow } from '../../db/schema.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';
import type { AuthService } from '../identity/auth.service.js';

export interface NewCustomerAccount {
  name: string;
  timeZone?: string | undefined;
  owner: { email: string; password: string };
}

/**
 * What the provider's operations staff do to customer accounts. Their actions on an account
 * are written to that account's audit chain, so the customer can see what the provider did.
 */
export function createOpsService(deps: {
  db: Kysely<DB>;
  auth: Pick<AuthService, 'createAccountWithOwner'>;
  accounts: Pick<AccountsService, 'get' | 'list'>;
}) {
  const { db, auth, accounts } = deps;

  /** Creates a customer account and its first owner, audited, inside the caller's transaction. */
  async function createAccountIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    input: NewCustomerAccount,
  ): Promise<{ account: AccountRow; owner: UserRow }> {
    const created = await auth.createAccountWithOwner(
      trx,
      {
        accountName: input.name,
        timeZone: input.timeZone,
        email: input.owner.email,
        password: input.owner.password,
      },
      'body.owner.password',
    );
    await recordAudit(trx, ctx, {
      accountId: created.account.id,
      action: 'account.created',
      entityType: 'account',
      entityId: created.account.id,
      changedFields: ['name', 'timeZone'],
    });
    await recordAudit(trx, ctx, {
      accountId: created.account.id,
      action: 'user.created',
      entityType: 'user',
      entityId: created.owner.id,
      changedFields: ['email', 'role', 'password'],
    });
    return created;
  }

  return {
    createAccountIn,

    createAccount(ctx: RequestContext, input: NewCustomerAccount) {
      return db.transaction().execute((trx) => createAccountIn(trx, ctx, input));
    },

    listAccounts(page: { limit: number; cursor?: string | undefined }) {
      return accounts.list(page);
    },

    getAccount(id: string) {
      return accounts.get(id);
    },
  };
}

export type OpsService = ReturnType<typeof createOpsService>;
