import { AsyncLocalStorage } from 'node:async_hooks';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from './schema.js';

/**
 * The tenant a unit of work acts for, the backstop below every `WHERE account_id = …`.
 *
 * Every table with an `account_id` has row-level security, enabled and forced (migration
 * `enable-row-level-security`): the service role sees and writes only the rows of the account in
 * the connection's `custodian.account_id` setting, and none while it is empty. The application
 * binds the account a piece of code acts for with {@link withTenant} (route handlers are bound by
 * the auth plugin from the caller's account; workers and public links bind the account they act
 * on); the database handle puts exactly that value (or '' when nothing is bound) on the
 * connection each time it hands one out, before the first statement, so a pooled connection
 * never acts for the previous holder's account (see `TenantSetting`).
 */
const storage = new AsyncLocalStorage<string>();

/** The GUC the policies read. */
export const TENANT_SETTING = 'custodian.account_id';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The account bound to the current unit of work, or '' when none is. */
export function boundTenant(): string {
  return storage.getStore() ?? '';
}

/**
 * Runs `fn` for `accountId`: every connection it takes from `Database.db` is bound to that
 * account. A connection (or transaction) taken before stays bound to what it was taken for.
 */
export function withTenant<T>(accountId: string, fn: () => T): T {
  if (!UUID.test(accountId)) throw new Error('withTenant needs an account id');
  return storage.run(accountId.toLowerCase(), fn);
}

/** {@link withTenant} for an account, {@link withoutTenant} for none (an operator, a public call). */
export function withTenantOrNone<T>(accountId: string | null | undefined, fn: () => T): T {
  return accountId ? withTenant(accountId, fn) : withoutTenant(fn);
}

/** Runs `fn` with no account bound: tenant rows are invisible (definer functions still work). */
export function withoutTenant<T>(fn: () => T): T {
  return storage.run('', fn);
}

/**
 * Runs `fn` for the account `resolve` names (through a definer function that finds it from a
 * token, a key or an email), or unbound when it names none, so the lookup's "not found" stays
 * the caller's answer.
 */
export async function inAccountOf<T>(
  resolve: () => Promise<string | null | undefined>,
  fn: () => Promise<T>,
): Promise<T> {
  const accountId = await resolve();
  return accountId ? withTenant(accountId, fn) : withoutTenant(fn);
}

/**
 * What a connection holds, per connection: the tenant last put on it by {@link bindConnection},
 * so an unchanged tenant costs no round trip. Only this module sets the setting on a service
 * connection (the service never calls `set_config` itself: a test greps for it), so the cache
 * is the connection's state.
 */
export interface TenantSetting {
  current: string | undefined;
}

/**
 * Makes the connection's setting exactly the bound tenant: a session-level `set_config` outside
 * any transaction (a rolled-back transaction could otherwise undo it behind the cache).
 */
export async function bindConnection(
  setting: TenantSetting,
  run: (statement: string) => Promise<unknown>,
): Promise<void> {
  const tenant = boundTenant();
  if (setting.current === tenant) return;
  // An account id (checked in withTenant) or '': nothing to quote.
  setting.current = undefined;
  await run(`select set_config('${TENANT_SETTING}', '${tenant}', false)`);
  setting.current = tenant;
}

/** What the database says the connection is bound to (tests and diagnostics). */
export async function connectionTenant(db: Kysely<DB>): Promise<string> {
  const { rows } = await sql<{ tenant: string | null }>`
    select current_setting(${TENANT_SETTING}, true) as tenant`.execute(db);
  return rows[0]?.tenant ?? '';
}

/** The owner-defined lookups that find an account before one is bound (see the migration). */
export type AccountLookup =
  | 'account_of_user'
  | 'account_of_user_email'
  | 'account_of_refresh_token'
  | 'account_of_api_key'
  | 'account_of_consent_token'
  | 'account_of_request_token'
  | 'account_of_password_setup';

/** The account `lookup` finds for `key`, or null (no such row, or an operator). */
export async function accountOf(
  db: Kysely<DB>,
  lookup: AccountLookup,
  key: string,
): Promise<string | null> {
  const { rows } = await sql<{ id: string | null }>`
    select ${sql.raw(lookup)}(${key}) as id`.execute(db);
  return rows[0]?.id ?? null;
}

/** Every account id, for the workers' sweeps across accounts (bound one by one after). */
export async function allAccounts(db: Kysely<DB>): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`select id from account_directory()`.execute(db);
  return rows.map((row) => row.id);
}

/**
 * Binds an open transaction to an account it has just created (sign-up, an operator creating
 * one), where the binding could not come before the connection was taken: `set_config(…, true)`
 * lasts until the transaction ends, after which the connection holds its checkout value again.
 */
export async function bindTransaction(trx: Transaction<DB>, accountId: string): Promise<void> {
  if (!UUID.test(accountId)) throw new Error('bindTransaction needs an account id');
  await sql`select set_config(${TENANT_SETTING}, ${accountId.toLowerCase()}, true)`.execute(trx);
}

/**
 * Work across accounts, one account at a time: the `(account_id, id)` pairs a definer function
 * answered are grouped by account, and `fn` runs once per account, bound to it, with that
 * account's ids. Accounts go in one fixed order, so two workers doing the same sweep never wait
 * on each other's locks in a cycle. Returns the sum of what `fn` returned.
 */
export async function sumOverAccounts(
  pairs: readonly { account_id: string; id: string }[],
  fn: (accountId: string, ids: string[]) => Promise<number>,
): Promise<number> {
  const byAccount = new Map<string, string[]>();
  for (const { account_id, id } of pairs) {
    const ids = byAccount.get(account_id);
    if (ids) ids.push(id);
    else byAccount.set(account_id, [id]);
  }
  let sum = 0;
  for (const accountId of [...byAccount.keys()].sort()) {
    const ids = byAccount.get(accountId) as string[];
    sum += await withTenant(accountId, () => fn(accountId, ids));
  }
  return sum;
}
