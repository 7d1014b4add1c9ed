import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { createOperator } from '../../src/modules/ops/operators.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer, GOOD_PASSWORD, login, uniqueEmail } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';

type App = Awaited<ReturnType<typeof build>>;

/**
 * An account made by the provider's operators gets an owner without a password, and a
 * single-use, expiring link with which the owner chooses it: the operator never knows it.
 */

const START = '2026-12-04T09:00:00.000Z';
const PASSWORDS = { first: 'quartz meadow falcon drift', second: 'copper lagoon ember trail' };
const HOUR = 3_600_000;

async function operatorToken(app: App): Promise<string> {
  const email = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), { email, password: GOOD_PASSWORD });
  return (await login(app, email)).accessToken;
}

async function createAccount(app: FastifyInstance, op: string, email = uniqueEmail('owner')) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/ops/accounts',
    headers: bearer(op),
    payload: { name: 'Made by ops', owner: { email } },
  });
  if (res.statusCode !== 201) throw new Error(`create account: ${res.statusCode} ${res.body}`);
  return res.json() as {
    account: { id: string };
    owner: { id: string; email: string };
    passwordSetup: { token: string; url: string; expiresAt: string };
  };
}

function setPassword(app: FastifyInstance, token: string, password = GOOD_PASSWORD) {
  return app.inject({
    method: 'POST',
    url: `/v1/public/password-setups/${token}`,
    payload: { password },
  });
}

async function loginStatus(app: FastifyInstance, email: string, password = GOOD_PASSWORD) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password },
  });
  return res.statusCode;
}

t.test('the operator creates an account; its owner sets the password with the link', async (t) => {
  const clock = new TestClock(START);
  const app = await build(t, { clock });
  const op = await operatorToken(app);

  const created = await createAccount(app, op);
  const { token, url, expiresAt } = created.passwordSetup;
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '256 random bits, base64url');
  t.equal(url, `/v1/public/password-setups/${token}`, 'a path without PUBLIC_BASE_URL');
  t.equal(expiresAt, new Date(Date.parse(START) + 72 * HOUR).toISOString(), '72 hours');

  // Only the token's hash is stored, and the owner has no password.
  const rows = await app.database.owner.selectFrom('password_setups').selectAll().execute();
  t.equal(rows.length, 1);
  t.equal(rows[0]!.token_hash, createHash('sha256').update(token).digest('hex'));
  t.notOk(JSON.stringify(rows).includes(token), 'the token itself is nowhere in the table');
  const owner = await app.database.owner
    .selectFrom('users')
    .select('password_hash')
    .where('id', '=', created.owner.id)
    .executeTakeFirstOrThrow();
  t.equal(owner.password_hash, null, 'the owner has no password yet');

  const before = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: created.owner.email, password: GOOD_PASSWORD },
  });
  assertProblem(t, before, {
    status: 401,
    code: 'invalid_credentials',
    instance: '/v1/auth/login',
  });

  const set = await setPassword(app, token);
  t.equal(set.statusCode, 200, set.body);
  t.match(set.headers['content-type'], /^application\/json/);
  t.same(set.json(), {
    email: created.owner.email,
    passwordChangedAt: set.json().passwordChangedAt,
  });
  t.ok(Date.parse(set.json().passwordChangedAt) > 0);
  const session = await login(app, created.owner.email);
  t.ok(session.accessToken, 'the owner signs in with the password they chose');

  const again = await setPassword(app, token, 'another passphrase entirely mine');
  assertProblem(t, again, {
    status: 409,
    code: 'token_used',
    instance: `/v1/public/password-setups/${token}`,
  });
  t.equal(
    await loginStatus(app, created.owner.email, 'another passphrase entirely mine'),
    401,
    'a used link changes nothing',
  );

  // Both acts are in the account's audit chain, which still verifies.
  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?limit=100',
    headers: bearer(session.accessToken),
  });
  const acts = trail
    .json()
    .data.map(
      (e: { action: string; actor: { type: string; id: string } }) => `${e.actor.type}:${e.action}`,
    );
  t.ok(acts.includes('operator:user.password_setup_issued'), 'the operator issued the link');
  t.ok(acts.includes('user:user.password_set'), 'the owner set the password');
  const setEvent = trail
    .json()
    .data.find((e: { action: string }) => e.action === 'user.password_set');
  t.equal(setEvent.actor.id, created.owner.id, 'as themself');
  const verify = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(session.accessToken),
  });
  t.equal(verify.json().valid, true);
});

t.test('unknown, altered and malformed tokens are 404', async (t) => {
  const app = await build(t);
  const op = await operatorToken(app);
  const { passwordSetup } = await createAccount(app, op);
  const altered = `${passwordSetup.token.slice(0, -1)}${passwordSetup.token.endsWith('A') ? 'B' : 'A'}`;
  for (const token of [altered, 'x'.repeat(43), 'not-a-token']) {
    const res = await setPassword(app, token);
    assertProblem(t, res, {
      status: 404,
      code: 'token_invalid',
      instance: `/v1/public/password-setups/${token}`,
    });
  }
  t.equal((await setPassword(app, passwordSetup.token)).statusCode, 200, 'the real one works');
});

t.test('an expired link is 410, and the operator can issue a new one', async (t) => {
  const clock = new TestClock(START);
  const app = await build(t, { clock, env: { PASSWORD_SETUP_TTL_HOURS: '24' } });
  const op = await operatorToken(app);
  const created = await createAccount(app, op);
  t.equal(
    created.passwordSetup.expiresAt,
    new Date(Date.parse(START) + 24 * HOUR).toISOString(),
    'PASSWORD_SETUP_TTL_HOURS sets the lifetime',
  );

  clock.advance(24 * HOUR);
  const late = await setPassword(app, created.passwordSetup.token);
  assertProblem(t, late, {
    status: 410,
    code: 'token_expired',
    instance: `/v1/public/password-setups/${created.passwordSetup.token}`,
  });
  t.equal(await loginStatus(app, created.owner.email), 401, 'still no password');

  const reissued = await app.inject({
    method: 'POST',
    url: `/v1/ops/accounts/${created.account.id}/owner-password-setups`,
    headers: bearer(op),
  });
  t.equal(reissued.statusCode, 201, reissued.body);
  const fresh = reissued.json().passwordSetup;
  t.equal(reissued.json().owner.id, created.owner.id);
  t.not(fresh.token, created.passwordSetup.token, 'a new token');
  t.equal(fresh.expiresAt, new Date(clock.now().getTime() + 24 * HOUR).toISOString());

  const another = await app.inject({
    method: 'POST',
    url: `/v1/ops/accounts/${created.account.id}/owner-password-setups`,
    headers: bearer(op),
  });
  t.equal(another.statusCode, 201);
  const stale = await setPassword(app, fresh.token);
  assertProblem(t, stale, {
    status: 404,
    code: 'token_invalid',
    instance: `/v1/public/password-setups/${fresh.token}`,
  });
  t.equal(stale.statusCode, 404, 'a newer link replaces the older one');

  t.equal((await setPassword(app, another.json().passwordSetup.token)).statusCode, 200);
  t.equal(await loginStatus(app, created.owner.email), 200);

  const done = await app.inject({
    method: 'POST',
    url: `/v1/ops/accounts/${created.account.id}/owner-password-setups`,
    headers: bearer(op),
  });
  assertProblem(t, done, {
    status: 409,
    code: 'password_already_set',
    instance: `/v1/ops/accounts/${created.account.id}/owner-password-setups`,
  });
  const unknown = await app.inject({
    method: 'POST',
    url: '/v1/ops/accounts/00000000-0000-4000-8000-000000000000/owner-password-setups',
    headers: bearer(op),
  });
  t.equal(unknown.statusCode, 404);
});

t.test('the password follows the sign-up policy, and a refusal keeps the link', async (t) => {
  const app = await build(t);
  const op = await operatorToken(app);
  const { passwordSetup, owner } = await createAccount(app, op);
  const path = `/v1/public/password-setups/${passwordSetup.token}`;

  const common = await setPassword(app, passwordSetup.token, 'Password123456789!');
  const problem = assertProblem(t, common, {
    status: 400,
    code: 'password_common',
    instance: path,
  });
  t.same(
    problem.errors?.map((e) => [e.field, e.code]),
    [['body.password', 'password_common']],
  );
  const short = await setPassword(app, passwordSetup.token, 'too short');
  t.equal(short.statusCode, 400);
  const personal = await setPassword(app, passwordSetup.token, `${owner.email} my password`);
  t.equal(personal.statusCode, 400, 'not the owner’s own address');

  t.equal((await setPassword(app, passwordSetup.token)).statusCode, 200, 'then a good one');
});

t.test('two uses of one link at once: one wins, the other is 409', async (t) => {
  const app = await build(t);
  const op = await operatorToken(app);
  const { passwordSetup, owner } = await createAccount(app, op);
  const [a, b] = await Promise.all([
    setPassword(app, passwordSetup.token, PASSWORDS.first),
    setPassword(app, passwordSetup.token, PASSWORDS.second),
  ]);
  t.same([a.statusCode, b.statusCode].sort(), [200, 409]);
  const winner = a.statusCode === 200 ? 'first' : 'second';
  t.equal(await loginStatus(app, owner.email, PASSWORDS[winner]), 200, `the ${winner} one`);
});

t.test('the operator cannot choose the owner’s password any more', async (t) => {
  const app = await build(t);
  const op = await operatorToken(app);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/ops/accounts',
    headers: bearer(op),
    payload: { name: 'Made by ops', owner: { email: uniqueEmail(), password: GOOD_PASSWORD } },
  });
  const problem = assertProblem(t, res, {
    status: 400,
    code: 'validation_failed',
    instance: '/v1/ops/accounts',
  });
  t.match(JSON.stringify(problem.errors), 'body.owner');
});

t.test('with PUBLIC_BASE_URL the link is absolute', async (t) => {
  const app = await build(t, { env: { PUBLIC_BASE_URL: 'https://custodian.example.eu/' } });
  const op = await operatorToken(app);
  const { passwordSetup } = await createAccount(app, op);
  t.equal(
    passwordSetup.url,
    `https://custodian.example.eu/v1/public/password-setups/${passwordSetup.token}`,
  );
});
