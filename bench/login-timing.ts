/**
 * Login timing: a known address with a wrong password against an unknown address, in process
 * (app.inject, embedded database in memory), interleaved so that machine noise hits both alike.
 * Prints mean ± standard deviation per case and Welch's t. |t| above ~2 suggests a difference
 * an attacker could measure; this is a benchmark, not a test (shared machines are noisy).
 *
 *     node --import tsx bench/login-timing.ts [--samples 40]
 *     node --import tsx bench/login-timing.ts --postgres postgres://postgres@127.0.0.1:5432/test
 *
 * With --postgres it works in a throw-away schema of that database (dropped at the end), so
 * each statement is a real round trip, as in production.
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createEmbeddedDatabase, createPostgresDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';

const { values } = parseArgs({
  options: { samples: { type: 'string', default: '40' }, postgres: { type: 'string' } },
});
const samples = Number(values.samples);
const warmup = 5;

const config = loadConfig({
  NODE_ENV: 'test',
  LOG_LEVEL: 'warn',
  JWT_SECRET: randomBytes(32).toString('hex'),
  HASH_SECRET: randomBytes(32).toString('hex'),
  LOGIN_MAX_PER_IP_PER_MINUTE: '1000000',
  RATE_LIMIT_MAX: '1000000',
  // Every attempt below fails: keep the address under the backoff and the lock.
  LOGIN_BACKOFF_AFTER_FAILURES: '100',
  LOGIN_LOCKOUT_THRESHOLD: '100',
});
/** Attempts per address before moving to a fresh pair, to stay below the lock threshold. */
const PER_ADDRESS = 80;

async function adminQuery(url: string, text: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

const schema = `bench_login_${randomBytes(4).toString('hex')}`;
if (values.postgres) await adminQuery(values.postgres, `create schema ${schema}`);
const database = values.postgres
  ? createPostgresDatabase({
      url: values.postgres,
      schema,
      poolMax: 5,
      connectionTimeoutMs: 5_000,
      statementTimeoutMs: 30_000,
      idleTimeoutMs: 10_000,
    })
  : await createEmbeddedDatabase({ dataDir: 'memory://' });
await migrateToLatest(database.owner, database.schema);
// Log lines are written (to nowhere) as in production, so their cost is measured too.
const logger = pino({ level: 'warn' }, { write: () => {} });
const app = await buildApp({ config, database, logger, rateLimitNamespace: 'bench' });
await app.ready();

const pairs: { known: string; unknown: string }[] = [];
for (let i = 0; i < Math.ceil((samples + warmup) / PER_ADDRESS); i++) {
  const known = `known-${randomBytes(4).toString('hex')}@example.com`;
  const signup = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { name: 'Bench', email: known, password: 'vellum quasar tundra obliged' },
  });
  if (signup.statusCode !== 201) throw new Error(`signup: ${signup.body}`);
  pairs.push({ known, unknown: `unknown-${randomBytes(4).toString('hex')}@example.com` });
}

let client = 0;
async function time(email: string): Promise<number> {
  client += 1;
  const started = process.hrtime.bigint();
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: 'wrong password entirely here' },
    // A fresh client each time, so the per-client limit stays out of the way.
    remoteAddress: `10.${(client >> 16) & 255}.${(client >> 8) & 255}.${client & 255}`,
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (res.statusCode !== 401) throw new Error(`expected 401, got ${res.statusCode} ${res.body}`);
  return ms;
}

const times = { known: [] as number[], unknown: [] as number[] };
for (let i = 0; i < warmup + samples; i++) {
  // Alternate which case goes first, so neither always follows the other.
  const order: (keyof typeof times)[] = i % 2 === 0 ? ['known', 'unknown'] : ['unknown', 'known'];
  for (const which of order) {
    const pair = pairs[Math.floor(i / PER_ADDRESS)]!;
    const ms = await time(which === 'known' ? pair.known : pair.unknown);
    if (i >= warmup) times[which].push(ms);
  }
}
await app.close();
await database.close();
if (values.postgres) await adminQuery(values.postgres, `drop schema ${schema} cascade`);

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const variance = (xs: number[]) => {
  const m = mean(xs);
  return xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
};
const welch =
  (mean(times.known) - mean(times.unknown)) /
  Math.sqrt(
    variance(times.known) / times.known.length + variance(times.unknown) / times.unknown.length,
  );
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
console.log(`engine ${database.engine}, load average ${loadavg()[0]!.toFixed(1)}`);
for (const which of ['known', 'unknown'] as const) {
  const xs = times[which];
  console.log(
    `${which.padEnd(8)} n=${xs.length}  mean ${mean(xs).toFixed(2)} ms  ± ${Math.sqrt(variance(xs)).toFixed(2)} ms (sd)  median ${median(xs).toFixed(2)} ms`,
  );
}
console.log(`Welch t = ${welch.toFixed(2)}`);
