import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, type LogEvent, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import type { Logger } from 'pino';
import { type FolderLock, lockFolder } from './folder-lock.js';
import type { DB } from './schema.js';

export type Engine = 'postgres' | 'embedded';

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** A database handle shared by the app: the Kysely instance plus engine-level operations. */
export interface Database {
  readonly db: Kysely<DB>;
  readonly engine: Engine;
  /** Postgres schema the tables live in (`public` unless isolated for a test). */
  readonly schema: string;
  /** One round trip; rejects when the database does not answer within `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>;
  poolStats(): PoolStats;
  close(): Promise<void>;
}

export interface PostgresOptions {
  url: string;
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
  const outage = new OutageLog(options.logger);
  const queryTimeoutMs =
    options.queryTimeoutMs ?? (options.statementTimeoutMs ? options.statementTimeoutMs + 5_000 : 0);
  const pool = new pg.Pool({
    connectionString: options.url,
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
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({
      pool: {
        // Failing to get a connection never reaches Kysely's log: note the outage here.
        connect: () =>
          pool.connect().catch((err: unknown) => {
            if (isDatabaseUnavailable(err)) outage.failed(err);
            throw err;
          }),
        end: () => pool.end(),
      },
    }),
    log: outage.observe,
  });
  let closed = false;
  return {
    db,
    engine: 'postgres',
    schema,
    ping: (timeoutMs) => outage.watch(withTimeout(sql`select 1`.execute(db), timeoutMs)),
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
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
  const db = new Kysely<DB>({ dialect: new PGliteDialect(client), log: outage.observe });
  let closed = false;
  database = {
    db,
    engine: 'embedded',
    schema: 'public',
    ping: (timeoutMs) => outage.watch(withTimeout(sql`select 1`.execute(db), timeoutMs)),
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

/** Opens the engine the configuration selects. */
export async function openDatabase(
  config: {
    DATABASE_URL?: string | undefined;
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
    lockStaleMs: config.DATA_DIR_LOCK_STALE_MS,
    logger,
  });
}
