import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { clockFromConfig, clockStartingAt, systemClock, TestClock } from '../../src/lib/clock.js';
import { build } from '../helper.js';

const START = '2027-01-31T09:00:00.000Z';

t.test('the system clock is the real time', async (t) => {
  const before = Date.now();
  const now = systemClock.now().getTime();
  t.ok(now >= before && now <= Date.now());
});

t.test('a test clock stands still until set or advanced', async (t) => {
  const clock = new TestClock(START);
  t.equal(clock.now().toISOString(), START);
  await sleep(5);
  t.equal(clock.now().toISOString(), START, 'real time passing does not move it');
  clock.advance(1);
  t.equal(clock.now().toISOString(), '2027-01-31T09:00:00.001Z');
  clock.advance(24 * 3_600_000);
  t.equal(clock.now().toISOString(), '2027-02-01T09:00:00.001Z');
  clock.set(new Date('2027-03-01T22:59:59.999Z'));
  t.equal(clock.now().toISOString(), '2027-03-01T22:59:59.999Z');
  clock.now().setTime(0);
  t.equal(clock.now().toISOString(), '2027-03-01T22:59:59.999Z', 'a returned Date is a copy');
  t.throws(() => new TestClock('not a date'), RangeError);
  t.throws(() => clock.set('2027-13-01T00:00:00Z'), RangeError);
  t.throws(() => clock.advance(Number.NaN), RangeError);
});

t.test('a started clock shows its start, then runs with its base', async (t) => {
  const base = new TestClock('2026-12-03T12:00:00Z');
  const clock = clockStartingAt(new Date(START), base);
  t.equal(clock.now().toISOString(), START);
  base.advance(90_000);
  t.equal(clock.now().toISOString(), '2027-01-31T09:01:30.000Z');
  t.throws(() => clockStartingAt(new Date('nope')), RangeError);
});

t.test('CLOCK_START: the clock starts there and runs on in real time', async (t) => {
  const clock = clockFromConfig(loadConfig({ CLOCK_START: START }));
  const first = clock.now().getTime();
  t.ok(first - Date.parse(START) < 1_000, 'starts at CLOCK_START');
  await sleep(50);
  const elapsed = clock.now().getTime() - first;
  t.ok(elapsed >= 45 && elapsed < 5_000, `runs forward (${elapsed} ms)`);
  t.equal(clockFromConfig(loadConfig({})), systemClock, 'unset: the real time');
  t.equal(clockFromConfig(loadConfig({ CLOCK_START: ' ' })), systemClock, 'blank is unset');
  const offset = clockFromConfig(loadConfig({ CLOCK_START: '2027-01-31T10:00:00+01:00' }));
  t.ok(Math.abs(offset.now().getTime() - Date.parse(START)) < 1_000, 'an offset is understood');
});

t.test('CLOCK_START is refused in production and when not an instant', async (t) => {
  const production = {
    NODE_ENV: 'production',
    JWT_SECRET: 'production-secret-0123456789abcdef0123',
    HASH_SECRET: 'production-hash-secret-0123456789abcdef',
    AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString(),
    WEBHOOK_SECRET_KEY: 'cHJvZHVjdGlvbi13ZWJob29rLXNlY3JldC1rZXktMDE=',
  };
  t.ok(loadConfig(production), 'production without CLOCK_START starts');
  const problems = (env: NodeJS.ProcessEnv) => {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  };
  t.match(problems({ ...production, CLOCK_START: START }), [/^CLOCK_START: must not be set/]);
  for (const bad of ['2027-01-31', '2027-01-31T09:00:00', 'tomorrow']) {
    t.match(problems({ CLOCK_START: bad }), [/^CLOCK_START: must be an instant/], bad);
  }
});

t.test('the app runs on the clock it is given, or on CLOCK_START', async (t) => {
  const clock = new TestClock(START);
  const app = await build(t, { clock });
  t.equal(app.clock, clock);
  const configured = await build(t, { env: { CLOCK_START: '2030-06-01T00:00:00Z' } });
  const shown = configured.clock.now().getTime() - Date.parse('2030-06-01T00:00:00Z');
  t.ok(shown >= 0 && shown < 60_000, 'built from CLOCK_START');
  const plain = await build(t);
  t.equal(plain.clock, systemClock);
});
