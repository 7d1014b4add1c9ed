import type { Kysely, Transaction } from 'kysely';
import type { Config } from '../../config.js';
import type { DB, NewUser, UserRow } from '../../db/schema.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../../errors.js';
import { findAccount } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import type { AccountRole, RequestContext } from '../identity/actor.js';
import { endUserSessions, enforcePasswordPolicy } from '../identity/auth.service.js';
import { hashPassword } from '../identity/password.js';
import type { PrincipalCache } from '../identity/principal-cache.js';
import {
  countOwners,
  deleteUser,
  findAccountUser,
  findAccountUserForUpdate,
  insertUser,
  pageAccountUsers,
  replacePasswordHash,
  setPassword,
  setUserRole,
} from './users.repository.js';

// Other modules read users and change their passwords through these, never through the repository.
export { findUserByEmail, findUserById } from './users.repository.js';
export { replacePasswordHash, setPassword };

/** The answer when an address is already a user's. */
export function emailTaken(): ConflictError {
  return new ConflictError('email_taken', 'A user with this email already exists.');
}

/**
 * Adds a user, or answers 409 `email_taken` when the address is another user's: the unique
 * index decides, so two sign-ups racing for one address end as one user and one 409, never as
 * a unique-violation error.
 */
export async function addUser(db: Kysely<DB> | Transaction<DB>, user: NewUser): Promise<UserRow> {
  const row = await insertUser(db, user);
  if (!row) throw emailTaken();
  return row;
}

/** Only an owner may create, promote to, or demote from, the owner role. */
function assertMayAssign(ctx: RequestContext, role: AccountRole | undefined, currentRole?: string) {
  const isOwner = ctx.actor.type === 'user' && ctx.actor.role === 'owner';
  if ((role === 'owner' || currentRole === 'owner') && !isOwner) {
    throw new ForbiddenError('Only an owner may grant or remove the owner role.', 'owner_required');
  }
}

/** Adds a user to the account and audits it, inside the caller's transaction. */
export async function createUserIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  input: { email: string; passwordHash: string; role: AccountRole },
): Promise<UserRow> {
  assertMayAssign(ctx, input.role);
  const user = await addUser(trx, {
    account_id: accountId,
    email: input.email,
    password_hash: input.passwordHash,
    role: input.role,
  });
  await recordAudit(trx, ctx, {
    accountId,
    action: 'user.created',
    entityType: 'user',
    entityId: user.id,
    changedFields: ['email', 'role', 'password'],
  });
  return user;
}

/** Changes a user's role, keeping at least one owner, inside the caller's transaction. */
export async function changeUserRoleIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  id: string,
  role: AccountRole,
): Promise<UserRow> {
  const current = await findAccountUserForUpdate(trx, accountId, id);
  if (!current) throw new NotFoundError('The user does not exist.');
  assertMayAssign(ctx, role, current.role);
  if (current.role === role) return current;
  if (current.role === 'owner' && (await countOwners(trx, accountId)) <= 1) {
    throw new ConflictError('last_owner', 'An account must keep at least one owner.');
  }
  const updated = await setUserRole(trx, id, role);
  await recordAudit(trx, ctx, {
    accountId,
    action: 'user.role_changed',
    entityType: 'user',
    entityId: id,
    changedFields: ['role'],
  });
  return updated;
}

/** Removes a user and ends their sessions, keeping at least one owner, inside the caller's transaction. */
export async function removeUserIn(
  trx: Transaction<DB>,
  ctx: RequestContext,
  accountId: string,
  id: string,
): Promise<void> {
  const current = await findAccountUserForUpdate(trx, accountId, id);
  if (!current) throw new NotFoundError('The user does not exist.');
  assertMayAssign(ctx, undefined, current.role);
  if (current.role === 'owner' && (await countOwners(trx, accountId)) <= 1) {
    throw new ConflictError('last_owner', 'An account must keep at least one owner.');
  }
  await endUserSessions(trx, id, 'user_removed');
  await deleteUser(trx, id);
  await recordAudit(trx, ctx, {
    accountId,
    action: 'user.removed',
    entityType: 'user',
    entityId: id,
  });
}

/** The people of one account and their roles. Every query is scoped by the account id. */
export function createUsersService(deps: {
  db: Kysely<DB>;
  config: Pick<Config, 'PASSWORD_MIN_LENGTH'>;
  principals: Pick<PrincipalCache, 'forgetUser'>;
}) {
  const { db, config, principals } = deps;

  return {
    async get(accountId: string, id: string) {
      const row = await findAccountUser(db, accountId, id);
      if (!row) throw new NotFoundError('The user does not exist.');
      return row;
    },

    list(
      accountId: string,
      query: { limit: number; cursor?: string | undefined; role?: AccountRole | undefined },
    ) {
      return pageAccountUsers(db, accountId, query);
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
      // Hashed before the transaction: argon2 takes long enough to matter to held locks.
      const passwordHash = await hashPassword(input.password);
      return db.transaction().execute((trx) =>
        createUserIn(trx, ctx, accountId, {
          email: input.email,
          passwordHash,
          role: input.role,
        }),
      );
    },

    async changeRole(ctx: RequestContext, accountId: string, id: string, role: AccountRole) {
      const updated = await db
        .transaction()
        .execute((trx) => changeUserRoleIn(trx, ctx, accountId, id, role));
      principals.forgetUser(id);
      return updated;
    },

    async remove(ctx: RequestContext, accountId: string, id: string) {
      await db.transaction().execute((trx) => removeUserIn(trx, ctx, accountId, id));
      principals.forgetUser(id);
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
