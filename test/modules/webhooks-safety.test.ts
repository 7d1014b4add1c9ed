import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { appendEvents } from '../../src/modules/events/events.service.js';
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
 * What a webhook must not do: reach the internal network through DNS or a redirect (the
 * delivery fails with the reason, nothing is sent there), or send an erased contact's events.
 */

const PUBLIC_ONLY = { ...WEBHOOK_ENV, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'false' };

t.test('a host that resolves to a private address is refused at send time', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: PUBLIC_ONLY, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  // Public-looking names that DNS (here: the test's resolver) points inwards.
  const resolved: Record<string, { address: string; family: number }[]> = {
    'inward.example.com': [{ address: '127.0.0.1', family: 4 }],
    'mixed.example.com': [
      { address: '93.184.215.14', family: 4 },
      { address: '10.0.0.7', family: 4 },
    ],
    'metadata.example.com': [{ address: '169.254.169.254', family: 4 }],
    'mapped.example.com': [{ address: '::ffff:127.0.0.1', family: 6 }],
  };
  const resolve = async (host: string) => resolved[host] ?? [];
  const w = worker(app.database.db, clock, PUBLIC_ONLY, { resolve });
  const webhooks = [];
  for (const host of [...Object.keys(resolved), 'nowhere.example.com']) {
    webhooks.push(await createWebhook(app, world.owner, `https://${host}:${hook.port}/hook`));
  }
  await world.grant();
  await w.tick();
  t.equal(hook.received.length, 0, 'nothing was sent');
  for (const [i, webhook] of webhooks.entries()) {
    const [delivery] = await deliveries(app, world.owner, webhook.id);
    const expected = i < 4 ? 'forbidden_address' : 'dns_failed';
    t.match(
      delivery,
      { status: 'pending', attempts: 1, lastAttempt: { statusCode: null, errorCode: expected } },
      `${Object.keys(resolved)[i] ?? 'nowhere'}: ${expected}`,
    );
  }
});

t.test('an endpoint registered while private targets were allowed is refused later', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  await world.grant();
  await worker(app.database.db, clock, PUBLIC_ONLY).tick();
  t.equal(hook.received.length, 0, 'nothing was sent');
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.equal(delivery!.lastAttempt!.errorCode, 'url_forbidden', 'http to a loopback address');
});

t.test('a redirect is not followed', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const target = await receiver(t);
  const redirecting = await receiver(t, (_n, _req, res) => {
    res.writeHead(307, { location: target.url }).end();
  });
  const webhook = await createWebhook(app, world.owner, redirecting.url);
  await world.grant();
  await worker(app.database.db, clock).tick();
  t.equal(redirecting.received.length, 1);
  t.equal(target.received.length, 0, 'the redirect target got nothing');
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, {
    status: 'pending',
    lastAttempt: { statusCode: 307, errorCode: 'redirect_not_followed' },
  });
});

t.test('a receiver that does not answer in time: timeout, retried', async (t) => {
  const clock = new TestClock(new Date());
  const env = { ...WEBHOOK_ENV, WEBHOOK_TIMEOUT_MS: '300' };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  const silent = await receiver(t, () => new Promise(() => {}));
  const webhook = await createWebhook(app, world.owner, silent.url);
  await world.grant();
  await worker(app.database.db, clock, env).tick();
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'pending', lastAttempt: { statusCode: null, errorCode: 'timeout' } });
  t.ok(
    delivery!.lastAttempt!.durationMs >= 290,
    `bounded (${delivery!.lastAttempt!.durationMs} ms)`,
  );
});

t.test('an erased contact’s pending deliveries are cancelled, and never sent', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t, () => 503);
  const webhook = await createWebhook(app, world.owner, hook.url);
  const w = worker(app.database.db, clock);

  // One delivery already tried (failing), one not yet tried, then the contact is erased.
  const tried = await world.grant('erase-me@example.com');
  await w.tick();
  t.equal(hook.received.length, 1);
  const untouched = await world.grant('keep-me@example.com');
  await w.fanOut();
  const erased = await app.inject({
    method: 'DELETE',
    url: `/v1/contacts/${tried}`,
    headers: world.headers,
  });
  t.equal(erased.statusCode, 204, erased.body);

  const log = await deliveries(app, world.owner, webhook.id);
  t.equal(log.length, 2);
  const byStatus = Object.fromEntries(log.map((d) => [d.status, d]));
  t.ok(byStatus.cancelled, 'the erased contact’s delivery is cancelled');
  t.ok(byStatus.pending, 'the other stays pending');
  clock.advance(60_000);
  await w.tick();
  t.equal(hook.received.length, 2, 'only the other contact’s event was tried again');
  t.notOk(
    hook.received.slice(1).some((r) => r.body.includes(tried)),
    'nothing about the erased contact',
  );
  t.ok(hook.received[1]!.body.includes(untouched));

  const replay = await app.inject({
    method: 'POST',
    url: `/v1/webhooks/${webhook.id}/deliveries/${byStatus.cancelled!.id}/redelivery`,
    headers: world.headers,
  });
  t.equal(replay.statusCode, 409);
  t.equal(replay.json().code, 'event_erased', 'an erased event cannot be replayed');
});

t.test('an event erased between fan-out and send is cancelled at send time', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  const w = worker(app.database.db, clock);
  const contactId = await world.grant();
  await w.fanOut();
  // The event goes the way an erasure takes it (as the owner), without the forgetter's help.
  await app.database.owner
    .deleteFrom('events')
    .where('account_id', '=', world.owner.accountId)
    .where('contact_id', '=', contactId)
    .execute();
  await w.tick();
  t.equal(hook.received.length, 0, 'nothing sent');
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'cancelled', lastAttempt: null });
});

t.test(
  'a delivery that waited in its endpoint’s queue is read again before it is sent',
  async (t) => {
    const clock = new TestClock(new Date());
    const env = { ...WEBHOOK_ENV, WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: '1' };
    const app = await build(t, { env, clock });
    const world = await consentingWorld(app);
    // The first attempt is held open until the other event is gone: the other delivery, read
    // with the claim, waits in the queue meanwhile.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const hook = await receiver(t, async (n) => {
      if (n === 1) await held;
      return 200;
    });
    const webhook = await createWebhook(app, world.owner, hook.url);
    const contacts = [await world.grant(), await world.grant()];
    // Everything read with a claim counts as stale at once: each send reads again.
    const w = worker(app.database.db, clock, env, { freshForMs: 0 });
    await w.fanOut();
    const round = w.sendDue();
    while (hook.received.length < 1) await sleep(5);
    // The contact whose event waits is erased (its events go as an erasure takes them).
    const first = JSON.parse(hook.received[0]!.body) as { contactId: string };
    const waiting = contacts.find((id) => id !== first.contactId)!;
    await app.database.owner
      .deleteFrom('events')
      .where('account_id', '=', world.owner.accountId)
      .where('contact_id', '=', waiting)
      .execute();
    release();
    t.equal(await round, 2);
    t.equal(hook.received.length, 1, 'only the first event sent');
    const log = await deliveries(app, world.owner, webhook.id);
    t.same(log.map((d) => d.status).sort(), ['cancelled', 'delivered']);
  },
);

t.test('an event the feed cannot serve is a failed attempt, not a loop', async (t) => {
  const clock = new TestClock(new Date());
  const env = { ...WEBHOOK_ENV, WEBHOOK_RETRY_FOR_MS: '1000' };
  const app = await build(t, { env, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url);
  // Data that does not fit its type's schema (as if written by a broken release).
  await app.database.owner
    .transaction()
    .execute((trx) =>
      appendEvents(trx, world.owner.accountId, [
        { type: 'consent.granted', contactId: null, data: { unexpected: true } },
      ]),
    );
  const w = worker(app.database.db, clock, env);
  await w.tick();
  let [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, {
    status: 'pending',
    attempts: 1,
    lastAttempt: { errorCode: 'internal_error' },
  });
  clock.advance(1000);
  await w.tick();
  [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'failed', attempts: 2 }, 'ends failed with its retry window');
  t.equal(hook.received.length, 0);
});
