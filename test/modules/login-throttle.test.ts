import argon2 from 'argon2';
import {
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PostgresQueryCompiler,
  type QueryId,
} from 'kysely';
import pino from 'pino';
import t from 'tap';
import { clientNetwork, createAuthService } from '../../src/modules/identity/auth.service.js';
import { PrincipalCache } from '../../src/modules/identity/principal-cache.js';
import { GOOD_PASSWORD, signup, uniqueEmail } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';

const WRONG = 'wrong password entirely here';

function attempt(
  app: Awaited<ReturnType<typeof build>>,
  email: string,
  password: string,
  ip: string,
) {
  return app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password },
    remoteAddress: ip,
  });
}

t.test('an attacker failing from one network does not stop the owner elsewhere', async (t) => {
  const app = await build(t, { env: { LOGIN_MAX_PER_IP_PER_MINUTE: '1000' } });
  const owner = await signup(app);
  const statuses: number[] = [];
  for (let i = 0; i < 15; i++) {
    const res = await attempt(app, owner.email, WRONG, '203.0.113.66');
    statuses.push(res.statusCode);
    if (res.statusCode === 429) {
      t.equal(res.json().code, 'rate_limited');
      const retryAfter = Number(res.headers['retry-after']);
      t.ok(retryAfter > 0 && retryAfter <= 15 * 60, `Retry-After ${retryAfter} s`);
    }
  }
  t.same(statuses, [...Array(10).fill(401), ...Array(5).fill(429)], 'ten failures, then 429');
  const ownerLogin = await attempt(app, owner.email, GOOD_PASSWORD, '198.51.100.7');
  t.equal(ownerLogin.statusCode, 200, 'the owner signs in from their own network');
  const stillBlocked = await attempt(app, owner.email, GOOD_PASSWORD, '203.0.113.66');
  t.equal(stillBlocked.statusCode, 429, 'the attacking network stays throttled');
  const otherUser = await signup(app);
  const other = await attempt(app, otherUser.email, GOOD_PASSWORD, '203.0.113.66');
  t.equal(other.statusCode, 200, 'other addresses from that network are not throttled');
  const sameIpv6 = await attempt(app, owner.email, WRONG, '2001:db8:1:2::1');
  const sameNet = await attempt(app, owner.email, WRONG, '2001:db8:1:2:ffff::9');
  t.same([sameIpv6.statusCode, sameNet.statusCode], [401, 401]);
});

t.test('the per-client limit: 429 with Retry-After; a success from there resets it', async (t) => {
  const app = await build(t, { env: { LOGIN_MAX_FAILURES_PER_CLIENT: '3' } });
  const owner = await signup(app);
  const ip = '192.0.2.10';
  for (let i = 0; i < 2; i++) t.equal((await attempt(app, owner.email, WRONG, ip)).statusCode, 401);
  t.equal((await attempt(app, owner.email, GOOD_PASSWORD, ip)).statusCode, 200);
  for (let i = 0; i < 3; i++) t.equal((await attempt(app, owner.email, WRONG, ip)).statusCode, 401);
  const limited = await attempt(app, owner.email, GOOD_PASSWORD, ip);
  t.equal(limited.statusCode, 429, 'the fourth failure in the window is refused unread');
  t.match(limited.headers['content-type'], /^application\/problem\+json/);
  t.ok(Number(limited.headers['retry-after']) > 800, 'until the 15-minute window ends');
  t.equal(limited.headers['x-ratelimit-limit'], '3', 'the failure limit, not the global one');
  t.equal(limited.headers['x-ratelimit-remaining'], '0');
  t.equal(limited.headers['x-ratelimit-reset'], limited.headers['retry-after']);
  // IPv6: the whole /64 is one client.
  for (let i = 0; i < 3; i++) {
    t.equal((await attempt(app, owner.email, WRONG, `2001:db8:aa:bb::${i + 1}`)).statusCode, 401);
  }
  t.equal((await attempt(app, owner.email, WRONG, '2001:db8:aa:bb:1::5')).statusCode, 429);
});

t.test('failures from anywhere slow an address down exponentially', async (t) => {
  const app = await build(t, {
    env: { LOGIN_BACKOFF_AFTER_FAILURES: '3', LOGIN_BACKOFF_MAX_SECONDS: '2' },
  });
  const email = uniqueEmail('sprayed');
  for (let i = 0; i < 3; i++) {
    t.equal((await attempt(app, email, WRONG, `192.0.2.${20 + i}`)).statusCode, 401);
  }
  const slowed = await attempt(app, email, WRONG, '192.0.2.99');
  t.equal(slowed.statusCode, 429, 'after three failures the next waits');
  t.equal(slowed.headers['retry-after'], '1');
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  t.equal((await attempt(app, email, WRONG, '192.0.2.99')).statusCode, 401, 'after the delay');
  const longer = await attempt(app, email, WRONG, '192.0.2.98');
  t.equal(longer.statusCode, 429);
  t.equal(longer.headers['retry-after'], '2', 'the delay doubles, up to the maximum');
});

t.test('LOGIN_LOCKOUT_THRESHOLD consecutive failures lock the address', async (t) => {
  const app = await build(t, {
    env: {
      LOGIN_LOCKOUT_THRESHOLD: '5',
      LOGIN_MAX_FAILURES_PER_CLIENT: '100',
      LOGIN_BACKOFF_AFTER_FAILURES: '100',
    },
  });
  const almost = await signup(app);
  for (let i = 0; i < 4; i++) await attempt(app, almost.email, WRONG, `192.0.2.${30 + i}`);
  t.equal((await attempt(app, almost.email, GOOD_PASSWORD, '192.0.2.40')).statusCode, 200);

  const owner = await signup(app);
  for (let i = 0; i < 5; i++) await attempt(app, owner.email, WRONG, `192.0.2.${50 + i}`);
  const locked = await attempt(app, owner.email, GOOD_PASSWORD, '192.0.2.60');
  t.equal(locked.statusCode, 401, 'even the right password, from anywhere');
  t.equal(locked.json().code, 'invalid_credentials', 'without saying so');
});

t.test('counters hold keyed hashes only', async (t) => {
  const app = await build(t);
  const email = uniqueEmail('private');
  await attempt(app, email, WRONG, '192.0.2.70');
  const rows = await app.database.owner.selectFrom('login_throttles').selectAll().execute();
  const text = JSON.stringify(rows);
  t.notOk(text.includes(email) || text.includes('192.0.2.70'), 'no address, no IP');
  t.ok(rows.every((row) => /^[0-9a-f]{64}$/.test(row.key)));
});

t.test('clientNetwork: IPv4 as is, IPv6 by /64', async (t) => {
  t.equal(clientNetwork('192.0.2.1'), '192.0.2.1');
  t.equal(clientNetwork('::ffff:192.0.2.1'), '192.0.2.1');
  t.equal(clientNetwork('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(clientNetwork('2001:0DB8:0:0:1::1'), '2001:db8:0:0::/64');
  t.equal(clientNetwork('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.equal(clientNetwork('::1'), '0:0:0:0::/64');
});

/** Records each statement's SQL text (no parameter values). */
class StatementLog implements KyselyPlugin {
  readonly statements: string[] = [];
  readonly #compiler = new PostgresQueryCompiler();
  transformQuery(args: PluginTransformQueryArgs) {
    this.statements.push(this.#compiler.compileQuery(args.node, args.queryId as QueryId).sql);
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs) {
    return args.result;
  }
}

t.test('unknown and known addresses do the same work on a failed login', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => void lines.push(JSON.parse(line)) },
  );
  const env = { LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_BACKOFF_AFTER_FAILURES: '100' };
  const app = await build(t, { env, logger });
  const owner = await signup(app);

  const verify = argon2.verify;
  let verifications = 0;
  argon2.verify = (...args: Parameters<typeof verify>) => {
    verifications += 1;
    return verify(...args);
  };
  t.teardown(() => {
    argon2.verify = verify;
  });

  async function trace(email: string, ip: string) {
    const statements = new StatementLog();
    const auth = createAuthService({
      db: app.database.owner.withPlugin(statements),
      config: testConfig(env),
      app,
      principals: new PrincipalCache(0),
    });
    verifications = 0;
    lines.length = 0;
    const error = await auth.login({ email, password: WRONG }, { requestId: 'r', ip }).then(
      () => undefined,
      (e: { code?: string }) => e,
    );
    const { time: _time, pid: _pid, hostname: _host, ...line } = lines[0] ?? {};
    return {
      code: error?.code,
      statements: statements.statements,
      verifications,
      logLines: lines.length,
      logShape: Object.keys(line).sort(),
      logValues: line,
    };
  }

  const unknownEmail = uniqueEmail('nobody');
  // First failure: the counters are created; second: they reach the lock threshold.
  for (const round of ['first failure', 'lock threshold']) {
    const known = await trace(owner.email, '192.0.2.80');
    const unknown = await trace(unknownEmail, '192.0.2.80');
    t.equal(known.code, 'invalid_credentials');
    t.equal(known.verifications, 1, `${round}: one argon2 verification`);
    t.same(unknown, known, `${round}: same statements, verifications and log line`);
    t.ok(known.statements.some((sql) => /insert into "login_throttles"/.test(sql)));
  }
  t.notOk(JSON.stringify(lines).includes(owner.userId), 'no user id in the log');
});
