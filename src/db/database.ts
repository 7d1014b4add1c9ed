import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import type { Logger } from 'pino';
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
  logger?: Logger;
}

export class DatabaseLockedError extends Error {
  constructor(dataDir: string, pid: number) {
    super(
      `The embedded database in ${dataDir} is in use by another process (pid ${pid}). ` +
        'Stop that process first (only one process may open an embedded database), ' +
        'or set DATABASE_URL to use a Postgres server that many processes can share.',
    );
    this.name = 'DatabaseLockedError';
  }
}

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
 * PGlite takes no lock on its folder, and two processes on one folder corrupt it, so we take a
 * lock file and refuse a second opener with a clear message.
 */
export async function createEmbeddedDatabase(options: EmbeddedOptions): Promise<Database> {
  const inMemory = options.dataDir.startsWith('memory://');
  const dataDir = inMemory ? options.dataDir : resolve(options.dataDir);
  let releaseLock = () => {};
  if (!inMemory) {
    mkdirSync(dataDir, { recursive: true });
    releaseLock = acquireLock(join(dataDir, 'custodian.lock'), dataDir);
  }
  let client: PGlite;
  try {
    client = new PGlite(inMemory ? undefined : join(dataDir, 'pgdata'));
    await client.waitReady;
  } catch (err) {
    releaseLock();
    throw err;
  }
  const db = new Kysely<DB>({ dialect: new PGliteDialect(client) });
  let closed = false;
  return {
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
      } finally {
        releaseLock();
      }
    },
  };
}

function acquireLock(lockPath: string, dataDir: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(lockPath, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new DatabaseLockedError(dataDir, pid);
      }
      // The previous owner died without cleaning up: the lock is stale.
      rmSync(lockPath, { force: true });
    }
  }
  throw new Error(`could not take the lock ${lockPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
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
  return createEmbeddedDatabase({ dataDir: config.DATA_DIR, logger });
}
