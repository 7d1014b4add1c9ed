import {
  CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type TransactionSettings,
} from 'kysely';
import { bindConnection, type TenantSetting } from './tenant.js';

/**
 * The service acts as a role of its own, never as the schema's owner: the owner (migrations)
 * creates the tables and the triggers; the service role owns nothing, is not a superuser, and
 * holds only the grants `npm run migrate` gives it (see `grants.ts`). So the service cannot
 * truncate a table, disable a trigger, or rewrite the append-only ledger and audit chain,
 * whatever SQL it sends.
 *
 * On Postgres with two URLs, the service logs in as that role; with one URL (development, the
 * test suite) it logs in as the owner and each connection does `SET ROLE` before its first
 * statement. The embedded engine (PGlite) has one connection and one superuser session: its
 * handles switch the connection's role when they take it (`SET ROLE` / `RESET ROLE`).
 */
export const DEFAULT_SERVICE_ROLE = 'custodian_service';

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** A role name safe to put in SQL as it is (lower case, no quoting needed). */
export function checkedRoleName(role: string): string {
  if (!ROLE_NAME.test(role)) throw new Error(`invalid role name: ${role}`);
  return role;
}

/** The service could not act as its role: usually the schema was never migrated. */
export class ServiceRoleError extends Error {
  readonly code: string | undefined;
  constructor(role: string, cause: unknown) {
    const message = cause instanceof Error ? cause.message : String(cause);
    super(
      `the database connection could not take the service role ${role} (${message}); ` +
        '`npm run migrate` creates it and grants it what the service needs',
      { cause },
    );
    this.name = 'ServiceRoleError';
    this.code = (cause as { code?: string } | undefined)?.code;
  }
}

export function serviceRoleError(role: string, cause: unknown): ServiceRoleError {
  return new ServiceRoleError(role, cause);
}

type Side = 'service' | 'owner';

/**
 * Two dialects over one connection (PGlite's): statements through `service` run as `role`,
 * through `owner` as the session's own (super)user. The wrapped driver serialises its single
 * connection, so a handle switches the role when it takes the connection and nothing of the
 * other handle can run in between.
 */
export function roleSwitchingDialects(
  inner: Dialect,
  role: string,
): { service: Dialect; owner: Dialect } {
  const driver = inner.createDriver();
  const state: SharedState = { current: 'owner', tenant: { current: undefined } };
  const dialect = (side: Side): Dialect => ({
    createAdapter: () => inner.createAdapter(),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createDriver: () => new RoleSwitchingDriver(driver, state, side, role),
  });
  return { service: dialect('service'), owner: dialect('owner') };
}

interface SharedState {
  current: Side;
  init?: Promise<void>;
  /** The tenant on the one connection (see `tenant.ts`); the owner's policy ignores it. */
  tenant: TenantSetting;
}

class RoleSwitchingDriver implements Driver {
  constructor(
    private readonly inner: Driver,
    private readonly state: SharedState,
    private readonly side: Side,
    private readonly role: string,
  ) {}

  init(): Promise<void> {
    this.state.init ??= this.inner.init();
    return this.state.init;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await this.inner.acquireConnection();
    if (this.state.current !== this.side) {
      try {
        await connection.executeQuery(
          CompiledQuery.raw(this.side === 'service' ? `set role ${this.role}` : 'reset role'),
        );
      } catch (err) {
        await this.inner.releaseConnection(connection);
        throw this.side === 'service' ? serviceRoleError(this.role, err) : err;
      }
      this.state.current = this.side;
    }
    if (this.side === 'service') {
      try {
        await bindConnection(this.state.tenant, (statement) =>
          connection.executeQuery(CompiledQuery.raw(statement)),
        );
      } catch (err) {
        await this.inner.releaseConnection(connection);
        throw err;
      }
    }
    return connection;
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings) {
    return this.inner.beginTransaction(connection, settings);
  }

  commitTransaction(connection: DatabaseConnection) {
    return this.inner.commitTransaction(connection);
  }

  rollbackTransaction(connection: DatabaseConnection) {
    return this.inner.rollbackTransaction(connection);
  }

  releaseConnection(connection: DatabaseConnection) {
    return this.inner.releaseConnection(connection);
  }

  async destroy() {
    // The connection is shared: the service handle closes it (the owner handle's end is a
    // no-op, it may end first).
    if (this.side === 'service') await this.inner.destroy();
  }
}
