import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, type LogEvent, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import type { Logger } from 'pino';
import { type FolderLock, lockFolder } from './folder-lock.js';
import type { DB } from './schema.js';
import {
  checkedRoleName,
  DEFAULT_SERVICE_ROLE,
  roleSwitchingDialects,
  ServiceRoleError,
  serviceRoleError,
} from './service-role.js';
import { bindConnection, type TenantSetting } from './tenant.js';

export type Engine = 'postgres' | 'embedded';

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** A database handle shared by the app: the Kysely instance plus engine-level operations. */
export interface Database {
  /**
   * What the service uses: every connection acts as the service role (see `service-role.ts`),
   * which owns nothing and may not truncate, disable triggers or rewrite append-only tables.
   */
  readonly db: Kysely<DB>;
  /**
   * The schema owner, for migrations and the grants that follow them: the migration URL on
   * Postgres (opened on first use), the same PGlite connection back in its own role on the
   * embedded engine. Never used to serve a request.
   */
  readonly owner: Kysely<DB>;
  /** For VACUUM and ANALYZE after erasures: `owner`, which on Postgres is the migration URL if given, else DATABASE_URL's own login. */
  readonly maintenance: Kysely<DB>;
  readonly engine: Engine;
  /** The role the service's connections act as (see `service-role.ts`). */
  readonly serviceRole: string;
  /** Postgres schema the tables live in (`public` unless isolated for a test). */
  readonly schema: string;
  /** One round trip; rejects when the database does not answer within `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>;
  poolStats(): PoolStats;
  close(): Promise<void>;
}

export interface PostgresOptions {
  url: string;
  /** The schema owner's URL, for migrations (default: `url`). */
  migrationUrl?: string | undefined;
  /** The role every service connection acts as (default `custodian_service`). */
  serviceRole?: string;
  poolMax: number;
  /** Waiting for a pooled connection, and opening a new one (node-postgres uses one timer). */
  connectionTimeoutMs: number;
  /** Server-side `statement_timeout` (0 = none). */
  statementTimeoutMs: number;
  /**
   * Client-side limit on waiting for a query's answer (0 = none; default: the statement timeout
   * plus 5 s, or none without one), for a server that cannot answer at all (frozen, or a network black hole),
   * where its own statement_timeout never fires.
   */
  queryTimeoutMs?: number | undefined;
  idleTimeoutMs: number;
  /** Put every connection's search_path on this schema (used to isolate test files). */
  schema?: string;
  logger?: Logger;
}

export interface EmbeddedOptions {
  /** A folder for the data, or `memory://` for a throw-away database. */
  dataDir: string;
  /** The role the service's statements run as (default `custodian_service`). */
  serviceRole?: string;
  /**
   * A folder lock whose heartbeat is older than this belongs to a crashed process and is taken
   * over (at least 2000 ms; default 10000). A restart after a crash waits up to this long.
   */
  lockStaleMs?: number;
  logger?: Logger;
}

export { DatabaseLockedError } from './folder-lock.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Production engine: node-postgres pool behind Kysely's Postgres dialect. */
export function createPostgresDatabase(options: PostgresOptions): Database {
  const schema = options.schema ?? 'public';
  if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid schema name: ${schema}`);
  const serviceRole = checkedRoleName(options.serviceRole ?? DEFAULT_SERVICE_ROLE);
  const outage = new OutageLog(options.logger);
  const service = openPool(options, options.url, outage, serviceRole);
  // node-postgres opens connections on first use: the owner's pool costs nothing until
  // something migrates through it.
  const owner = openPool(
    { ...options, poolMax: Math.min(options.poolMax, 2) },
    options.migrationUrl ?? options.url,
    outage,
    undefined,
  );
  const db = service.db;
  let closed = false;
  return {
    db,
    owner: owner.db,
    // The owner's URL when the process has it (one URL, or MIGRATION_DATABASE_URL given): VACUUM
    // needs the owner before Postgres 17. Else the service's login, with MAINTAIN on 17+.
    maintenance: owner.db,
    engine: 'postgres',
    serviceRole,
    schema,
    // A schema not yet migrated has no service role: that is `migrations_pending` (the schema
    // check), not an unreachable database, so the login itself answers the ping then.
    ping: (timeoutMs) =>
      outage.watch(
        withTimeout(
          sql`select 1`.execute(db).catch((err: unknown) => {
            if (!(err instanceof ServiceRoleError) || isDatabaseUnavailable(err)) throw err;
            return sql`select 1`.execute(owner.db);
          }),
          timeoutMs,
        ),
      ),
    poolStats: () => ({
      total: service.pool.totalCount,
      idle: service.pool.idleCount,
      waiting: service.pool.waitingCount,
    }),
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
      await owner.db.destroy();
    },
  };
}

/**
 * A node-postgres pool behind Kysely. With `role`, every new connection first does
 * `SET ROLE role` and is handed out only once that succeeded: a connection that could not take
 * the role is never used (it would act as whoever logged in).
 */
function openPool(
  options: PostgresOptions,
  url: string,
  outage: OutageLog,
  role: string | undefined,
): { db: Kysely<DB>; pool: pg.Pool } {
  const schema = options.schema ?? 'public';
  const queryTimeoutMs =
    options.queryTimeoutMs ?? (options.statementTimeoutMs ? options.statementTimeoutMs + 5_000 : 0);
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolMax,
    // Bounds both the wait for a free pooled connection and opening a new one, so a pool
    // exhausted by a stuck database, or a server that does not accept, fails fast (503).
    connectionTimeoutMillis: options.connectionTimeoutMs,
    idleTimeoutMillis: options.idleTimeoutMs,
    // A stuck query must fail (and the request answer 503) rather than hang forever. The
    // server-side timeout cancels the statement cleanly and keeps the connection; it should be
    // the one that fires on a live server, so the client-side one is longer by default.
    statement_timeout: options.statementTimeoutMs || undefined,
    // A frozen server or a dropped network never answers, so statement_timeout cannot fire.
    query_timeout: queryTimeoutMs || undefined,
    // Detect a peer that vanished without closing (idle connections in a network partition).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'custodian',
    options: schema === 'public' ? undefined : `-c search_path=${schema}`,
  });
  // Without a listener an idle client's error (e.g. 57P01 on a Postgres restart) crashes the
  // process; with one, the pool drops the client and recovers by itself.
  pool.on('error', (err) => {
    if (isDatabaseUnavailable(err)) return outage.failed(err);
    options.logger?.warn(
      { err: { message: err.message, code: (err as { code?: string }).code } },
      'idle database client failed',
    );
  });
  pool.on('connect', (client) => {
    // A checked-out client has no pool listener: if its connection dies mid-query (Postgres
    // restart, network cut) the 'error' event would crash the process. The query rejects with
    // the same error and the pool discards the broken client on release, so only swallow it.
    client.on('error', () => {});
    // After query_timeout node-postgres answers the caller but keeps the connection, the
    // unanswered query still in flight: the pool would hand it out again and every query on it
    // would queue behind. A connection that did not answer is suspect: end it, so the pool
    // discards it on release and opens a fresh one.
    const query = client.query;
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      const result = (query as (...a: unknown[]) => unknown).apply(this, args);
      if (result instanceof Promise) {
        result.catch((err: Error) => {
          if (err?.message === QUERY_READ_TIMEOUT) void client.end().catch(() => undefined);
        });
      }
      return result;
    } as typeof client.query;
  });
  const inRole = new WeakSet<pg.PoolClient>();
  const tenants = new WeakMap<pg.PoolClient, TenantSetting>();
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({
      pool: {
        // Failing to get a connection never reaches Kysely's log: note the outage here.
        connect: async () => {
          const client = await pool.connect().catch((err: unknown) => {
            if (isDatabaseUnavailable(err)) outage.failed(err);
            throw err;
          });
          if (role && !inRole.has(client)) {
            try {
              await client.query(`set role ${role}`);
            } catch (err) {
              // Not back into the pool: it still acts as the login role.
              client.release(true);
              throw serviceRoleError(role, err);
            }
            inRole.add(client);
          }
          if (role) {
            // The service's connections act for the bound tenant (row-level security).
            let setting = tenants.get(client);
            if (!setting) {
              setting = { current: undefined };
              tenants.set(client, setting);
            }
            try {
              await bindConnection(setting, (statement) => client.query(statement));
            } catch (err) {
              client.release(true);
              throw err;
            }
          }
          return client;
        },
        end: () => pool.end(),
      },
    }),
    log: outage.observe,
  });
  return { db, pool };
}

/**
 * Zero-setup engine: Postgres compiled to WebAssembly (PGlite), in-process, one connection.
 * PGlite takes no lock on its folder, and two processes on one folder corrupt it, so we hold a
 * lock on the folder for the database's life (see folder-lock.ts) and refuse a second opener
 * with a clear message.
 */
export async function createEmbeddedDatabase(options: EmbeddedOptions): Promise<Database> {
  const inMemory = options.dataDir.startsWith('memory://');
  const dataDir = inMemory ? options.dataDir : resolve(options.dataDir);
  let lock: FolderLock | undefined;
  let database: Database | undefined;
  let lockLost: Error | undefined;
  if (!inMemory) {
    mkdirSync(dataDir, { recursive: true });
    lock = await lockFolder(dataDir, {
      staleMs: options.lockStaleMs ?? 10_000,
      logger: options.logger,
      onCompromised: (err) => {
        // Another process may be writing the folder now: stop writing to it at once. Requests
        // then answer 503 and readiness fails, so the orchestrator replaces this process.
        options.logger?.error(
          { err, dataDir },
          'lost the lock on the embedded database folder; closing the database',
        );
        lockLost = err;
        void database?.close().catch(() => undefined);
      },
    });
  }
  let client: PGlite;
  try {
    client = new PGlite(inMemory ? undefined : join(dataDir, 'pgdata'));
    await client.waitReady;
    if (lockLost) {
      await client.close();
      throw lockLost;
    }
  } catch (err) {
    await lock?.release();
    throw err;
  }
  // PGlite cannot be unreachable, but a closed one (shutdown, lost lock) fails like it.
  const outage = new OutageLog(options.logger);
  // One connection, two roles: the service's statements run as the service role, the owner's
  // (migrations) as PGlite's superuser; each handle switches the connection when it takes it.
  const serviceRole = checkedRoleName(options.serviceRole ?? DEFAULT_SERVICE_ROLE);
  const dialects = roleSwitchingDialects(new PGliteDialect(client), serviceRole);
  const db = new Kysely<DB>({ dialect: dialects.service, log: outage.observe });
  const owner = new Kysely<DB>({ dialect: dialects.owner, log: outage.observe });
  let closed = false;
  database = {
    db,
    owner,
    maintenance: owner,
    engine: 'embedded',
    serviceRole,
    schema: 'public',
    ping: (timeoutMs) => outage.watch(withTimeout(sql`select 1`.execute(owner), timeoutMs)),
    // One in-process connection: it is always "open"; the dialect queues the rest.
    poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await db.destroy();
        // Kysely only destroys a driver it has used: close PGlite ourselves, or a database
        // closed before its first query would go on serving (and writing) afterwards.
        if (!client.closed) await client.close();
      } finally {
        await lock?.release();
      }
    },
  };
  return database;
}

const QUERY_READ_TIMEOUT = 'Query read timeout';

/** Network errors of a connection that could not be opened or was lost. */
const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server going away or too busy: admin_shutdown, crash_shutdown,
 * cannot_connect_now (starting up or in recovery), query_canceled (statement_timeout: we cancel
 * nothing else) and too_many_connections. Class 08 (connection exception) is matched as a class.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57014', '53300']);

/** Errors node-postgres, pg-pool, PGlite, Kysely and `ping` raise without a code. */
const UNAVAILABLE_MESSAGES = [
  /^Connection terminated/, // ... unexpectedly | due to connection timeout (opening one)
  /^timeout exceeded when trying to connect$/, // no pooled connection freed up in time
  new RegExp(`^${QUERY_READ_TIMEOUT}$`), // query_timeout
  /is not queryable$/, // a client whose connection already failed
  /^Cannot use a pool after calling end on the pool$/, // shutting down
  /^PGlite is closed$/,
  /^driver has already been destroyed$/,
  /^database did not answer within \d+ ms$/,
];

/**
 * The one classification of "the database is away" (unreachable, lost, timed out, shutting
 * down), as opposed to a bug or a constraint violation: the error handler answers these with 503
 * and Retry-After, since a retry can succeed once the database is back.
 */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (UNAVAILABLE_ERRNOS.has(code) || UNAVAILABLE_SQLSTATES.has(code)) return true;
    if (/^08[0-9A-Z]{3}$/.test(code)) return true;
  }
  if (UNAVAILABLE_MESSAGES.some((re) => re.test(err.message))) return true;
  // A failed connect to a host with several addresses is an AggregateError of each attempt.
  if (err instanceof AggregateError && err.errors.some((e) => isDatabaseUnavailable(e, depth + 1)))
    return true;
  return isDatabaseUnavailable(err.cause, depth + 1);
}

/**
 * Logs a database outage once: a warn at the first failure, an info when a query succeeds
 * again. One line per failing request would bury it (and the log volume grows with the
 * traffic exactly when the service is degraded).
 */
class OutageLog {
  private since: number | undefined;
  private failures = 0;

  constructor(private readonly logger: Logger | undefined) {}

  failed(err: unknown) {
    this.failures++;
    if (this.since !== undefined) return;
    this.since = Date.now();
    const { message, code } = err as { message?: string; code?: string };
    this.logger?.warn(
      { err: { message, code } },
      'database unavailable: requests answer 503 until it is back',
    );
  }

  succeeded() {
    if (this.since === undefined) return;
    this.logger?.info(
      { downMs: Date.now() - this.since, failures: this.failures },
      'database available again',
    );
    this.since = undefined;
    this.failures = 0;
  }

  /** Kysely's log hook: sees every query's outcome. */
  readonly observe = (event: LogEvent) => {
    if (event.level === 'query') this.succeeded();
    else if (isDatabaseUnavailable(event.error)) this.failed(event.error);
  };

  /** A readiness ping that did not answer is an outage whatever its error. */
  watch(promise: Promise<void>): Promise<void> {
    return promise.catch((err: unknown) => {
      this.failed(err);
      throw err;
    });
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`database did not answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The role the service acts as: as configured; else, with two URLs, the user DATABASE_URL logs
 * in as (it is the service role); else `custodian_service`, which the one login switches to.
 */
export function serviceRoleOf(config: {
  DATABASE_URL?: string | undefined;
  MIGRATION_DATABASE_URL?: string | undefined;
  DATABASE_SERVICE_ROLE?: string | undefined;
}): string {
  if (config.DATABASE_SERVICE_ROLE) return config.DATABASE_SERVICE_ROLE;
  if (config.DATABASE_URL && config.MIGRATION_DATABASE_URL) {
    const user = decodeURIComponent(new URL(config.DATABASE_URL).username);
    if (user) return checkedRoleName(user);
  }
  return DEFAULT_SERVICE_ROLE;
}

/** Opens the engine the configuration selects. */
export async function openDatabase(
  config: {
    DATABASE_URL?: string | undefined;
    MIGRATION_DATABASE_URL?: string | undefined;
    DATABASE_SERVICE_ROLE?: string | undefined;
    DATABASE_SCHEMA?: string | undefined;
    DATA_DIR: string;
    DATA_DIR_LOCK_STALE_MS: number;
    DB_POOL_MAX: number;
    DB_CONNECTION_TIMEOUT_MS: number;
    DB_STATEMENT_TIMEOUT_MS: number;
    DB_QUERY_TIMEOUT_MS?: number | undefined;
    DB_IDLE_TIMEOUT_MS: number;
  },
  logger?: Logger,
): Promise<Database> {
  if (config.DATABASE_URL) {
    return createPostgresDatabase({
      url: config.DATABASE_URL,
      migrationUrl: config.MIGRATION_DATABASE_URL,
      serviceRole: serviceRoleOf(config),
      schema: config.DATABASE_SCHEMA,
      poolMax: config.DB_POOL_MAX,
      connectionTimeoutMs: config.DB_CONNECTION_TIMEOUT_MS,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      queryTimeoutMs: config.DB_QUERY_TIMEOUT_MS,
      idleTimeoutMs: config.DB_IDLE_TIMEOUT_MS,
      logger,
    });
  }
  return createEmbeddedDatabase({
    dataDir: config.DATA_DIR,
    serviceRole: config.DATABASE_SERVICE_ROLE,
    lockStaleMs: config.DATA_DIR_LOCK_STALE_MS,
    logger,
  });
}
