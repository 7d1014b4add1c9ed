import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from '../../db/schema.js';
import type { SessionPrincipal } from './principal-cache.js';

/**
 * All SQL on sessions, refresh tokens and login throttles. Two reads join the user (and the
 * account) in: they answer every authenticated request and every refresh, where one round trip
 * instead of three matters; nothing here writes another module's table.
 */

/** The failed-login counters of one address and of one (address, client network) pair. */
export function findLoginThrottles(db: Kysely<DB> | Transaction<DB>, keys: readonly string[]) {
  return db.selectFrom('login_throttles').selectAll().where('key', 'in', keys).execute();
}

/** How many stale counters one failed login deletes at most, so the table cannot grow unbounded. */
const STALE_THROTTLES_PER_FAILURE = 20;

/**
 * Counts one failed login against the pair (`pairKey`, its count restarting once `pairResetsAt`
 * passed) and against the address (`addressKey`, consecutive, no window), in one statement that
 * also forgets a few counters idle since `forgetBefore`. Locks the address until `lockUntil`
 * when it reaches `threshold` consecutive failures. Returns the address's failure count.
 */
export async function recordLoginFailure(
  db: Kysely<DB> | Transaction<DB>,
  input: {
    addressKey: string;
    pairKey: string;
    now: Date;
    pairResetsAt: Date;
    forgetBefore: Date;
    threshold: number;
    lockUntil: Date;
  },
): Promise<number> {
  const { addressKey, pairKey, now } = input;
  const rows = await db
    .with('forgotten', (qb) =>
      qb.deleteFrom('login_throttles').where(
        'key',
        'in',
        qb
          .selectFrom('login_throttles')
          .select('key')
          .where('last_failure_at', '<', input.forgetBefore)
          .where('key', 'not in', [addressKey, pairKey])
          .where((eb) =>
            eb.or([eb('locked_until', 'is', null), eb('locked_until', '<', input.forgetBefore)]),
          )
          .limit(STALE_THROTTLES_PER_FAILURE),
      ),
    )
    .insertInto('login_throttles')
    .values([
      { key: addressKey, failures: 1, resets_at: null, last_failure_at: now },
      { key: pairKey, failures: 1, resets_at: input.pairResetsAt, last_failure_at: now },
    ])
    .onConflict((oc) =>
      oc.column('key').doUpdateSet({
        // A window that has passed starts over; the address row has none (null never passes).
        failures: sql<number>`case when login_throttles.resets_at <= ${now} then 1
          else login_throttles.failures + 1 end`,
        resets_at: sql<Date>`case when login_throttles.resets_at <= ${now}
          then excluded.resets_at else login_throttles.resets_at end`,
        last_failure_at: (eb) => eb.ref('excluded.last_failure_at'),
      }),
    )
    .returning(['key', 'failures'])
    .execute();
  const failures = rows.find((row) => row.key === addressKey)?.failures ?? 0;
  if (failures >= input.threshold) {
    await db
      .updateTable('login_throttles')
      .set({ locked_until: input.lockUntil, failures: 0 })
      .where('key', '=', addressKey)
      .execute();
  }
  return failures;
}

/** A successful login: the pair's count and the address's consecutive failures start over. */
export function resetLoginThrottles(db: Kysely<DB> | Transaction<DB>, keys: readonly string[]) {
  return db.deleteFrom('login_throttles').where('key', 'in', keys).execute();
}

export function insertSession(trx: Transaction<DB>, userId: string, expiresAt: Date) {
  return trx
    .insertInto('sessions')
    .values({ user_id: userId, expires_at: expiresAt })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function insertRefreshToken(
  trx: Transaction<DB>,
  sessionId: string,
  tokenHash: string,
  expiresAt: Date,
) {
  return trx
    .insertInto('refresh_tokens')
    .values({ session_id: sessionId, token_hash: tokenHash, expires_at: expiresAt })
    .execute();
}

export function findRefreshToken(db: Kysely<DB> | Transaction<DB>, tokenHash: string) {
  return db
    .selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'refresh_tokens.id',
      'refresh_tokens.session_id',
      'refresh_tokens.expires_at',
      'refresh_tokens.used_at',
      'refresh_tokens.successor_ciphertext',
      'sessions.revoked_at',
      'sessions.expires_at as session_expires_at',
      'users.id as user_id',
      'users.account_id',
      'users.role',
    ])
    .where('refresh_tokens.token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/** Marks a refresh token used; false when another request used it first. */
export async function markRefreshTokenUsed(trx: Transaction<DB>, id: string): Promise<boolean> {
  const result = await trx
    .updateTable('refresh_tokens')
    .set({ used_at: new Date() })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Keeps a used token's successor (sealed) for the reuse grace window. */
export function storeSuccessor(trx: Transaction<DB>, id: string, ciphertext: string) {
  return trx
    .updateTable('refresh_tokens')
    .set({ successor_ciphertext: ciphertext })
    .where('id', '=', id)
    .execute();
}

/**
 * Clears the sealed successors of tokens used before `usedBefore` (their grace window is over),
 * and, with `sessionId`, every one of that session's.
 */
export function clearSuccessors(
  db: Kysely<DB> | Transaction<DB>,
  filter: { usedBefore?: Date; sessionId?: string },
) {
  let query = db
    .updateTable('refresh_tokens')
    .set({ successor_ciphertext: null })
    .where('successor_ciphertext', 'is not', null);
  if (filter.usedBefore) query = query.where('used_at', '<', filter.usedBefore);
  if (filter.sessionId) query = query.where('session_id', '=', filter.sessionId);
  return query.execute();
}

export function revokeSession(trx: Transaction<DB>, sessionId: string, reason: string) {
  return trx
    .updateTable('sessions')
    .set({ revoked_at: new Date(), revoked_reason: reason })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .execute();
}

export function revokeUserSessions(
  trx: Transaction<DB>,
  userId: string,
  reason: string,
  exceptSessionId?: string,
) {
  let query = trx
    .updateTable('sessions')
    .set({ revoked_at: new Date(), revoked_reason: reason })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null);
  if (exceptSessionId) query = query.where('id', '!=', exceptSessionId);
  return query.execute();
}

export function touchSession(trx: Transaction<DB>, sessionId: string) {
  return trx
    .updateTable('sessions')
    .set({ last_used_at: new Date() })
    .where('id', '=', sessionId)
    .execute();
}

/** The user (and their account) behind an access token's session, in one round trip. */
export async function findSessionPrincipal(
  db: Kysely<DB> | Transaction<DB>,
  sessionId: string,
  userId: string,
): Promise<SessionPrincipal | undefined> {
  const row = await db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .leftJoin('accounts', 'accounts.id', 'users.account_id')
    .select([
      'sessions.revoked_at',
      'sessions.expires_at',
      'users.id',
      'users.account_id',
      'users.email',
      'users.role',
      'users.password_changed_at',
      'users.created_at',
      'users.updated_at',
      'accounts.name as a_name',
      'accounts.time_zone as a_time_zone',
      'accounts.dpo_name as a_dpo_name',
      'accounts.dpo_email as a_dpo_email',
      'accounts.dpo_phone as a_dpo_phone',
      'accounts.holiday_country as a_holiday_country',
      'accounts.supervisory_authority as a_supervisory_authority',
      'accounts.created_at as a_created_at',
      'accounts.updated_at as a_updated_at',
      'accounts.version as a_version',
    ])
    .where('sessions.id', '=', sessionId)
    .where('users.id', '=', userId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    sessionId,
    sessionExpiresAt: row.expires_at,
    revoked: row.revoked_at !== null,
    user: {
      id: row.id,
      account_id: row.account_id,
      email: row.email,
      role: row.role,
      password_changed_at: row.password_changed_at,
      created_at: row.created_at,
      updated_at: row.updated_at,
    },
    account:
      row.account_id && row.a_name !== null
        ? {
            id: row.account_id,
            name: row.a_name,
            time_zone: row.a_time_zone!,
            dpo_name: row.a_dpo_name,
            dpo_email: row.a_dpo_email,
            dpo_phone: row.a_dpo_phone,
            holiday_country: row.a_holiday_country,
            supervisory_authority: row.a_supervisory_authority,
            created_at: row.a_created_at!,
            updated_at: row.a_updated_at!,
            version: row.a_version!,
          }
        : null,
  };
}
