import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import tap from 'tap';
import { buildApp } from '../src/app.js';
import { type Config, loadConfig } from '../src/config.js';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
} from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import type { Clock } from '../src/lib/clock.js';
import type { RedisLink } from '../src/lib/redis.js';
import { checkContract } from './fixtures/contract-check.js';

type Test = Pick<typeof tap, 'teardown' | 'fail'>;

/** Which engine this run uses: Postgres when DATABASE_URL is set, embedded otherwise. */
export const ENGINE = process.env.DATABASE_URL ? 'postgres' : 'embedded';

/** The fake webhook secret key of every test app (32 bytes of 0x01, base64). */
export const TEST_WEBHOOK_SECRET_KEY = Buffer.alloc(32, 1).toString('base64');

/** Configuration for tests: quiet, and with whatever the test overrides. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET: 'test-secret-test-secret-test-secret-0123',
    HASH_SECRET: 'test-hash-secret-0123456789abcdef0123456789',
    // Tests drive the webhook worker themselves (its tick()), never in the background.
    WORKER: 'off',
    // A fake key, so no test logs the warning for a missing one.
    WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
    ...env,
  });
}

let shared: Promise<Database> | undefined;

/**
 * The database of this test file, migrated once. Each tap test file runs in its own process,
 * so this is per file: an in-memory embedded database, or a fresh Postgres schema dropped at
 * the end. Test files never share state, so they run in parallel.
 */
export function testDatabase(): Promise<Database> {
  shared ??= openTestDatabase();
  return shared;
}

/** A new isolated, migrated database (beyond the per-file one), closed at teardown. */
export async function openTestDatabase(): Promise<Database> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const database = await createEmbeddedDatabase({ dataDir: 'memory://' });
    await migrateToLatest(database.owner, database.schema);
    tap.teardown(() => database.close());
    return database;
  }
  const schema = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
  await adminQuery(url, `create schema ${schema}`);
  const database = createPostgresDatabase({
    url,
    schema,
    poolMax: 5,
    connectionTimeoutMs: 5_000,
    statementTimeoutMs: 30_000,
    idleTimeoutMs: 10_000,
  });
  await migrateToLatest(database.owner, database.schema);
  tap.teardown(async () => {
    await database.close();
    await adminQuery(url, `drop schema if exists ${schema} cascade`);
  });
  return database;
}

async function adminQuery(url: string, text: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

export interface BuildOptions {
  env?: Record<string, string>;
  database?: Database;
  /** Add test-only routes or hooks before the app is sealed. */
  configure?: (app: FastifyInstance) => void | Promise<void>;
  /** A pino logger to capture log lines (defaults to none). */
  logger?: import('pino').Logger;
  /** A shared rate-limit store (from createRedis, as the server builds it); none by default. */
  redis?: RedisLink;
  /** The service clock (e.g. a TestClock); by default as configured, i.e. the real time. */
  clock?: Clock;
}

/**
 * The app as production builds it, on this file's database; closed at the test's end. Every
 * answer it sends is checked against openapi.yaml (see fixtures/contract-check.ts): a
 * violation fails `t`.
 */
export async function build(
  t: Test,
  options: BuildOptions = {},
): Promise<FastifyInstance & { database: Database }> {
  const database = options.database ?? (await testDatabase());
  const app = await buildApp({
    config: testConfig(options.env),
    database,
    logger: options.logger ?? false,
    ...(options.redis ? { redis: options.redis } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    rateLimitNamespace: randomBytes(6).toString('hex'),
  });
  t.teardown(() => app.close());
  if (options.configure) await options.configure(app);
  checkContract(app, t);
  await app.ready();
  return Object.assign(app, { database });
}
