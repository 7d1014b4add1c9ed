import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { createPostgresDatabase } from '../../src/db/database.js';
import { TestClock } from '../../src/lib/clock.js';
import { build, ENGINE, TEST_WEBHOOK_SECRET_KEY, testConfig } from '../helper.js';
import {
  consentingWorld,
  createWebhook,
  deliveries,
  receiver,
  WEBHOOK_ENV,
  worker,
} from './webhooks-fixtures.js';

/**
 * Several workers on one database: claims never overlap, so no attempt is sent twice; the
 * in-flight cap per endpoint; and `npm run worker` killed with SIGKILL mid-send on Postgres,
 * whose delivery another worker sends once the lease has run out.
 */

const WORKER = fileURLToPath(new URL('../../src/worker.ts', import.meta.url));

t.test('two workers never send the same attempt twice', async (t) => {
  const clock = new TestClock(new Date());
  const env = { ...WEBHOOK_ENV, WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: '100' };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t, async () => {
    await sleep(20);
    return 200;
  });
  const webhook = await createWebhook(app, world.owner, hook.url);
  const events = 45;
  for (let i = 0; i < events; i++) await world.grant();

  // On Postgres the second worker has a pool of its own, as another process would.
  const url = process.env.DATABASE_URL;
  const other = url
    ? createPostgresDatabase({
        url,
        schema: app.database.schema,
        poolMax: 4,
        connectionTimeoutMs: 5_000,
        statementTimeoutMs: 30_000,
        idleTimeoutMs: 5_000,
      })
    : app.database;
  if (other !== app.database) t.teardown(() => other.close());
  const workers = [worker(app.database.db, clock, env), worker(other.db, clock, env)];

  // Fan-out and claims race: every round, each worker runs two of each at once.
  let attempted = 0;
  for (let round = 0; round < 10 && hook.received.length < events; round++) {
    const done = await Promise.all(workers.flatMap((w) => [w.tick(), w.tick()]));
    attempted += done.reduce((sum, d) => sum + d.attempted, 0);
  }
  const ids = hook.received.map((r) => r.headers['webhook-id']);
  t.equal(hook.received.length, events, `${events} POSTs`);
  t.equal(new Set(ids).size, events, 'each event once');
  t.equal(attempted, events, 'as many attempts as events');
  const log = await deliveries(app, world.owner, webhook.id, '?limit=100');
  t.equal(log.length, events, 'one delivery per event');
  t.ok(
    log.every((d) => d.status === 'delivered' && d.attempts === 1),
    'each delivered at its first attempt',
  );
});

/**
 * An endpoint capped at two attempts at once, with `events` events queued for it, and a
 * receiver that answers 200 after `delayMs`, counting how many attempts it held at once.
 */
async function cappedEndpoint(t: Test, events: number, delayMs: number) {
  const clock = new TestClock(new Date());
  const env = { ...WEBHOOK_ENV, WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: '2' };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  let open = 0;
  const seen = { most: 0 };
  const hook = await receiver(t, async () => {
    open += 1;
    seen.most = Math.max(seen.most, open);
    await sleep(delayMs);
    open -= 1;
    return 200;
  });
  const webhook = await createWebhook(app, world.owner, hook.url);
  for (let i = 0; i < events; i++) await world.grant();
  return { app, world, hook, webhook, seen, w: worker(app.database.db, clock, env) };
}

t.test('at most WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT attempts at once per endpoint', async (t) => {
  const { hook, seen, w } = await cappedEndpoint(t, 5, 30);
  // One round claims all five (they all end within their lease), and sends two at a time.
  t.match(await w.tick(), { fannedOut: 5, attempted: 5 });
  t.equal(hook.received.length, 5);
  t.ok(seen.most <= 2, `at most two at once (${seen.most})`);
});

t.test(
  'the running worker keeps the cap too, and records everything before it stops',
  async (t) => {
    const { app, world, hook, webhook, seen, w } = await cappedEndpoint(t, 12, 10);
    // start(): claims while it sends, its lanes fed from a queue per endpoint.
    w.start();
    const delivered = async () =>
      (await deliveries(app, world.owner, webhook.id, '?limit=100&status=delivered')).length;
    for (let i = 0; i < 500 && (await delivered()) < 12; i++) await sleep(10);
    await w.stop();
    t.equal(await delivered(), 12, 'all delivered, each recorded');
    t.equal(hook.received.length, 12, 'each sent once');
    t.ok(seen.most <= 2, `at most two at once (${seen.most})`);
  },
);

t.test('stopping the running worker leaves nothing claimed', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  // Holds every attempt open: stop() finds them under way, and others waiting.
  const hook = await receiver(t, () => new Promise(() => {}));
  const webhook = await createWebhook(app, world.owner, hook.url);
  for (let i = 0; i < 6; i++) await world.grant();
  const w = worker(app.database.db, clock);
  w.start();
  for (let i = 0; i < 500 && hook.received.length < 2; i++) await sleep(10);
  await w.stop();
  const log = await deliveries(app, world.owner, webhook.id, '?limit=100');
  t.equal(log.length, 6);
  t.ok(
    log.every((d) => d.status === 'pending'),
    'under way and waiting alike back to pending by the time stop() resolves',
  );
  t.equal(log.filter((d) => d.attempts === 1).length, 2, 'the two cut short count as attempts');
  const gone = await app.inject({
    method: 'DELETE',
    url: `/v1/webhooks/${webhook.id}`,
    headers: world.headers,
  });
  t.equal(gone.statusCode, 204);
});

t.test('a slow endpoint ends its round: what was not sent goes back untouched', async (t) => {
  const clock = new TestClock(new Date());
  const env = {
    ...WEBHOOK_ENV,
    WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: '1',
    WEBHOOK_TIMEOUT_MS: '300',
  };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  // Answers after the time limit: every attempt times out.
  const hook = await receiver(t, async () => {
    await sleep(400);
    return 200;
  });
  const webhook = await createWebhook(app, world.owner, hook.url);
  for (let i = 0; i < 3; i++) await world.grant();
  const w = worker(app.database.db, clock, env);
  const started = performance.now();
  await w.tick();
  t.ok(performance.now() - started < 2_000, 'the round did not wait for every timeout');
  const after = await deliveries(app, world.owner, webhook.id);
  const tried = after.filter((d) => d.attempts > 0);
  t.equal(tried.length, 1, 'one attempt in the round');
  t.match(tried[0], { status: 'pending', attempts: 1, lastAttempt: { errorCode: 'timeout' } });
  t.match(
    after.filter((d) => d.attempts === 0),
    [
      { status: 'pending', lastAttempt: null },
      { status: 'pending', lastAttempt: null },
    ],
    'the others back as they were, their attempt numbers given back',
  );
  t.match(await w.tick(), { attempted: 2 }, 'due again at once');
  // The file's tests share a database: nothing of this one may be left due for the next.
  const gone = await app.inject({
    method: 'DELETE',
    url: `/v1/webhooks/${webhook.id}`,
    headers: world.headers,
  });
  t.equal(gone.statusCode, 204);
});

t.test(
  '`npm run worker` killed mid-send: the delivery is sent again after its lease',
  { skip: ENGINE === 'embedded' ? 'the worker process runs on Postgres only' : false },
  async (t) => {
    const app = await build(t, { env: WEBHOOK_ENV });
    const world = await consentingWorld(app);
    let firstArrived: () => void = () => {};
    const arrived = new Promise<void>((resolve) => {
      firstArrived = resolve;
    });
    const hook = await receiver(t, (n) => {
      if (n > 1) return 200;
      firstArrived();
      return new Promise(() => {}); // holds the first attempt open: the worker waits in it
    });
    const webhook = await createWebhook(app, world.owner, hook.url);
    await world.grant();

    const config = testConfig();
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
      env: {
        ...process.env,
        ...WEBHOOK_ENV,
        NODE_ENV: 'test',
        LOG_LEVEL: 'silent',
        DATABASE_URL: process.env.DATABASE_URL,
        DATABASE_SCHEMA: app.database.schema,
        DB_POOL_MAX: '2',
        JWT_SECRET: config.JWT_SECRET,
        HASH_SECRET: config.HASH_SECRET,
        // The app's key: the worker must open the secrets the app sealed.
        WEBHOOK_SECRET_KEY: TEST_WEBHOOK_SECRET_KEY,
        WEBHOOK_TIMEOUT_MS: '20000',
        WEBHOOK_LEASE_SECONDS: '25',
        WORKER_POLL_INTERVAL_MS: '50',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const stderr: string[] = [];
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const first = await Promise.race([arrived.then(() => true), sleep(90_000).then(() => false)]);
    t.ok(first, `the worker process sent the first attempt ${stderr.join('').slice(0, 300)}`);
    child.kill('SIGKILL');
    await once(child, 'exit');

    let [delivery] = await deliveries(app, world.owner, webhook.id);
    t.match(delivery, { status: 'sending', attempts: 1 }, 'left as the killed worker held it');
    const clock = new TestClock(new Date());
    const w = worker(app.database.db, clock);
    t.match(await w.tick(), { attempted: 0 }, 'not while its lease holds');
    clock.advance(26_000);
    t.match(await w.tick(), { attempted: 1 }, 'claimed again once it ran out');
    [delivery] = await deliveries(app, world.owner, webhook.id);
    t.match(delivery, { status: 'delivered', attempts: 2 });
    t.equal(hook.received.length, 2, 'sent twice: at least once');
    t.equal(hook.received[0]!.headers['webhook-id'], hook.received[1]!.headers['webhook-id']);
  },
);

t.test('`npm run worker` needs Postgres', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
    env: { ...process.env, DATABASE_URL: '', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = await once(child, 'exit');
  t.equal(code, 1);
  t.match(stderr, /DATABASE_URL: the worker runs beside the API on Postgres/);
});
