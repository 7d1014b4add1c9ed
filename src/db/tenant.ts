import { AsyncLocalStorage } from 'node:async_hooks';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  sql,
  type Transaction,
  type TransactionSettings,
} from 'kysely';
import type { DB } from './schema.js';

/**
 * Row-level security binds every statement of the service to one account: the policies on each
 * tenant table compare `account_id` with the transaction-local setting `custodian.account_id`.
 * Which account is bound travels with the work itself (an AsyncLocalStorage scope):
 * `bindTenant(accountId, fn)` binds it for everything `fn` does, and the app binds the caller's
 * account around every route handler. The database handle (see {@link tenantBindingDialect})
 * sets the setting with `set_config(…, true)` at the start of every transaction, and wraps a
 * statement that runs outside one in a transaction of its own, so the setting dies with the
 * unit of work and a pooled connection never carries it to the next request.
 *
 * With nothing bound, the setting is empty: every tenant table then reads as empty and refuses
 * writes. Work that must cross accounts (signing in, opening a link by its token, the import
 * worker's queue) calls an owner-defined `SECURITY DEFINER` function that answers exactly one
 * narrow question, then binds the account it found.
 */
const scope = new AsyncLocalStorage<string>();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class TenantBindingError extends Error {
  constructor(accountId: unknown) {
    super(`not an account id: ${String(accountId).slice(0, 40)}`);
    this.name = 'TenantBindingError';
  }
}

/** Runs `fn` with `accountId` bound: every statement it issues sees only that account's rows. */
export function bindTenant<T>(accountId: string, fn: () => T): T {
  if (typeof accountId !== 'string' || !UUID.test(accountId)) {
    throw new TenantBindingError(accountId);
  }
  return scope.run(accountId.toLowerCase(), fn);
}

/** The account bound to the current unit of work, if any. */
export function boundTenant(): string | undefined {
  return scope.getStore();
}

/** `fn` in one transaction bound to `accountId` (the issue's `withTenant(db, accountId, fn)`). */
export function withTenant<T>(
  db: Kysely<DB>,
  accountId: string,
  fn: (trx: Transaction<DB>) => Promise<T>,
): Promise<T> {
  return bindTenant(accountId, () => db.transaction().execute(fn));
}

/**
 * A dialect whose connections bind the scope's account in every unit of work. `combineBegin`
 * (node-postgres): `begin` and the binding go in one round trip, as one simple-protocol query;
 * the account id is a checked UUID, so it is inlined safely.
 */
export function tenantBindingDialect(inner: Dialect, options: { combineBegin: boolean }): Dialect {
  return {
    createAdapter: () => inner.createAdapter(),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createDriver: () => new TenantBindingDriver(inner.createDriver(), options.combineBegin),
  };
}

function bindingSql(accountId: string | undefined): string {
  // Inlined: `accountId` passed UUID.test in bindTenant (or is absent).
  return `select set_config('custodian.account_id', '${accountId ?? ''}', true)`;
}

class BoundConnection implements DatabaseConnection {
  inTransaction = false;

  constructor(
    readonly inner: DatabaseConnection,
    private readonly combineBegin: boolean,
  ) {}

  async begin(settings: TransactionSettings, driver: Driver): Promise<void> {
    const tenant = boundTenant();
    if (this.combineBegin && !settings.isolationLevel && !settings.accessMode) {
      await this.inner.executeQuery(CompiledQuery.raw(`begin; ${bindingSql(tenant)}`));
    } else {
      await driver.beginTransaction(this.inner, settings);
      await this.inner.executeQuery(CompiledQuery.raw(bindingSql(tenant)));
    }
    this.inTransaction = true;
  }

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const tenant = boundTenant();
    // Unbound and alone: nothing to set (the setting is empty outside any transaction).
    if (this.inTransaction || tenant === undefined) return this.inner.executeQuery<R>(query);
    await this.inner.executeQuery(
      CompiledQuery.raw(this.combineBegin ? `begin; ${bindingSql(tenant)}` : 'begin'),
    );
    try {
      if (!this.combineBegin) await this.inner.executeQuery(CompiledQuery.raw(bindingSql(tenant)));
      const result = await this.inner.executeQuery<R>(query);
      await this.inner.executeQuery(CompiledQuery.raw('commit'));
      return result;
    } catch (err) {
      await this.inner.executeQuery(CompiledQuery.raw('rollback')).catch(() => undefined);
      throw err;
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    if (this.inTransaction || boundTenant() === undefined) {
      return this.inner.streamQuery<R>(query, chunkSize);
    }
    throw new Error('stream a tenant-bound query inside a transaction');
  }
}

class TenantBindingDriver implements Driver {
  private readonly wrappers = new WeakMap<DatabaseConnection, BoundConnection>();

  constructor(
    private readonly inner: Driver,
    private readonly combineBegin: boolean,
  ) {}

  init() {
    return this.inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    let wrapper = this.wrappers.get(connection);
    if (!wrapper) {
      wrapper = new BoundConnection(connection, this.combineBegin);
      this.wrappers.set(connection, wrapper);
    }
    return wrapper;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings) {
    return (connection as BoundConnection).begin(settings, this.inner);
  }

  async commitTransaction(connection: DatabaseConnection) {
    const bound = connection as BoundConnection;
    bound.inTransaction = false;
    await this.inner.commitTransaction(bound.inner);
  }

  async rollbackTransaction(connection: DatabaseConnection) {
    const bound = connection as BoundConnection;
    bound.inTransaction = false;
    await this.inner.rollbackTransaction(bound.inner);
  }

  releaseConnection(connection: DatabaseConnection) {
    return this.inner.releaseConnection((connection as BoundConnection).inner);
  }

  destroy() {
    return this.inner.destroy();
  }
}

/** The owner-defined lookups that say which account a credential or a link belongs to. */
export type AccountLookup =
  | 'account_of_user'
  | 'account_of_user_email'
  | 'account_of_api_key'
  | 'account_of_refresh_token'
  | 'account_of_consent_token'
  | 'account_of_request_token'
  | 'account_of_password_setup';

/**
 * Which account `key` belongs to, across accounts (a SECURITY DEFINER function, the one narrow
 * question the service may ask without an account bound); null when none does.
 */
export async function accountOf(
  db: Kysely<DB> | Transaction<DB>,
  lookup: AccountLookup,
  key: string,
): Promise<string | null> {
  const { rows } = await sql<{ account_id: string | null }>`
    select ${sql.raw(lookup)}(${key}) as account_id`.execute(db);
  return rows[0]?.account_id ?? null;
}

/** `fn` bound to `accountId` when there is one, else as it is (nothing bound). */
export function bindTenantIf<T>(accountId: string | null | undefined, fn: () => T): T {
  return accountId ? bindTenant(accountId, fn) : fn();
}

/**
 * Binds `accountId` to a transaction that began with none bound, from now to its end: for the
 * transaction that creates the account (its id is chosen before the insert, so the new rows
 * pass the policies' check).
 */
export async function bindTransaction(trx: Transaction<DB>, accountId: string): Promise<void> {
  if (!UUID.test(accountId)) throw new TenantBindingError(accountId);
  await sql`select set_config('custodian.account_id', ${accountId}, true)`.execute(trx);
}

/**
 * `fn` under the account `key` belongs to (by `lookup`), for work that starts from a credential
 * or a link rather than from a signed-in caller; as it is when an account is bound already, or
 * when nothing matches (then every tenant table reads as empty, and `fn` finds nothing).
 */
export async function inAccountOf<T>(
  db: Kysely<DB>,
  lookup: AccountLookup,
  key: string | null | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  if (boundTenant() !== undefined || !key) return fn();
  return bindTenantIf(await accountOf(db, lookup, key), fn);
}
