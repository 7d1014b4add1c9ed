import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
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
  connectionTimeoutMs: number;
  statementTimeoutMs: number;
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
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectionTimeoutMs,
    idleTimeoutMillis: options.idleTimeoutMs,
    // A stuck query must fail (and the request answer 5xx/503) rather than hang forever.
    statement_timeout: options.statementTimeoutMs || undefined,
    application_name: 'custodian',
    options: schema === 'public' ? undefined : `-c search_path=${schema}`,
  });
  // Without a listener an idle client's error (e.g. 57P01 on a Postgres restart) crashes the
  // process; with one, the pool drops the client and recovers by itself.
  pool.on('error', (err) => {
    options.logger?.warn(
      { err: { message: err.message, code: (err as { code?: string }).code } },
      'idle database client failed',
    );
  });
  // A checked-out client has no pool listener: if its connection dies mid-query (Postgres
  // restart, network cut) the 'error' event would crash the process. The query rejects with
  // the same error and the pool discards the broken client on release, so only swallow it.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    engine: 'postgres',
    schema,
    ping: (timeoutMs) => withTimeout(sql`select 1`.execute(db), timeoutMs),
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
        void database?.close().catch(() => undefined);
      },
    });
  }
  let client: PGlite;
  try {
    client = new PGlite(inMemory ? undefined : join(dataDir, 'pgdata'));
    await client.waitReady;
  } catch (err) {
    await lock?.release();
    throw err;
  }
  const db = new Kysely<DB>({ dialect: new PGliteDialect(client) });
  let closed = false;
  database = {
    db,
    engine: 'embedded',
    schema: 'public',
    ping: (timeoutMs) => withTimeout(sql`select 1`.execute(db), timeoutMs),
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
