import type { FastifyInstance } from 'fastify';
import type { Kysely, Transaction } from 'kysely';
import type { Config } from '../../config.js';
import type { AccountRow, DB, UserRow } from '../../db/schema.js';
import { accountOf, bindTransaction, inAccountOf } from '../../db/tenant.js';
import { AppError, ForbiddenError, UnauthorizedError } from '../../errors.js';
import { keyedHash } from '../../lib/keyed-hash.js';
import { uuidV7 } from '../../lib/uuid-v7.js';
import { findAccount, insertAccount } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { hashSecretOf } from '../suppressions/suppressions.service.js';
import {
  addUser,
  findUserByEmail,
  findUserById,
  replacePasswordHash,
  setPassword,
} from '../users/users.service.js';
import type { Actor, RequestContext } from './actor.js';
import {
  clearSuccessors,
  findLoginThrottles,
  findRefreshToken,
  insertRefreshToken,
  insertSession,
  markRefreshTokenUsed,
  recordLoginFailure,
  resetLoginThrottles,
  revokeSession,
  revokeUserSessions,
  storeSuccessor,
  touchSession,
} from './identity.repository.js';
import {
  checkPasswordPolicy,
  DUMMY_HASH,
  hashPassword,
  needsRehash,
  verifyPassword,
} from './password.js';
import type { PrincipalCache } from './principal-cache.js';
import { newRefreshToken, seal, sha256Hex, successorKey, unseal } from './tokens.js';

/** Minutes an account stays locked after too many consecutive failures (NIST SP 800-63B-4). */
const LOCK_MINUTES = 60;

/**
 * Failure counters idle this long are forgotten (an address's consecutive failures included):
 * they are pseudonymous personal data (GDPR Art. 5(1)(e), storage limitation), and a day of
 * quiet bounds what an attacker gains by pausing to ~LOGIN_LOCKOUT_THRESHOLD guesses a day.
 */
const FAILURE_MEMORY_MS = 24 * 3_600_000;

/** Separates these keyed hashes from every other use of the secret. */
const THROTTLE_KEY_PREFIX = 'custodian/login-throttle/v1\u0000';

/**
 * The network a login comes from: an IPv4 address, or the /64 of an IPv6 address (one
 * subscriber usually holds a whole /64, so per-address counting there would count nothing).
 */
export function clientNetwork(ip: string): string {
  const address = ip.split('%')[0]!.toLowerCase();
  if (!address.includes(':')) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [
          ...left,
          ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'),
          ...right,
        ];
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group || '0', 16).toString(16))
    .join(':')}::/64`;
}

/**
 * 429 for failed sign-ins. `limit` is the count of failures that triggered it: the rate-limit
 * headers describe this counter, not the global request budget the limiter set before.
 */
function tooManyAttempts(until: Date, now: Date, limit: number): AppError {
  const seconds = String(Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 1000)));
  return new AppError(
    429,
    'rate_limited',
    'Too many requests',
    `Too many failed sign-ins; retry after ${seconds} s.`,
    undefined,
    {
      'retry-after': seconds,
      'x-ratelimit-limit': String(limit),
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': seconds,
    },
  );
}

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
  config: Pick<Config, 'PASSWORD_MIN_LENGTH'>,
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

/**
 * Ends a user's sessions (all, or all but `exceptSessionId`) inside the caller's transaction:
 * their refresh tokens stop working at once, their access tokens at the next check. The caller
 * forgets the user's cached principals after commit.
 */
export function endUserSessions(
  trx: Transaction<DB>,
  userId: string,
  reason: string,
  exceptSessionId?: string,
) {
  return revokeUserSessions(trx, userId, reason, exceptSessionId);
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
  // HASH_SECRET (or its development fallback): keys the failure counters' hashes, and through
  // HKDF the key that seals refresh-token successors.
  const serverSecret = hashSecretOf(config);
  const sealKey = successorKey(serverSecret);
  const graceMs = config.REFRESH_REUSE_GRACE_SECONDS * 1000;

  async function issueTokens(
    trx: Transaction<DB>,
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

  async function startSession(trx: Transaction<DB>, userId: string) {
    const expiresAt = new Date(Date.now() + config.REFRESH_TOKEN_TTL_DAYS * 86_400_000);
    const session = await insertSession(trx, userId, expiresAt);
    return { session, tokens: await issueTokens(trx, userId, session.id) };
  }

  function actorFor(user: UserRow, sessionId: string): Actor {
    if (user.role === 'operator')
      return { type: 'operator', id: user.id, accountId: null, sessionId };
    return { type: 'user', id: user.id, accountId: user.account_id!, role: user.role, sessionId };
  }

  /**
   * Creates an account with its first owner: by self-service sign-up, with the owner's password;
   * or by an operator, without one (`password: null`): the owner then sets it through a
   * single-use link, and cannot sign in before.
   */
  async function createAccountWithOwner(
    trx: Transaction<DB>,
    input: {
      accountName: string;
      timeZone?: string | undefined;
      email: string;
      password: string | null;
    },
    passwordField = 'body.password',
  ): Promise<{ account: AccountRow; owner: UserRow }> {
    if (input.password !== null) {
      enforcePasswordPolicy(
        config,
        input.password,
        { email: input.email, accountName: input.accountName },
        passwordField,
      );
    }
    // The new account's id is chosen here, so the transaction can act for it (row-level
    // security lets an account's rows be written only by a connection bound to it).
    const accountId = uuidV7();
    await bindTransaction(trx, accountId);
    const account = await insertAccount(trx, {
      id: accountId,
      name: input.accountName,
      ...(input.timeZone ? { time_zone: input.timeZone } : {}),
    });
    // A taken address throws, and the account inserted above goes with the rolled-back
    // transaction.
    const owner = await addUser(trx, {
      account_id: account.id,
      email: input.email,
      password_hash: input.password === null ? null : await hashPassword(input.password),
      role: 'owner',
    });
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
     * Same answer, and the same work, whether or not the email exists: one lookup of the user,
     * one of the failure counters, one argon2 verification (against a dummy hash of the same
     * parameters when there is no user), one counter upsert and one log line of the same shape.
     * Neither the body nor the timing tells an attacker which addresses are users (OWASP
     * Authentication Cheat Sheet).
     *
     * Throttling (NIST SP 800-63B-4 §3.2.2, rate limiting): failures are counted per (address,
     * client network) pair, which past LOGIN_MAX_FAILURES_PER_CLIENT within the window gets
     * 429; and per address from anywhere, which past LOGIN_BACKOFF_AFTER_FAILURES makes each
     * attempt wait an exponentially growing delay, and at LOGIN_LOCKOUT_THRESHOLD (≤ 100)
     * consecutive failures locks the address for an hour. An attacker thus exhausts only their
     * own pair's budget and cannot lock the owner out from one network.
     */
    async login(input: { email: string; password: string }, meta: TraceMeta): Promise<TokenPair> {
      return inAccountOf(
        () => accountOf(db, 'account_of_user_email', input.email),
        async () => {
          const now = new Date();
          const addressKey = keyedHash(
            serverSecret,
            `${THROTTLE_KEY_PREFIX}address\u0000${input.email}`,
          );
          const pairKey = keyedHash(
            serverSecret,
            `${THROTTLE_KEY_PREFIX}pair\u0000${input.email}\u0000${clientNetwork(meta.ip)}`,
          );
          const user = await findUserByEmail(db, input.email);
          const counters = await findLoginThrottles(db, [addressKey, pairKey]);
          const pair = counters.find((row) => row.key === pairKey);
          const address = counters.find((row) => row.key === addressKey);

          if (
            pair?.resets_at &&
            pair.resets_at > now &&
            pair.failures >= config.LOGIN_MAX_FAILURES_PER_CLIENT
          ) {
            throw tooManyAttempts(pair.resets_at, now, config.LOGIN_MAX_FAILURES_PER_CLIENT);
          }
          if (address && address.failures >= config.LOGIN_BACKOFF_AFTER_FAILURES) {
            const exponent = Math.min(30, address.failures - config.LOGIN_BACKOFF_AFTER_FAILURES);
            const delaySeconds = Math.min(2 ** exponent, config.LOGIN_BACKOFF_MAX_SECONDS);
            const waitUntil = new Date(address.last_failure_at.getTime() + delaySeconds * 1000);
            if (waitUntil > now) {
              throw tooManyAttempts(waitUntil, now, config.LOGIN_BACKOFF_AFTER_FAILURES);
            }
          }

          // A user who has not set a password yet (an owner awaiting their set-password link) has
          // no hash: verified against the dummy like an unknown address, they cannot sign in, and
          // neither the answer nor its timing tells them apart.
          const storedHash = user?.password_hash ?? null;
          const passwordOk = await verifyPassword(
            storedHash ?? (await DUMMY_HASH.get()),
            input.password,
          );
          const locked = address?.locked_until != null && address.locked_until > now;
          if (!user || !storedHash || !passwordOk || locked) {
            // While locked, even the right password counts as a failure: answering it with less
            // work would tell the attacker that the guess was right.
            const failures = await recordLoginFailure(db, {
              addressKey,
              pairKey,
              now,
              pairResetsAt: new Date(now.getTime() + config.LOGIN_CLIENT_WINDOW_MINUTES * 60_000),
              forgetBefore: new Date(now.getTime() - FAILURE_MEMORY_MS),
              threshold: config.LOGIN_LOCKOUT_THRESHOLD,
              lockUntil: new Date(now.getTime() + LOCK_MINUTES * 60_000),
            });
            // No user id: a field present only for known addresses would enumerate them in the logs.
            app.log.warn({ requestId: meta.requestId, locked, failures }, 'login failed');
            throw invalidCredentials();
          }
          return db.transaction().execute(async (trx) => {
            // Success clears this client's and the address's counts; most logins have none to clear,
            // and skipping the write then keeps a successful login at one statement fewer.
            const toClear = counters.map((row) => row.key);
            if (toClear.length > 0) await resetLoginThrottles(trx, toClear);
            if (needsRehash(storedHash)) {
              // Parameters were raised since this hash was made: upgrade it while we hold the password.
              await replacePasswordHash(trx, user.id, await hashPassword(input.password));
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
      );
    },

    /**
     * Rotates a refresh token: each is good for one use. Presenting one that was already used
     * means it was copied, so the whole session (every token descended from the login) ends —
     * except within REFRESH_REUSE_GRACE_SECONDS of its use, when it is the same client racing
     * itself (two tabs refreshing at once): then it gets the same successor (and a fresh access
     * token for the same session). Rotation with reuse detection is what the OAuth 2.0 Security
     * BCP (RFC 9700) recommends for public clients; the window trades a few seconds in which a
     * just-used token still works for not logging out a user whose tabs raced.
     */
    async refresh(refreshToken: string, meta: TraceMeta): Promise<TokenPair> {
      return inAccountOf(
        () => accountOf(db, 'account_of_refresh_token', sha256Hex(refreshToken)),
        async () => {
          const tokenHash = sha256Hex(refreshToken);
          let row = await findRefreshToken(db, tokenHash);
          const invalid = new UnauthorizedError(
            'The refresh token is not valid.',
            'invalid_refresh_token',
          );
          const sessionEnded = () =>
            new UnauthorizedError('The session has ended; sign in again.', 'session_revoked');
          if (!row) throw invalid;
          if (row.revoked_at || row.session_expires_at < new Date()) throw sessionEnded();
          if (row.used_at === null) {
            if (row.expires_at < new Date()) throw invalid;
            const current = row;
            const rotated = await db.transaction().execute(async (trx) => {
              // Concurrent refreshes with this token wait here for the first one's commit (the row
              // lock), then find it used: they lose, and read the successor stored below.
              if (!(await markRefreshTokenUsed(trx, current.id))) return undefined;
              await touchSession(trx, current.session_id);
              const tokens = await issueTokens(trx, current.user_id, current.session_id);
              if (graceMs > 0) {
                const sealed = seal(
                  sealKey,
                  tokenHash,
                  JSON.stringify([tokens.refreshToken, tokens.refreshTokenExpiresAt]),
                );
                await storeSuccessor(trx, current.id, sealed);
              }
              return tokens;
            });
            if (rotated) {
              // Successors are kept for the grace window only: clear those whose window is over.
              // Outside the rotation's transaction, so that it never waits on other sessions' rows;
              // a failure here costs nothing but a later retry.
              await clearSuccessors(db, { usedBefore: new Date(Date.now() - graceMs) }).catch(
                (error: unknown) =>
                  app.log.warn({ err: error }, 'clearing refresh successors failed'),
              );
              return rotated;
            }
            row = await findRefreshToken(db, tokenHash);
            if (!row) throw invalid;
            if (row.revoked_at) throw sessionEnded();
          }

          // Used before: the same successor within the grace window, else a copied token.
          const usedAt = row.used_at;
          if (usedAt && row.successor_ciphertext && Date.now() - usedAt.getTime() < graceMs) {
            const successor = unseal(sealKey, tokenHash, row.successor_ciphertext);
            if (successor) {
              const [token, expiresAt] = JSON.parse(successor) as [string, string];
              return {
                tokenType: 'Bearer',
                accessToken: app.jwt.sign({ sub: row.user_id, sid: row.session_id, typ: 'access' }),
                expiresIn: accessTtl,
                refreshToken: token,
                refreshTokenExpiresAt: expiresAt,
              };
            }
          }
          const used = row;
          const ctx: RequestContext = {
            actor:
              used.role === 'operator'
                ? {
                    type: 'operator',
                    id: used.user_id,
                    accountId: null,
                    sessionId: used.session_id,
                  }
                : {
                    type: 'user',
                    id: used.user_id,
                    accountId: used.account_id!,
                    role: used.role,
                    sessionId: used.session_id,
                  },
            ...meta,
          };
          await db.transaction().execute(async (trx) => {
            await revokeSession(trx, used.session_id, 'refresh_token_reuse');
            await clearSuccessors(trx, { sessionId: used.session_id });
            if (used.account_id) {
              await recordAudit(trx, ctx, {
                action: 'auth.session_revoked',
                entityType: 'session',
                entityId: used.session_id,
                changedFields: ['revokedAt'],
              });
            }
          });
          principals.forgetSession(used.session_id);
          app.log.warn({ sessionId: used.session_id }, 'refresh token reused: session revoked');
          throw new UnauthorizedError(
            'This refresh token was already used; the session has been ended for safety.',
            'refresh_token_reused',
          );
        },
      );
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
      if (!user?.password_hash) throw new UnauthorizedError();
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
        await setPassword(trx, user.id, hash);
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
