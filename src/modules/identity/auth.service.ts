import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import type { AccountRow, DB, UserRow } from '../../db/schema.js';
import { AppError, ForbiddenError, UnauthorizedError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { Actor, RequestContext } from './actor.js';
import {
  emailTaken,
  findAccount,
  findRefreshToken,
  findUserByEmail,
  findUserById,
  insertAccount,
  insertRefreshToken,
  insertSession,
  insertUser,
  markRefreshTokenUsed,
  recordLoginFailure,
  resetLoginFailures,
  revokeSession,
  revokeUserSessions,
  touchSession,
} from './identity.repository.js';
import {
  checkPasswordPolicy,
  hashPassword,
  needsRehash,
  verifyAgainstDummy,
  verifyPassword,
} from './password.js';
import type { PrincipalCache } from './principal-cache.js';
import { newRefreshToken, sha256Hex } from './tokens.js';

/** Minutes an account stays locked after too many consecutive failures (NIST SP 800-63B-4). */
const LOCK_MINUTES = 60;

export interface TokenPair {
  tokenType: 'Bearer';
  accessToken: string;
  expiresIn: number;
  refreshToken: string;
  refreshTokenExpiresAt: string;
}

export interface TraceMeta {
  requestId: string;
  ip: string;
}

const invalidCredentials = () =>
  new UnauthorizedError('The email or password is wrong.', 'invalid_credentials');

/** Rejects a password that breaks the policy, naming the reason (400 with a specific code). */
export function enforcePasswordPolicy(
  config: Config,
  password: string,
  context: { email: string; accountName?: string | undefined },
  field = 'body.password',
): void {
  const verdict = checkPasswordPolicy(password, {
    minLength: config.PASSWORD_MIN_LENGTH,
    email: context.email,
    accountName: context.accountName,
  });
  if (!verdict.ok) {
    throw new AppError(400, verdict.code, 'Password rejected', verdict.reason, [
      { field, code: verdict.code, message: verdict.reason },
    ]);
  }
}

function ttlSeconds(ttl: string): number {
  const value = Number(ttl.slice(0, -1));
  const unit = ttl.slice(-1);
  return value * ({ s: 1, m: 60, h: 3600, d: 86_400 } as Record<string, number>)[unit]!;
}

/**
 * Sign-up, login, refresh-token rotation, logout and password change. Services own the rules
 * and the transactions; every change is audited in the account's chain.
 */
export function createAuthService(deps: {
  db: Kysely<DB>;
  config: Config;
  app: FastifyInstance;
  principals: PrincipalCache;
}) {
  const { db, config, app, principals } = deps;
  const accessTtl = ttlSeconds(config.ACCESS_TOKEN_TTL);

  async function issueTokens(
    trx: Kysely<DB>,
    userId: string,
    sessionId: string,
  ): Promise<TokenPair> {
    const refresh = newRefreshToken();
    const refreshExpiresAt = new Date(Date.now() + config.REFRESH_TOKEN_TTL_DAYS * 86_400_000);
    await insertRefreshToken(trx, sessionId, refresh.hash, refreshExpiresAt);
    return {
      tokenType: 'Bearer',
      accessToken: app.jwt.sign({ sub: userId, sid: sessionId, typ: 'access' }),
      expiresIn: accessTtl,
      refreshToken: refresh.token,
      refreshTokenExpiresAt: refreshExpiresAt.toISOString(),
    };
  }

  async function startSession(trx: Kysely<DB>, userId: string) {
    const expiresAt = new Date(Date.now() + config.REFRESH_TOKEN_TTL_DAYS * 86_400_000);
    const session = await insertSession(trx, userId, expiresAt);
    return { session, tokens: await issueTokens(trx, userId, session.id) };
  }

  function actorFor(user: UserRow, sessionId: string): Actor {
    if (user.role === 'operator')
      return { type: 'operator', id: user.id, accountId: null, sessionId };
    return { type: 'user', id: user.id, accountId: user.account_id!, role: user.role, sessionId };
  }

  /** Creates an account with its first owner (self-service sign-up or by an operator). */
  async function createAccountWithOwner(
    trx: Kysely<DB>,
    input: { accountName: string; timeZone?: string | undefined; email: string; password: string },
  ): Promise<{ account: AccountRow; owner: UserRow }> {
    enforcePasswordPolicy(config, input.password, {
      email: input.email,
      accountName: input.accountName,
    });
    const account = await insertAccount(trx, {
      name: input.accountName,
      ...(input.timeZone ? { time_zone: input.timeZone } : {}),
    });
    const owner = await insertUser(trx, {
      account_id: account.id,
      email: input.email,
      password_hash: await hashPassword(input.password),
      role: 'owner',
    });
    // The account inserted above goes with the rolled-back transaction.
    if (!owner) throw emailTaken();
    return { account, owner };
  }

  return {
    createAccountWithOwner,

    async signup(
      input: {
        accountName: string;
        timeZone?: string | undefined;
        email: string;
        password: string;
      },
      meta: TraceMeta,
    ) {
      if (config.SIGNUP !== 'open') {
        throw new ForbiddenError(
          'Self-service sign-up is closed; ask the provider to create your account.',
          'signup_closed',
        );
      }
      return db.transaction().execute(async (trx) => {
        const { account, owner } = await createAccountWithOwner(trx, input);
        const { session, tokens } = await startSession(trx, owner.id);
        const ctx: RequestContext = { actor: actorFor(owner, session.id), ...meta };
        await recordAudit(trx, ctx, {
          action: 'account.created',
          entityType: 'account',
          entityId: account.id,
          changedFields: ['name', 'timeZone'],
        });
        await recordAudit(trx, ctx, {
          action: 'user.created',
          entityType: 'user',
          entityId: owner.id,
          changedFields: ['email', 'role', 'password'],
        });
        return { account, user: owner, tokens };
      });
    },

    /**
     * Same answer, and the same work (one argon2 verification), whether or not the email
     * exists, so neither the body nor the timing tells an attacker which addresses are users.
     */
    async login(input: { email: string; password: string }, meta: TraceMeta): Promise<TokenPair> {
      const user = await findUserByEmail(db, input.email);
      if (!user) {
        await verifyAgainstDummy(input.password);
        throw invalidCredentials();
      }
      const passwordOk = await verifyPassword(user.password_hash, input.password);
      const locked = user.locked_until !== null && user.locked_until > new Date();
      if (!passwordOk || locked) {
        if (!passwordOk) {
          await recordLoginFailure(db, user.id, config.LOGIN_LOCKOUT_THRESHOLD, LOCK_MINUTES);
        }
        app.log.warn({ userId: user.id, locked, requestId: meta.requestId }, 'login failed');
        throw invalidCredentials();
      }
      return db.transaction().execute(async (trx) => {
        await resetLoginFailures(trx, user.id);
        if (needsRehash(user.password_hash)) {
          // Parameters were raised since this hash was made: upgrade it while we hold the password.
          await trx
            .updateTable('users')
            .set({ password_hash: await hashPassword(input.password) })
            .where('id', '=', user.id)
            .execute();
        }
        const { session, tokens } = await startSession(trx, user.id);
        if (user.account_id) {
          await recordAudit(
            trx,
            { actor: actorFor(user, session.id), ...meta },
            { action: 'auth.login', entityType: 'session', entityId: session.id },
          );
        }
        return tokens;
      });
    },

    /**
     * Rotates a refresh token: each is good for one use. Presenting one that was already used
     * means it was copied, so the whole session (every token descended from the login) ends.
     */
    async refresh(refreshToken: string, meta: TraceMeta): Promise<TokenPair> {
      const row = await findRefreshToken(db, sha256Hex(refreshToken));
      const invalid = new UnauthorizedError(
        'The refresh token is not valid.',
        'invalid_refresh_token',
      );
      if (!row) throw invalid;
      if (row.revoked_at || row.session_expires_at < new Date()) {
        throw new UnauthorizedError('The session has ended; sign in again.', 'session_revoked');
      }
      const ctx: RequestContext = {
        actor:
          row.role === 'operator'
            ? { type: 'operator', id: row.user_id, accountId: null, sessionId: row.session_id }
            : {
                type: 'user',
                id: row.user_id,
                accountId: row.account_id!,
                role: row.role,
                sessionId: row.session_id,
              },
        ...meta,
      };
      const reused = row.used_at !== null || !(await markRefreshTokenUsed(db, row.id));
      if (reused) {
        await db.transaction().execute(async (trx) => {
          await revokeSession(trx, row.session_id, 'refresh_token_reuse');
          if (row.account_id) {
            await recordAudit(trx, ctx, {
              action: 'auth.session_revoked',
              entityType: 'session',
              entityId: row.session_id,
              changedFields: ['revokedAt'],
            });
          }
        });
        principals.forgetSession(row.session_id);
        app.log.warn({ sessionId: row.session_id }, 'refresh token reused: session revoked');
        throw new UnauthorizedError(
          'This refresh token was already used; the session has been ended for safety.',
          'refresh_token_reused',
        );
      }
      if (row.expires_at < new Date()) throw invalid;
      return db.transaction().execute(async (trx) => {
        await touchSession(trx, row.session_id);
        return issueTokens(trx, row.user_id, row.session_id);
      });
    },

    async logout(ctx: RequestContext) {
      if (ctx.actor.type === 'api_key') return;
      const sessionId = ctx.actor.sessionId;
      await db.transaction().execute(async (trx) => {
        await revokeSession(trx, sessionId, 'logout');
        if (ctx.actor.accountId) {
          await recordAudit(trx, ctx, {
            action: 'auth.logout',
            entityType: 'session',
            entityId: sessionId,
            changedFields: ['revokedAt'],
          });
        }
      });
      principals.forgetSession(sessionId);
    },

    /** Needs the current password; ends every other session of the user. */
    async changePassword(
      ctx: RequestContext,
      input: { currentPassword: string; newPassword: string },
    ) {
      if (ctx.actor.type === 'api_key') throw new ForbiddenError();
      const actor = ctx.actor;
      const user = await findUserById(db, actor.id);
      if (!user) throw new UnauthorizedError();
      if (!(await verifyPassword(user.password_hash, input.currentPassword))) {
        throw new AppError(
          400,
          'current_password_wrong',
          'Password rejected',
          'The current password is wrong.',
          [{ field: 'body.currentPassword', code: 'current_password_wrong', message: 'is wrong' }],
        );
      }
      if (input.currentPassword === input.newPassword) {
        throw new AppError(
          400,
          'password_unchanged',
          'Password rejected',
          'The new password must differ from the current one.',
          [
            {
              field: 'body.newPassword',
              code: 'password_unchanged',
              message: 'equals the current password',
            },
          ],
        );
      }
      const account = user.account_id ? await findAccount(db, user.account_id) : undefined;
      enforcePasswordPolicy(
        config,
        input.newPassword,
        { email: user.email, accountName: account?.name },
        'body.newPassword',
      );
      const hash = await hashPassword(input.newPassword);
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('users')
          .set({ password_hash: hash, password_changed_at: new Date(), updated_at: new Date() })
          .where('id', '=', user.id)
          .execute();
        await revokeUserSessions(trx, user.id, 'password_changed', actor.sessionId);
        if (user.account_id) {
          await recordAudit(trx, ctx, {
            action: 'user.password_changed',
            entityType: 'user',
            entityId: user.id,
            changedFields: ['password'],
          });
        }
      });
      principals.forgetUser(user.id);
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
