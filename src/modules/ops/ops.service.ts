import type { Kysely, Transaction } from 'kysely';
import type { AccountRow, DB, UserRow } from '../../db/schema.js';
import { withTenant } from '../../db/tenant.js';
import { ConflictError } from '../../errors.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';
import type { AuthService } from '../identity/auth.service.js';
import type {
  PasswordSetupLink,
  PasswordSetupsService,
} from '../password-setups/password-setups.service.js';
import type { UsersService } from '../users/users.service.js';

export interface NewCustomerAccount {
  name: string;
  timeZone?: string | undefined;
  owner: { email: string };
}

/**
 * What the provider's operations staff do to customer accounts. Their actions on an account
 * are written to that account's audit chain, so the customer can see what the provider did.
 */
export function createOpsService(deps: {
  db: Kysely<DB>;
  auth: Pick<AuthService, 'createAccountWithOwner'>;
  accounts: Pick<AccountsService, 'get' | 'list'>;
  users: Pick<UsersService, 'list'>;
  passwordSetups: Pick<PasswordSetupsService, 'issueIn'>;
}) {
  const { db, auth, accounts, users, passwordSetups } = deps;

  /**
   * Creates a customer account and its first owner, audited, inside the caller's transaction.
   * The operator never knows the owner's password: the owner gets none, and a single-use link
   * to choose it (returned here, once, for the operator to pass on).
   */
  async function createAccountIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    input: NewCustomerAccount,
  ): Promise<{ account: AccountRow; owner: UserRow; passwordSetup: PasswordSetupLink }> {
    const created = await auth.createAccountWithOwner(trx, {
      accountName: input.name,
      timeZone: input.timeZone,
      email: input.owner.email,
      password: null,
    });
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
      changedFields: ['email', 'role'],
    });
    const passwordSetup = await passwordSetups.issueIn(trx, ctx, created.owner);
    return { ...created, passwordSetup };
  }

  return {
    createAccountIn,

    createAccount(ctx: RequestContext, input: NewCustomerAccount) {
      return db.transaction().execute((trx) => createAccountIn(trx, ctx, input));
    },

    /**
     * A new set-password link for the account's owner who has not set a password yet (the
     * first one expired or was lost); the older link stops working. An owner who has a
     * password gets 409 `password_already_set`: the provider never resets a customer's password.
     */
    reissueOwnerPasswordSetup(ctx: RequestContext, accountId: string) {
      // Operators act on one account at a time, bound to it (row-level security).
      return withTenant(accountId, () => reissueIn(ctx, accountId));
    },

    listAccounts(page: { limit: number; cursor?: string | undefined }) {
      return accounts.list(page);
    },

    getAccount(id: string) {
      return withTenant(id, () => accounts.get(id));
    },
  };

  async function reissueIn(ctx: RequestContext, accountId: string) {
    await accounts.get(accountId); // 404 for an unknown account
    const owners = await users.list(accountId, { limit: 100, role: 'owner' });
    const owner = owners.rows.find((user) => user.password_hash === null);
    if (!owner) {
      throw new ConflictError(
        'password_already_set',
        'The account’s owner has set a password already.',
      );
    }
    const passwordSetup = await db
      .transaction()
      .execute((trx) => passwordSetups.issueIn(trx, ctx, owner));
    return { owner, passwordSetup };
  }
}

export type OpsService = ReturnType<typeof createOpsService>;
