import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t, { type Test } from 'tap';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
} from '../../src/db/database.js';
import {
  MIGRATIONS_DIR,
  migrateDown,
  migrateToLatest,
  pendingMigrations,
  prepareSchema,
  shippedMigrations,
} from '../../src/db/migrate.js';
import { findPostgresBin, ThrowawayPostgres } from '../fixtures/throwaway-postgres.js';
import { build, ENGINE } from '../helper.js';
import { assertProblem } from './assert-problem.js';

/**
 * A database whose schema is behind the code (nobody ran the migrations, or not the newest) is
 * not ready: `/readyz` and the API answer 503 `migrations_pending`, and the start log says what
 * to run. A first start that migrates says what it applied.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const URL_ = process.env.DATABASE_URL;
const SIGNUP = {
  name: 'Example Shop',
  email: 'owner@example.com',
  password: 'staple orbit lantern quietly',
};

/** The migrations the repository ships, by file name: what the code expects to be applied. */
const FILES = readdirSync(MIGRATIONS_DIR)
  .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts'))
  .map((f) => f.replace(/\.(ts|js)$/, ''))
  .sort();

async function admin(url: string, text: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A Postgres schema nobody has migrated, on `url`; dropped at the end of the file. */
async function freshSchema(url: string): Promise<string> {
  const schema = `pend_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin(url, `create schema ${schema}`);
  t.teardown(() => admin(url, `drop schema if exists ${schema} cascade`));
  return schema;
}

/** A database nobody has migrated, on the engine of this run. */
async function freshDatabase(): Promise<Database> {
  if (ENGINE === 'embedded') {
    const database = await createEmbeddedDatabase({ dataDir: 'memory://' });
    t.teardown(() => database.close());
    return database;
  }
  const database = createPostgresDatabase({
    url: URL_!,
    schema: await freshSchema(URL_!),
    poolMax: 3,
    connectionTimeoutMs: 5_000,
    statementTimeoutMs: 30_000,
    idleTimeoutMs: 10_000,
  });
  t.teardown(() => database.close());
  return database;
}

/** A logger that keeps what it is told. */
function recordingLogger() {
  const lines: { level: 'info' | 'warn'; obj: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    info: (obj: object, msg: string) => lines.push({ level: 'info', obj: { ...obj }, msg }),
    warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj: { ...obj }, msg }),
  };
}

t.test('the shipped migrations are the files in migrations/, oldest first', async (t) => {
  t.ok(FILES.length >= 20, `${FILES.length} migrations`);
  t.same(await shippedMigrations(), FILES);
});

t.test('pendingMigrations compares the database with the shipped migrations', async (t) => {
  const database = await freshDatabase();
  t.same(
    await pendingMigrations(database.owner, database.schema),
    FILES,
    'an unmigrated database (no bookkeeping table) lacks them all',
  );
  await migrateToLatest(database.owner, database.schema);
  t.same(await pendingMigrations(database.owner, database.schema), [], 'none after migrating');
  await migrateDown(database.owner, database.schema);
  t.same(
    await pendingMigrations(database.owner, database.schema),
    [FILES.at(-1)],
    'the newest after undoing it',
  );
});

t.test('the start log: what to run, what was applied, or that nothing was', async (t) => {
  const database = await freshDatabase();
  const log = recordingLogger();

  await prepareSchema(database, { migrate: false, logger: log });
  t.equal(log.lines.length, 1);
  const [warning] = log.lines;
  t.equal(warning?.level, 'warn', 'a schema behind the code is a warning');
  t.same(warning?.obj.pending, FILES, 'naming every pending migration');
  t.match(warning?.msg, `the database schema is ${FILES.length} migrations behind this version`);
  t.match(warning?.msg, 'run `npm run migrate`', 'says what to run');
  t.match(warning?.msg, 'node dist/scripts/migrate.js', 'and what to run in the image');
  t.match(warning?.msg, '503 migrations_pending');
  t.same(await pendingMigrations(database.owner, database.schema), FILES, 'and applied nothing');

  log.lines.length = 0;
  await prepareSchema(database, { migrate: true, logger: log });
  t.same(
    log.lines,
    [
      {
        level: 'info',
        obj: { applied: FILES },
        msg: `applied ${FILES.length} migrations (${FILES[0]} … ${FILES.at(-1)}); the schema is up to date`,
      },
    ],
    'the first start says how many it applied, and which',
  );

  log.lines.length = 0;
  await prepareSchema(database, { migrate: true, logger: log });
  t.same(log.lines, [
    { level: 'info', obj: { applied: [] }, msg: 'migrations up to date: nothing to apply' },
  ]);

  log.lines.length = 0;
  await prepareSchema(database, { migrate: false, logger: log });
  t.same(log.lines, [{ level: 'info', obj: { pending: [] }, msg: 'migrations up to date' }]);
});

t.test('a start without migrating goes on when the database cannot be read', async (t) => {
  // Nothing listens on port 1: the connection is refused.
  const database = createPostgresDatabase({
    url: 'postgres://postgres@127.0.0.1:1/custodian',
    poolMax: 1,
    connectionTimeoutMs: 1_000,
    statementTimeoutMs: 1_000,
    idleTimeoutMs: 1_000,
  });
  t.teardown(() => database.close());
  const log = recordingLogger();
  await prepareSchema(database, { migrate: false, logger: log });
  t.same(
    log.lines.map((l) => [l.level, l.msg]),
    [['warn', 'could not check the schema for pending migrations']],
    'says so, and the start goes on (readiness checks again later)',
  );
});

t.test('an app on an unmigrated database is not ready, and says why', async (t) => {
  const database = await freshDatabase();
  const app = await build(t, { database, env: { AUDIT_CHECKPOINT_INTERVAL_MS: '0' } });

  const live = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(live.statusCode, 200, 'alive: restarting would not help');

  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  const problem = assertProblem(t, ready, {
    status: 503,
    code: 'migrations_pending',
    instance: '/readyz',
  });
  t.match(problem.detail, `${FILES.length} migrations behind`);
  t.match(problem.detail, FILES.at(-1)!, 'names the newest pending migration');
  t.match(problem.detail, 'npm run migrate', 'and what to run');
  t.equal(ready.headers['retry-after'], '5');

  const signup = await app.inject({ method: 'POST', url: '/v1/auth/signup', payload: SIGNUP });
  assertProblem(t, signup, {
    status: 503,
    code: 'migrations_pending',
    instance: '/v1/auth/signup',
  });

  await migrateToLatest(database.owner, database.schema);
  const readyNow = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(readyNow.statusCode, 200, 'ready once migrated, without a restart');
  t.same(readyNow.json(), {
    status: 'ready',
    database: ENGINE,
    checks: { redis: 'not_configured' },
  });
  const signupNow = await app.inject({ method: 'POST', url: '/v1/auth/signup', payload: SIGNUP });
  t.equal(signupNow.statusCode, 201, 'and serving');
});

t.test('an app one migration behind is not ready either', async (t) => {
  const database = await freshDatabase();
  await migrateToLatest(database.owner, database.schema);
  await migrateDown(database.owner, database.schema);
  const app = await build(t, { database, env: { AUDIT_CHECKPOINT_INTERVAL_MS: '0' } });
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  const problem = assertProblem(t, ready, {
    status: 503,
    code: 'migrations_pending',
    instance: '/readyz',
  });
  t.match(
    problem.detail,
    `1 migration behind this version of the service (newest pending: ${FILES.at(-1)})`,
  );
});

/** The JSON log lines of a child process, awaitable by a predicate. */
function logOf(child: ChildProcess) {
  const lines: Record<string, unknown>[] = [];
  let waiters: {
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf('\n');
      try {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        waiters = waiters.filter((w) => {
          if (!w.match(line)) return true;
          w.resolve(line);
          return false;
        });
      } catch {
        // not a log line
      }
    }
  });
  return {
    lines,
    next(match: (l: Record<string, unknown>) => boolean, timeoutMs: number) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no such log line in time')), timeoutMs);
        child.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
        waiters.push({
          match,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

/** Runs a program to its end; its exit code and output. */
function run(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/** A Postgres nobody has migrated: a fresh schema of DATABASE_URL, or a throw-away server. */
async function unmigratedPostgres(t: Test): Promise<{ url: string; schema: string }> {
  if (URL_) return { url: URL_, schema: await freshSchema(URL_) };
  const server = await ThrowawayPostgres.create();
  t.teardown(() => server.destroy());
  return { url: server.url, schema: 'public' };
}

t.test(
  'the server on an unmigrated Postgres: the log says what to run, /readyz waits for it',
  {
    skip:
      URL_ || findPostgresBin()
        ? false
        : 'needs Postgres (DATABASE_URL, or its binaries to start one)',
  },
  async (t) => {
    const { url, schema } = await unmigratedPostgres(t);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: 'development',
      DATABASE_URL: url,
      DATABASE_SCHEMA: schema,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      LOG_PRETTY: 'false',
      AUDIT_CHECKPOINT_INTERVAL_MS: '0',
    };
    const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    server.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    t.teardown(() => {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    });
    const log = logOf(server);

    const warning = await log
      .next((l) => Array.isArray(l.pending), 60_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}; stderr: ${stderr.trim() || 'empty'}`);
      });
    t.equal(warning.level, 40, 'logged as a warning');
    t.same(warning.pending, FILES, 'naming every pending migration');
    t.match(String(warning.msg), 'run `npm run migrate`');
    const listening = await log.next((l) => /listening at/.test(String(l.msg)), 30_000);
    const base = /(http:\/\/\S+)/.exec(String(listening.msg))![1]!;

    const ready = await fetch(`${base}/readyz`);
    t.equal(ready.status, 503);
    t.match(ready.headers.get('content-type'), /^application\/problem\+json/);
    t.equal(((await ready.json()) as { code: string }).code, 'migrations_pending');
    const signup = await fetch(`${base}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(SIGNUP),
    });
    t.equal(signup.status, 503, 'a request is refused with what to do, not a 500');
    t.equal(((await signup.json()) as { code: string }).code, 'migrations_pending');

    // What the log said to run.
    const migrate = await run(['--import', 'tsx', 'scripts/migrate.ts'], env);
    t.equal(migrate.code, 0, migrate.code === 0 ? 'npm run migrate succeeds' : migrate.out);
    t.match(migrate.out, `applied ${FILES.length} migrations`);

    const readyNow = await fetch(`${base}/readyz`);
    t.equal(readyNow.status, 200, 'ready once migrated, without a restart');
    const signupNow = await fetch(`${base}/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(SIGNUP),
    });
    t.equal(signupNow.status, 201);

    server.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => server.once('exit', resolve));
    t.equal(code, 0, 'and it shuts down cleanly');
  },
);
