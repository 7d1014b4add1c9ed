import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
  isDatabaseUnavailable,
} from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { ThrowawayPostgres } from '../fixtures/throwaway-postgres.js';
import { build } from '../helper.js';
import { assertProblem } from './assert-problem.js';

/**
 * The database going away under a running app: frozen (SIGSTOP: the socket stays open and
 * nothing answers), stopped (connections terminated, new ones refused) or restarted (sessions
 * terminated with 57P01 admin_shutdown, then "starting up"). Every request must answer 503
 * database_unavailable with Retry-After within the configured timeouts, never hang and never
 * 500, the outage must be logged once, not once per request, and the pool must recover.
 *
 * The test starts its own throw-away Postgres server (test/fixtures/throwaway-postgres.ts) on a
 * free port and freezes, stops and restarts that one, so it needs no DATABASE_URL and never
 * touches the shared server. Where no server can be started (no Postgres binaries), it falls
 * back to a TCP proxy in front of the shared Postgres, which fakes the freeze and the stop
 * without touching it; the restart case needs a real server and is skipped then.
 */

/** The shared Postgres the proxy fallback sits in front of. */
const TARGET_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const CONNECTION_TIMEOUT_MS = 1_000;
const STATEMENT_TIMEOUT_MS = 500;
const QUERY_TIMEOUT_MS = 800;
/** An answer slower than this is a hang, not a timeout (generous for a loaded CI machine). */
const PROMPT_MS = 4_000;

/** Fallback: a TCP proxy that can freeze (hold every byte, as a SIGSTOPped server), thaw and stop. */
class FreezableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private held: Array<() => void> = [];
  private frozen = false;
  port = 0;

  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.host);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.sockets.add(from);
        from.on('data', (chunk) => {
          const send = () => {
            if (!to.destroyed) to.write(chunk);
          };
          if (this.frozen) this.held.push(send);
          else send();
        });
        from.on('error', () => from.destroy());
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
      }
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Connections stay open and are still accepted, but nothing reaches either side. */
  freeze() {
    this.frozen = true;
  }

  /** Delivers what was held, in order, and forwards again (SIGCONT). */
  thaw() {
    this.frozen = false;
    for (const send of this.held.splice(0)) send();
  }

  /** Kills every connection and refuses new ones, as a stopped server. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.held = [];
    this.frozen = false;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function adminQuery(url: string, text: string) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

async function reachable(url: string): Promise<boolean> {
  try {
    await adminQuery(url, 'select 1');
    return true;
  } catch {
    return false;
  }
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function captureLogger() {
  const raw: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void raw.push(line) });
  return {
    logger,
    lines: () => raw.map((line) => JSON.parse(line) as LogLine),
    clear: () => void raw.splice(0),
  };
}

/** A route that needs the database and nothing else, plus one that outlives statement_timeout. */
function dbRoutes(database: Database) {
  return (app: import('fastify').FastifyInstance) => {
    app.get('/test/db', { config: { auth: 'public' } }, async () => {
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.owner);
      return { one: rows[0]!.one };
    });
    app.get('/test/slow', { config: { auth: 'public' } }, async () => {
      await sql`select pg_sleep(3)`.execute(database.owner);
      return { slept: true };
    });
  };
}

async function timed(
  run: () => Promise<LightMyRequestResponse>,
): Promise<{ res: LightMyRequestResponse; ms: number }> {
  const started = Date.now();
  const res = await run();
  return { res, ms: Date.now() - started };
}

function assertUnavailable(t: Test, res: LightMyRequestResponse, instance: string, ms: number) {
  assertProblem(t, res, { status: 503, code: 'database_unavailable', instance });
  t.equal(res.headers['retry-after'], '5', 'says when to retry');
  t.ok(ms < PROMPT_MS, `answered in ${ms} ms, not hanging`);
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

t.test('which failures mean "the database is away"', async (t) => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  const away = [
    withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
    withCode('read ECONNRESET', 'ECONNRESET'),
    new Error('Connection terminated unexpectedly'),
    new Error('Connection terminated due to connection timeout'),
    new Error('timeout exceeded when trying to connect'),
    new Error('Query read timeout'),
    withCode('canceling statement due to statement timeout', '57014'),
    withCode('terminating connection due to administrator command', '57P01'),
    withCode('the database system is starting up', '57P03'),
    withCode('connection failure', '08006'),
    withCode('sorry, too many clients already', '53300'),
    new Error('PGlite is closed'),
    new Error('wrapped', { cause: withCode('connect ECONNREFUSED', 'ECONNREFUSED') }),
    new AggregateError([withCode('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')], 'x'),
  ];
  for (const err of away) t.ok(isDatabaseUnavailable(err), err.message);
  const notAway = [
    withCode('duplicate key value violates unique constraint', '23505'),
    withCode('relation "x" does not exist', '42P01'),
    new Error('Cannot read properties of undefined'),
    'ECONNREFUSED',
    undefined,
  ];
  for (const err of notAway) t.notOk(isDatabaseUnavailable(err), String(err));
});

t.test('a closed embedded database answers 503, not 500', async (t) => {
  const database = await createEmbeddedDatabase({ dataDir: 'memory://' });
  await migrateToLatest(database.owner, database.schema);
  t.teardown(() => database.close());
  const app = await build(t, { database, configure: dbRoutes(database) });
  t.equal((await app.inject({ method: 'GET', url: '/test/db' })).statusCode, 200);
  await database.close();
  const { res, ms } = await timed(() => app.inject({ method: 'GET', url: '/test/db' }));
  assertUnavailable(t, res, '/test/db', ms);
});

/** What the test breaks: its own server, or (fallback) a proxy in front of the shared one. */
interface Outage {
  /** The URL the app connects to. */
  url: string;
  schema: string;
  /** Set when the test runs its own server (the restart case needs one). */
  server?: ThrowawayPostgres;
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
  /** Up again on the same port: the pool's URL still points at it. */
  start(): Promise<void>;
}

async function ownServer(t: Test): Promise<Outage> {
  const server = await ThrowawayPostgres.create();
  t.teardown(() => server.destroy());
  return {
    url: server.url,
    schema: 'public',
    server,
    freeze: () => server.freeze(),
    thaw: () => server.thaw(),
    stop: () => server.stop(),
    start: () => server.start(),
  };
}

async function proxyToShared(t: Test): Promise<Outage> {
  const target = new URL(TARGET_URL);
  const schema = `outage_${process.pid}_${randomBytes(4).toString('hex')}`;
  await adminQuery(TARGET_URL, `create schema ${schema}`);
  t.teardown(() => adminQuery(TARGET_URL, `drop schema if exists ${schema} cascade`));
  const proxy = new FreezableProxy(target.hostname, Number(target.port || 5432));
  await proxy.start();
  t.teardown(() => proxy.stop());
  const proxied = new URL(TARGET_URL);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return {
    url: proxied.toString(),
    schema,
    freeze: () => proxy.freeze(),
    thaw: () => proxy.thaw(),
    stop: () => proxy.stop(),
    start: () => proxy.start(),
  };
}

/** The migrated database of the outage, opened with short timeouts and a captured log. */
async function openApp(
  t: Test,
  outage: Outage,
  timeouts: { statementTimeoutMs: number; queryTimeoutMs: number },
) {
  const logs = captureLogger();
  const database = createPostgresDatabase({
    url: outage.url,
    schema: outage.schema,
    poolMax: 3,
    connectionTimeoutMs: CONNECTION_TIMEOUT_MS,
    idleTimeoutMs: 30_000,
    logger: logs.logger,
    ...timeouts,
  });
  t.teardown(() => database.close());
  const app = await build(t, {
    database,
    logger: logs.logger,
    env: { RATE_LIMIT_MAX: '100000' },
    configure: dbRoutes(database),
  });
  const get = (url: string) => timed(() => app.inject({ method: 'GET', url }));
  const login = () =>
    timed(() =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        payload: { email: 'nobody@example.com', password: 'not the password at all' },
      }),
    );
  return {
    database,
    logs,
    get,
    login,
    /** Warnings and errors logged since the last clear. */
    // Warnings other than the failed logins the test makes on purpose (those are security
    // events, logged at warn by design).
    alarms: () => logs.lines().filter((l) => l.level >= 40 && l.msg !== 'login failed'),
    recoveries: () => logs.lines().filter((l) => l.msg === 'database available again'),
  };
}

t.test(
  'Postgres frozen, stopped or restarted: 503 within the timeouts, logged once, then 200 again',
  async (t) => {
    let outage: Outage;
    try {
      outage = await ownServer(t);
      t.comment(`own throw-away Postgres at ${new URL(outage.url).host}`);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const shared = new URL(TARGET_URL).host;
      if (!(await reachable(TARGET_URL))) {
        // Nothing to break: an embedded-only machine (neither binaries nor a server).
        t.skip(
          `no throw-away Postgres (${why}), and no Postgres at ${shared} for the proxy`,
          () => {},
        );
        return;
      }
      t.comment(
        `FALLBACK: could not start a throw-away Postgres (${why}); faking the outage with a ` +
          `TCP proxy in front of the shared Postgres at ${shared} (the restart case is skipped)`,
      );
      outage = await proxyToShared(t);
    }
    // Migrate directly (with production timeouts): the short ones below are for the outage.
    const migrator = createPostgresDatabase({
      url: outage.url,
      schema: outage.schema,
      poolMax: 1,
      connectionTimeoutMs: 5_000,
      statementTimeoutMs: 30_000,
      idleTimeoutMs: 1_000,
    });
    await migrateToLatest(migrator.owner, outage.schema);
    await migrator.close();

    const { database, logs, get, login, alarms, recoveries } = await openApp(t, outage, {
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      queryTimeoutMs: QUERY_TIMEOUT_MS,
    });

    t.equal((await get('/test/db')).res.statusCode, 200, 'up');
    t.equal((await login()).res.statusCode, 401, 'a real route reads the database');
    const { rows } = await sql<{
      timeout: string;
    }>`select current_setting('statement_timeout') as timeout`.execute(database.owner);
    t.same(rows, [{ timeout: `${STATEMENT_TIMEOUT_MS}ms` }], 'statement_timeout is applied');

    t.test('a statement over statement_timeout answers 503', async (t) => {
      const { res, ms } = await get('/test/slow');
      assertUnavailable(t, res, '/test/slow', ms);
      t.ok(ms < 2_500, `cancelled by the server at its timeout (${ms} ms), not after 3 s`);
      t.equal((await get('/test/db')).res.statusCode, 200, 'the connection is still good');
    });

    t.test('frozen', async (t) => {
      logs.clear();
      outage.freeze();
      for (let i = 0; i < 4; i++) {
        const { res, ms } = await get('/test/db');
        assertUnavailable(t, res, '/test/db', ms);
      }
      // Concurrent requests too: more than the pool holds, so some wait for a connection.
      const answers = await Promise.all(Array.from({ length: 6 }, () => get('/test/db')));
      for (const { res, ms } of answers) assertUnavailable(t, res, '/test/db', ms);
      const { res, ms } = await login();
      assertUnavailable(t, res, '/v1/auth/login', ms);

      t.equal(alarms().length, 1, 'one warning for the whole outage');
      t.match(alarms()[0], { level: 40, msg: /database unavailable/ });

      outage.thaw();
      const back = await waitUntil(
        async () => (await get('/test/db')).res.statusCode === 200,
        10_000,
      );
      t.ok(back, 'answers 200 again once the database thaws');
      t.equal((await login()).res.statusCode, 401);
      t.equal(recoveries().length, 1, 'and logs the recovery once');
      t.equal(alarms().length, 1, 'with no further warning');
    });

    t.test('stopped', async (t) => {
      logs.clear();
      await outage.stop();
      for (let i = 0; i < 4; i++) {
        const { res, ms } = await get('/test/db');
        assertUnavailable(t, res, '/test/db', ms);
      }
      const answers = await Promise.all(Array.from({ length: 6 }, () => login()));
      for (const { res, ms } of answers) assertUnavailable(t, res, '/v1/auth/login', ms);
      const ready = await get('/readyz');
      assertUnavailable(t, ready.res, '/readyz', ready.ms);

      t.equal(alarms().length, 1, 'one warning for the whole outage');
      t.match(alarms()[0], { level: 40, msg: /database unavailable/ });

      await outage.start();
      const back = await waitUntil(
        async () => (await get('/test/db')).res.statusCode === 200,
        10_000,
      );
      t.ok(back, 'answers 200 again once the database is back');
      t.equal((await login()).res.statusCode, 401);
      t.equal(recoveries().length, 1, 'and logs the recovery once');
      t.equal(alarms().length, 1, 'with no further warning');
    });

    t.test(
      'restarted: the cut statement answers 503, the pool drops the dead connections',
      {
        skip: outage.server
          ? false
          : 'a proxy cannot make Postgres terminate its sessions: needs the throw-away server',
      },
      async (t) => {
        const server = outage.server!;
        // Timeouts far above the 3 s sleep of /test/slow: only the restart can cut it short.
        const app = await openApp(t, outage, {
          statementTimeoutMs: 10_000,
          queryTimeoutMs: 12_000,
        });
        // Fill the pool with connections the restart then terminates while they sit idle.
        const warm = await Promise.all(Array.from({ length: 3 }, () => app.get('/test/db')));
        t.same(
          warm.map(({ res }) => res.statusCode),
          [200, 200, 200],
        );
        t.ok(app.database.poolStats().idle >= 1, 'idle connections in the pool');

        const admin = new pg.Client({ connectionString: server.url });
        admin.on('error', () => {}); // the restart terminates this session too
        await admin.connect();
        const slow = app.get('/test/slow');
        const running = await waitUntil(async () => {
          const { rows } = await admin.query<{ n: number }>(
            `select count(*)::int as n from pg_stat_activity
             where application_name = 'custodian' and state = 'active'
               and query like '%pg_sleep%'`,
          );
          return rows[0]!.n > 0;
        }, 5_000);
        t.ok(running, 'a statement is running when the restart begins');
        const stopping = server.stop(); // fast shutdown: 57P01 to every session

        const cut = await slow;
        assertUnavailable(t, cut.res, '/test/slow', cut.ms);
        await stopping;
        await admin.end().catch(() => undefined);
        t.equal(app.alarms().length, 1, 'one warning for the whole restart');
        t.match(
          app.alarms()[0],
          { level: 40, msg: /database unavailable/, err: { code: '57P01' } },
          'naming the admin shutdown',
        );

        for (let i = 0; i < 3; i++) {
          const { res, ms } = await app.get('/test/db');
          assertUnavailable(t, res, '/test/db', ms);
        }
        const { res, ms } = await app.login();
        assertUnavailable(t, res, '/v1/auth/login', ms);

        // While it starts up (57P03, or refused before it listens): 503 or already 200.
        let started = false;
        const starting = server.start().finally(() => {
          started = true;
        });
        const during: number[] = [];
        while (!started) {
          during.push((await app.get('/test/db')).res.statusCode);
          await new Promise((r) => setTimeout(r, 20));
        }
        await starting;
        t.same(
          during.filter((status) => status !== 503 && status !== 200),
          [],
          `while starting up: only 503 or 200 (${during.length} requests)`,
        );

        t.equal(
          (await app.get('/test/db')).res.statusCode,
          200,
          'the first request after the restart succeeds: no dead connection is handed out',
        );
        const after = await Promise.all(Array.from({ length: 6 }, () => app.get('/test/db')));
        t.same(
          after.map(({ res }) => res.statusCode),
          Array(6).fill(200),
          'concurrent requests too',
        );
        t.equal((await app.login()).res.statusCode, 401);
        t.ok(app.database.poolStats().total <= 3, 'the pool stays within its size');
        t.equal(app.recoveries().length, 1, 'the recovery is logged once');
        t.equal(app.alarms().length, 1, 'with no further warning');
      },
    );
  },
);
