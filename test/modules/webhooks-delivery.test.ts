import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { backoffMs } from '../../src/modules/webhooks/webhook-worker.js';
import {
  type AttemptOutcome,
  type ClaimedDelivery,
  cancelDeliveriesOfEvents,
  claimDueDeliveries,
  recordAttempts,
} from '../../src/modules/webhooks/webhooks.repository.js';
import { bearer } from '../fixtures/identity.js';
import { build } from '../helper.js';
import {
  consentingWorld,
  createWebhook,
  deliveries,
  receiver,
  WEBHOOK_ENV,
  worker,
} from './webhooks-fixtures.js';

/**
 * Webhooks end to end with a receiver on this machine: the event as the feed shows it, signed
 * so that the `standardwebhooks` package (an independent implementation) verifies it; retries
 * by the service clock; a worker dying mid-send; replays; rotation; pausing.
 */

t.test('an event reaches the receiver signed, exactly as the feed shows it', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  await world.grant(); // before the endpoint exists: not sent
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  const contactId = await world.grant('subscriber-1@example.com');
  const w = worker(app.database.db, clock);

  t.match(await w.tick(), { fannedOut: 1, attempted: 1 });
  t.equal(hook.received.length, 1, 'one POST');
  const [message] = hook.received;
  const feed = await app.inject({
    method: 'GET',
    url: '/v1/events?type=consent.granted',
    headers: world.headers,
  });
  const event = feed.json().data.at(-1);
  t.equal(event.contactId, contactId);
  const verified = new Webhook(webhook.secret).verify(message!.body, message!.headers);
  t.same(verified, event, 'verifies, and is the event as GET /v1/events shows it');
  t.equal(message!.body, JSON.stringify(event), 'byte for byte');
  t.equal(message!.headers['webhook-id'], event.id, 'webhook-id is the event id');
  t.match(message!.headers['content-type'], /^application\/json/);
  t.notOk(message!.body.includes('subscriber-1@example.com'), 'no address in the body');

  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, {
    eventId: event.id,
    eventSeq: event.seq,
    status: 'delivered',
    attempts: 1,
    nextAttemptAt: null,
    lastAttempt: { statusCode: 200, errorCode: null },
  });
  t.match(await w.tick(), { fannedOut: 0, attempted: 0 }, 'nothing more to do');
  t.equal(hook.received.length, 1);
});

t.test('only the chosen types; a paused endpoint queues and resumes', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url, ['consent.withdrawn']);
  const contactId = await world.grant();
  const w = worker(app.database.db, clock);
  await w.tick();
  t.equal(hook.received.length, 0, 'a grant is not a withdrawal');

  const paused = await app.inject({
    method: 'PATCH',
    url: `/v1/webhooks/${webhook.id}`,
    headers: world.headers,
    payload: { status: 'disabled' },
  });
  t.equal(paused.statusCode, 200);
  const withdrawn = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contactId}/consents`,
    headers: world.headers,
    payload: { purposeId: world.purposeId, event: 'withdrawn', method: 'api' },
  });
  t.equal(withdrawn.statusCode, 201, withdrawn.body);
  await w.tick();
  t.equal(hook.received.length, 0, 'nothing sent while disabled');

  await app.inject({
    method: 'PATCH',
    url: `/v1/webhooks/${webhook.id}`,
    headers: world.headers,
    payload: { status: 'active' },
  });
  await w.tick();
  t.equal(hook.received.length, 1, 'sent once active again');
  t.equal(JSON.parse(hook.received[0]!.body).type, 'consent.withdrawn');
});

t.test(
  'a receiver failing twice: three attempts, one delivery, back-off by the clock',
  async (t) => {
    const clock = new TestClock(new Date());
    const app = await build(t, { env: WEBHOOK_ENV, clock });
    const world = await consentingWorld(app);
    const hook = await receiver(t, (n) => (n <= 2 ? 503 : 204));
    const webhook = await createWebhook(app, world.owner, hook.url);
    await world.grant();
    const w = worker(app.database.db, clock);

    await w.tick();
    let [delivery] = await deliveries(app, world.owner, webhook.id);
    t.match(delivery, {
      status: 'pending',
      attempts: 1,
      lastAttempt: { statusCode: 503, errorCode: 'http_error' },
    });
    t.equal(Date.parse(delivery!.nextAttemptAt!) - clock.now().getTime(), 1000, 'base back-off');

    t.match(await w.tick(), { attempted: 0 }, 'not before its time');
    clock.advance(999);
    t.match(await w.tick(), { attempted: 0 });
    clock.advance(1);
    t.match(await w.tick(), { attempted: 1 });
    [delivery] = await deliveries(app, world.owner, webhook.id);
    t.match(delivery, { status: 'pending', attempts: 2 });
    t.equal(Date.parse(delivery!.nextAttemptAt!) - clock.now().getTime(), 2000, 'doubled');

    clock.advance(2000);
    await w.tick();
    [delivery] = await deliveries(app, world.owner, webhook.id);
    t.match(delivery, {
      status: 'delivered',
      attempts: 3,
      lastAttempt: { statusCode: 204, errorCode: null },
    });
    t.equal(hook.received.length, 3, 'three attempts');
    t.equal(new Set(hook.received.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id');
    t.equal((await deliveries(app, world.owner, webhook.id)).length, 1, 'one delivery in the log');
  },
);

t.test('back-off: doubles from the base, capped; failed once the retry window ends', async (t) => {
  const options = { baseMs: 30_000, maxMs: 12 * 3_600_000 };
  t.same(
    [1, 2, 3, 4, 11, 12, 30].map((n) => backoffMs(n, options)),
    [30_000, 60_000, 120_000, 240_000, 30_720_000, 43_200_000, 43_200_000],
  );

  const clock = new TestClock(new Date());
  const env = { ...WEBHOOK_ENV, WEBHOOK_RETRY_FOR_MS: '5000' };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t, () => 500);
  const webhook = await createWebhook(app, world.owner, hook.url);
  await world.grant();
  const w = worker(app.database.db, clock, env);
  await w.tick(); // fails; next in 1 s
  clock.advance(1000);
  await w.tick(); // fails; next in 2 s
  clock.advance(2000);
  await w.tick(); // fails; 4 s would pass the window (5 s): the last try is at its end
  let [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'pending', attempts: 3 });
  t.equal(
    Date.parse(delivery!.nextAttemptAt!) - clock.now().getTime(),
    2000,
    'at the window’s end',
  );
  clock.advance(2000);
  await w.tick();
  [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'failed', attempts: 4, nextAttemptAt: null });
  clock.advance(3_600_000);
  t.match(await w.tick(), { attempted: 0 }, 'a failed delivery is not tried again by itself');
  t.equal(hook.received.length, 4);

  const failed = await deliveries(app, world.owner, webhook.id, '?status=failed');
  t.equal(failed.length, 1, 'the status filter');
  t.same(await deliveries(app, world.owner, webhook.id, '?status=delivered'), []);
});

t.test('a worker dying mid-send loses nothing: the lease runs out, it is sent again', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  await world.grant();
  const w = worker(app.database.db, clock);
  t.match(await w.fanOut(), 1);

  // What a worker does before it sends: claim, with a lease. Then it dies (nothing recorded).
  const now = clock.now();
  const claimed = await claimDueDeliveries(app.database.owner, {
    now,
    leaseUntil: new Date(now.getTime() + 30_000),
    limit: 10,
    perEndpoint: 2,
  });
  t.equal(claimed.length, 1, 'the dead worker’s claim');
  let [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'sending', attempts: 1 });

  t.match(await w.tick(), { attempted: 0 }, 'not while the lease holds');
  clock.advance(30_000);
  t.match(await w.tick(), { attempted: 1 }, 'claimed again once the lease ran out');
  [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'delivered', attempts: 2 });
  t.equal(hook.received.length, 1);
});

t.test('an outcome is recorded only over its own attempt, never over a newer writer', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  const contacts = [await world.grant(), await world.grant()];
  const w = worker(app.database.db, clock);
  t.match(await w.fanOut(), 2);
  const db = app.database.owner;
  const accountId = world.owner.accountId;
  const claim = (now: Date) =>
    claimDueDeliveries(db, {
      now,
      leaseUntil: new Date(now.getTime() + 30_000),
      limit: 10,
      perEndpoint: 10,
    });
  const delivered = (now: Date): AttemptOutcome => ({
    status: 'delivered',
    attemptedAt: now,
    statusCode: 204,
    errorCode: null,
    durationMs: 3,
    deliveredAt: now,
  });
  const record = (c: ClaimedDelivery, attempt: number, now: Date) =>
    recordAttempts(db, [{ claim: { accountId, id: c.id, attempt }, outcome: delivered(now) }], now);

  // Claimed by a worker that then stalls; its lease runs out and another claims them again.
  const first = await claim(clock.now());
  t.equal(first.length, 2);
  clock.advance(30_000);
  const second = await claim(clock.now());
  t.same(
    second.map((c) => c.attempts),
    [2, 2],
    'claimed again: attempt 2',
  );

  // The first claimant wakes up: its outcome is refused (attempt 1 is not the row's).
  const [a, b] = second.sort((x, y) => Number(x.event_seq) - Number(y.event_seq));
  t.same([...(await record(a!, 1, clock.now()))], [], 'the stale attempt is not recorded');
  t.same([...(await record(a!, 2, clock.now()))], [a!.id], 'the current attempt is');

  // While b is being sent, its contact is erased: the cancel wins over the late outcome.
  const seqs = await sql<{ seq: string }>`
    select seq from events where account_id = ${accountId} and contact_id = ${contacts[1]}`.execute(
    db,
  );
  const erasedSeq = Number(b!.event_seq);
  t.ok(
    seqs.rows.some((row) => Number(row.seq) === erasedSeq),
    'b is the second contact’s',
  );
  await db
    .transaction()
    .execute((trx) => cancelDeliveriesOfEvents(trx, accountId, [erasedSeq], clock.now()));
  t.same([...(await record(b!, 2, clock.now()))], [], 'a cancelled delivery keeps its status');

  const log = await deliveries(app, world.owner, webhook.id);
  t.same(
    log.map((d) => [d.eventSeq, d.status, d.attempts]),
    [
      [erasedSeq, 'cancelled', 2],
      [Number(a!.event_seq), 'delivered', 2],
    ],
  );
  t.equal(hook.received.length, 0, 'nothing was sent: only outcomes were written');
});

t.test('a worker claims more of an endpoint it serves; another gets none of it', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  for (let i = 0; i < 5; i++) await world.grant();
  const w = worker(app.database.db, clock);
  t.match(await w.fanOut(), 5);

  const now = clock.now();
  const claim = (owner: string, perEndpoint: number) =>
    claimDueDeliveries(app.database.owner, {
      now,
      leaseUntil: new Date(now.getTime() + 30_000),
      limit: 10,
      perEndpoint,
      owner,
    });
  const [first, second] = [randomUUID(), randomUUID()];
  t.equal((await claim(first, 2)).length, 2, 'the first worker takes its share');
  t.equal((await claim(second, 2)).length, 0, 'the second none: the first serves the endpoint');
  t.equal((await claim(first, 2)).length, 0, 'the first holds its share already');
  t.equal((await claim(first, 4)).length, 2, 'and takes more while it still sends the first two');
  const held = await deliveries(app, world.owner, webhook.id, '?status=sending');
  t.equal(held.length, 4);

  // Its leases run out (it died): the rest of its claims and the fifth go to whoever claims.
  clock.advance(30_000);
  t.match(await w.tick(), { attempted: 5 });
  t.equal(hook.received.length, 5);
});

t.test('redelivery sends it again with the same webhook-id', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  await world.grant();
  const w = worker(app.database.db, clock);
  await w.tick();
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.equal(delivery!.status, 'delivered');

  const again = await app.inject({
    method: 'POST',
    url: `/v1/webhooks/${webhook.id}/deliveries/${delivery!.id}/redelivery`,
    headers: world.headers,
  });
  t.equal(again.statusCode, 202, again.body);
  t.match(again.json(), { id: delivery!.id, status: 'pending', attempts: 1 });
  await w.tick();
  t.equal(hook.received.length, 2);
  t.equal(hook.received[1]!.headers['webhook-id'], hook.received[0]!.headers['webhook-id']);
  t.equal(hook.received[1]!.body, hook.received[0]!.body);
  const [after] = await deliveries(app, world.owner, webhook.id);
  t.match(after, { status: 'delivered', attempts: 2 });

  const unknown = await app.inject({
    method: 'POST',
    url: `/v1/webhooks/${webhook.id}/deliveries/${webhook.id}/redelivery`,
    headers: world.headers,
  });
  t.equal(unknown.statusCode, 404);
  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?entityType=webhook',
    headers: world.headers,
  });
  t.ok(
    trail.json().data.some((e: { action: string }) => e.action === 'webhook.redelivery_requested'),
    'audited',
  );
});

t.test('after a rotation both secrets sign for 24 hours, then only the new one', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  const rotated = await app.inject({
    method: 'POST',
    url: `/v1/webhooks/${webhook.id}/secret-rotation`,
    headers: world.headers,
  });
  t.equal(rotated.statusCode, 200);
  const { secret } = rotated.json();
  const w = worker(app.database.db, clock);

  await world.grant();
  await w.tick();
  const first = hook.received[0]!;
  t.equal(first.headers['webhook-signature']!.split(' ').length, 2, 'two signatures');
  t.ok(new Webhook(webhook.secret).verify(first.body, first.headers), 'the old secret verifies');
  t.ok(new Webhook(secret).verify(first.body, first.headers), 'the new one too');

  clock.advance(24 * 3_600_000);
  await world.grant();
  await w.tick();
  const second = hook.received[1]!;
  t.equal(second.headers['webhook-signature']!.split(' ').length, 1, 'one signature');
  t.ok(new Webhook(secret).verify(second.body, second.headers), 'the new secret verifies');
  t.throws(() => new Webhook(webhook.secret).verify(second.body, second.headers), 'not the old');
  const got = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${webhook.id}`,
    headers: bearer(world.owner.accessToken),
  });
  t.equal(got.json().previousSecretExpiresAt, null);
});

t.test('in-process worker: delivers by itself, and stops with the app', async (t) => {
  const app = await build(t, {
    env: { ...WEBHOOK_ENV, WORKER: 'in-process', WORKER_POLL_INTERVAL_MS: '20' },
  });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  await createWebhook(app, world.owner, hook.url);
  await world.grant();
  for (let i = 0; i < 200 && hook.received.length === 0; i++) await sleep(25);
  t.equal(hook.received.length, 1, 'delivered without a tick from the test');
  const started = Date.now();
  await app.close();
  t.ok(Date.now() - started < 5_000, 'closing stops the worker promptly');
});
