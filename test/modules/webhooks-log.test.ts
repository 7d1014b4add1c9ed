import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { findEventsBySeqs } from '../../src/modules/events/events.service.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer } from '../fixtures/identity.js';
import { build } from '../helper.js';
import {
  consentingWorld,
  createWebhook,
  receiver,
  WEBHOOK_ENV,
  worker,
} from './webhooks-fixtures.js';

/**
 * The delivery log as an integrator pages it, and the worker's reads behind it: deliveries are
 * listed newest first by their event's position in the feed (the order the fan-out made them
 * in, served by the deliveries' own key), and a claim's events are read as a range of the key
 * when their seqs lie close together.
 */

t.test('the delivery log pages newest first by event, with a cursor and a status', async (t) => {
  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const hook = await receiver(t);
  const webhook = await createWebhook(app, world.owner, hook.url, ['consent.granted']);
  for (let i = 0; i < 5; i++) await world.grant();
  // A fan-out of a batch larger than one statement's would be is not needed: five events, one
  // statement, and the cursor moves past all of them.
  const w = worker(app.database.db, clock);
  t.match(await w.tick(), { fannedOut: 5, attempted: 5 });
  t.match(await w.tick(), { fannedOut: 0, attempted: 0 }, 'the cursor moved past them');
  t.equal(hook.received.length, 5);

  const feed = await app.inject({
    method: 'GET',
    url: '/v1/events?type=consent.granted',
    headers: world.headers,
  });
  const seqs: number[] = feed.json().data.map((event: { seq: number }) => event.seq);
  t.equal(seqs.length, 5);

  const pages: number[][] = [];
  let cursor: string | null = null;
  do {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/webhooks/${webhook.id}/deliveries?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      headers: bearer(world.owner.accessToken),
    });
    t.equal(res.statusCode, 200);
    const body = res.json() as { data: { eventSeq: number }[]; nextCursor: string | null };
    pages.push(body.data.map((delivery) => delivery.eventSeq));
    cursor = body.nextCursor;
  } while (cursor && pages.length < 10);
  t.same(
    pages,
    [[seqs[4], seqs[3]], [seqs[2], seqs[1]], [seqs[0]]],
    'three pages, newest event first, nothing twice, nothing left out',
  );

  const delivered = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${webhook.id}/deliveries?status=delivered&limit=10`,
    headers: bearer(world.owner.accessToken),
  });
  t.equal(delivered.json().data.length, 5);
  const failed = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${webhook.id}/deliveries?status=failed`,
    headers: bearer(world.owner.accessToken),
  });
  t.same(failed.json(), { data: [], nextCursor: null });

  const logUrl = `/v1/webhooks/${webhook.id}/deliveries`;
  const bad = await app.inject({
    method: 'GET',
    url: `${logUrl}?cursor=not-a-cursor`,
    headers: bearer(world.owner.accessToken),
  });
  assertProblem(t, bad, { status: 400, code: 'invalid_cursor', instance: logUrl });
});

t.test('a claim reads exactly its events, close together or far apart', async (t) => {
  const app = await build(t);
  const world = await consentingWorld(app);
  for (let i = 0; i < 6; i++) await world.grant();
  const feed = await app.inject({ method: 'GET', url: '/v1/events', headers: world.headers });
  const all: number[] = feed.json().data.map((event: { seq: number }) => event.seq);
  t.ok(all.length >= 6);
  const db = app.database.owner;
  const accountId = world.owner.accountId;

  // Close together: read as one range, and only the asked-for ones kept.
  const close = [all[0]!, all[2]!, all[3]!];
  const found = await findEventsBySeqs(db, accountId, close);
  t.same(
    [...found.keys()].sort((a, b) => a - b),
    close,
    'a range read keeps only those asked for',
  );
  for (const seq of close) t.equal(Number(found.get(seq)?.seq), seq);

  // Far apart, and one that does not exist (an erased event's seq): looked up one by one.
  const far = [all[0]!, all.at(-1)! + 1_000_000];
  t.same(
    [...(await findEventsBySeqs(db, accountId, far)).keys()],
    [all[0]],
    'the missing one is absent',
  );

  // Seqs are numbered per account: the same seqs in another account are its own events.
  const other = await consentingWorld(app);
  await other.grant();
  const theirs = await findEventsBySeqs(db, other.owner.accountId, close);
  t.ok(theirs.size > 0);
  for (const row of theirs.values()) t.equal(row.account_id, other.owner.accountId);
  t.equal((await findEventsBySeqs(db, accountId, [])).size, 0);
});
