import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import t from 'tap';
import { createRedis } from '../../src/lib/redis.js';
import { bearer, GOOD_PASSWORD, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * A Redis outage with REDIS_URL set: the rate limiter and the login throttles fail open and
 * fast, /readyz reports Redis as degraded without failing, the outage is counted and logged
 * once, and limiting resumes when Redis is back. The test runs its own throw-away redis-server
 * on a free port and stops it; the shared one is never touched.
 */

const hasRedisServer = !spawnSync('redis-server', ['--version']).error;

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

function startRedis(port: number): ChildProcess {
  return spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
}

/** Resolves once something accepts connections on the port (the fresh redis-server). */
async function listening(port: number) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const socket = connect(port, '127.0.0.1');
    try {
      await once(socket, 'connect'); // rejects on 'error' (refused)
      return;
    } catch {
      // not yet
    } finally {
      socket.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function stopRedis(redis: ChildProcess) {
  if (redis.exitCode !== null || redis.signalCode !== null) return;
  redis.kill('SIGKILL');
  await once(redis, 'exit');
}

/** The request, or a failure after `ms` instead of hanging the test until tap's timeout. */
async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function failOpenCount(app: FastifyInstance): Promise<number> {
  const res = await app.inject({ url: '/metrics' });
  const match = /^rate_limit_fail_open_total (\d+)/m.exec(res.body);
  return match ? Number(match[1]) : Number.NaN;
}

t.test(
  'a Redis outage neither stalls nor blocks the API, and limiting resumes after it',
  { skip: hasRedisServer ? false : 'redis-server is not installed' },
  async (t) => {
    const port = await freePort();
    let server = startRedis(port);
    t.teardown(() => stopRedis(server));
    await listening(port);

    const lines: { level: number; msg: string }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => lines.push(JSON.parse(line)) },
    );
    const redis = createRedis({
      url: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 200,
      logger,
    });
    t.teardown(() => redis.close());
    t.ok(await redis.connected(5_000), 'connected to the test Redis');

    const app = await build(t, {
      redis,
      env: { LOGIN_MAX_PER_IP_PER_MINUTE: '3', RATE_LIMIT_MAX: '1000' },
    });
    const owner = await signup(app);
    const loginAs = (password: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: '192.0.2.10',
        payload: { email: owner.email, password },
      });

    t.equal((await loginAs(GOOD_PASSWORD)).statusCode, 200, 'login works with Redis up');
    const upReady = await app.inject({ url: '/readyz' });
    t.equal(upReady.json().checks.redis, 'ok');
    const failedOpenBefore = await failOpenCount(app);
    t.equal(failedOpenBefore, 0, 'nothing failed open yet');

    await stopRedis(server);

    // Login touches two limiters (the global one and its per-address one: failed logins are
    // counted in the database, not in Redis); each fails at once.
    let started = Date.now();
    const login = await within(5_000, loginAs(GOOD_PASSWORD));
    const loginMs = Date.now() - started;
    t.equal(login.statusCode, 200, 'login still works');
    t.ok(loginMs < 1_500, `and answers quickly (${loginMs} ms)`);

    started = Date.now();
    const me = await within(
      5_000,
      app.inject({ url: '/v1/me', headers: bearer(owner.accessToken) }),
    );
    const meMs = Date.now() - started;
    t.equal(me.statusCode, 200, 'an ordinary route still works');
    t.ok(meMs < 1_500, `and answers quickly (${meMs} ms)`);

    for (let i = 0; i < 5; i++) {
      const res = await within(5_000, loginAs('wrong password but long enough'));
      t.equal(res.statusCode, 401, 'no limit is enforced during the outage');
    }

    const downReady = await within(5_000, app.inject({ url: '/readyz' }));
    t.equal(downReady.statusCode, 200, '/readyz does not fail');
    t.equal(downReady.json().checks.redis, 'degraded', 'but reports Redis as degraded');

    const failedOpen = await failOpenCount(app);
    t.ok(failedOpen >= 2 * 6 + 1, `each limiter call let through is counted (${failedOpen})`);

    const outageLines = () => lines.filter((line) => /Redis is unreachable/.test(line.msg));
    t.equal(outageLines().length, 1, 'the outage is logged once, not per request');
    t.equal(outageLines()[0]?.level, 40, 'as a warning');

    server = startRedis(port);
    t.ok(await redis.connected(10_000), 'the client reconnects by itself');
    const backReady = await app.inject({ url: '/readyz' });
    t.equal(backReady.json().checks.redis, 'ok', '/readyz reports Redis as ok again');
    t.equal(lines.filter((line) => /Redis answers again/.test(line.msg)).length, 1);
    t.equal(outageLines().length, 1, 'still one outage line');

    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await loginAs('wrong password but long enough')).statusCode);
    t.same(statuses, [401, 401, 401, 429], 'the login throttle counts again (3 per address)');
    t.equal(await failOpenCount(app), failedOpen, 'nothing more failed open');
  },
);
