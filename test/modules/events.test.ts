import type { FastifyInstance } from 'fastify';
import t from 'tap';
import type { Database } from '../../src/db/database.js';
import { createApiKey } from '../fixtures/identity.js';
import { whereIs } from '../fixtures/where-is.js';
import { build } from '../helper.js';
import { type ConsentWorld, consentWorld, insertContact, mustRecord } from './consents-fixtures.js';

type App = FastifyInstance & { database: Database };

interface FeedEvent {
  id: string;
  seq: number;
  type: string;
  contactId: string | null;
  data: Record<string, unknown> & { confirmation?: { url: string; expiresAt: string } };
  createdAt: string;
}

async function feed(
  app: App,
  headers: Record<string, string>,
  query = '',
): Promise<{ data: FeedEvent[]; nextCursor: string }> {
  const res = await app.inject({ method: 'GET', url: `/v1/events${query}`, headers });
  if (res.statusCode !== 200) throw new Error(`feed: ${res.statusCode} ${res.body}`);
  return res.json();
}

function doubleOptIn(app: App, world: ConsentWorld, contactId: string) {
  return mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'double_opt_in',
    evidence: { ip: '203.0.113.9' },
  });
}

t.test('double opt-in: the feed asks for the message, then reports the confirmation', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const email = 'doi-subscriber@example.com';
  const contactId = await insertContact(app, world.owner.accountId, { email });
  const granted = await doubleOptIn(app, world, contactId);

  const first = await feed(app, world.headers);
  t.equal(first.data.length, 1);
  const requested = first.data[0]!;
  t.equal(requested.type, 'consent.confirmation_requested');
  t.equal(requested.contactId, contactId);
  t.match(requested.data, {
    contactId,
    purposeId: world.purposeId,
    noticeVersion: 1,
    method: 'double_opt_in',
    confirmation: { url: granted.confirmation.url, expiresAt: granted.confirmation.expiresAt },
  });
  t.notOk('token' in (requested.data.confirmation ?? {}), 'the link, not a separate token');
  t.notOk(JSON.stringify(first).includes(email), 'no address on the feed');

  // The mail system sends the link; the person follows it.
  const confirmed = await app.inject({ method: 'POST', url: requested.data.confirmation!.url });
  t.equal(confirmed.statusCode, 200, confirmed.body);

  const next = await feed(app, world.headers, `?cursor=${first.nextCursor}`);
  t.same(
    next.data.map((event) => event.type),
    ['consent.confirmed'],
    'only what is new since the cursor',
  );
  t.ok(next.data[0]!.seq > requested.seq);
  const idle = await feed(app, world.headers, `?cursor=${next.nextCursor}`);
  t.same(idle.data, []);
  t.equal(idle.nextCursor, next.nextCursor, 'an empty poll keeps the cursor');
});

t.test('grants and withdrawals (API and link) are on the feed; type filters', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    event: 'withdrawn',
    method: 'api',
  });
  const other = await insertContact(app, world.owner.accountId);
  const otherGrant = await mustRecord(app, world.headers, other, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  const byLink = await app.inject({ method: 'POST', url: otherGrant.withdrawal.url });
  t.equal(byLink.statusCode, 200, byLink.body);

  const all = await feed(app, world.headers);
  t.same(
    all.data.map((event) => [event.type, event.contactId]),
    [
      ['consent.granted', contactId],
      ['consent.withdrawn', contactId],
      ['consent.granted', other],
      ['consent.withdrawn', other],
    ],
  );
  t.same(
    all.data.map((event) => event.seq),
    [...all.data.map((event) => event.seq)].sort((a, b) => a - b),
    'in feed order',
  );
  t.equal(all.data[0]!.data.consentEventId, granted.id, 'names the ledger entry');

  const withdrawals = await feed(app, world.headers, '?type=consent.withdrawn&limit=1');
  t.same(
    withdrawals.data.map((event) => event.contactId),
    [contactId],
  );
  const more = await feed(
    app,
    world.headers,
    `?type=consent.withdrawn&limit=1&cursor=${withdrawals.nextCursor}`,
  );
  t.same(
    more.data.map((event) => event.contactId),
    [other],
  );

  const bad = await app.inject({
    method: 'GET',
    url: '/v1/events?cursor=not-a-cursor',
    headers: world.headers,
  });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().code, 'invalid_cursor');
});

t.test('an import pending double opt-in requests one confirmation per new contact', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  // Three rows without consent (pending double opt-in) and one with a signed-up form's evidence,
  // which is granted already and must not be asked to confirm.
  const rows: object[] = ['a', 'b', 'c'].map((x) => ({ email: `${x}-imported@example.com` }));
  rows.splice(1, 0, {
    email: 'form-imported@example.com',
    consent: {
      purpose: 'newsletter',
      noticeVersion: 1,
      method: 'form',
      grantedAt: '2025-03-01T10:15:00Z',
    },
  });
  const body = `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
  const res = await app.inject({
    method: 'POST',
    url: '/v1/contact-imports?format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
    headers: { ...world.headers, 'content-type': 'application/x-ndjson' },
    payload: body,
  });
  t.equal(res.statusCode, 201, res.body);
  t.equal(res.json().counts.created, 4);

  const events = (await feed(app, world.headers)).data;
  t.equal(events.length, 3, 'the granted row asks for nothing');
  t.ok(events.every((event) => event.type === 'consent.confirmation_requested'));
  const tokens = await app.database.owner
    .selectFrom('consent_tokens')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('account_id', '=', world.owner.accountId)
    .executeTakeFirstOrThrow();
  t.equal(Number(tokens.n), 3, 'no confirmation link for the granted row');
  t.equal(new Set(events.map((event) => event.data.confirmation?.url)).size, 3, 'one link each');
  for (const event of events) {
    const token = event.data.confirmation!.url.split('/').pop()!;
    t.same(
      await whereIs(app.database.owner, token),
      [],
      'the feed stores no imported link in clear',
    );
  }
  const confirmed = await app.inject({
    method: 'POST',
    url: events[1]!.data.confirmation!.url,
  });
  t.equal(confirmed.statusCode, 200, confirmed.body);
  const ledger = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${events[1]!.contactId}/consents`,
    headers: world.headers,
  });
  t.match(ledger.json().current, [{ state: 'granted', method: 'double_opt_in' }]);

  // Importing the same file again asks nobody twice.
  const again = await app.inject({
    method: 'POST',
    url: '/v1/contact-imports?format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
    headers: { ...world.headers, 'content-type': 'application/x-ndjson' },
    payload: body,
  });
  t.equal(again.statusCode, 201);
  const after = (await feed(app, world.headers)).data;
  t.equal(
    after.filter((event) => event.type === 'consent.confirmation_requested').length,
    3,
    'no second request for contacts already pending or confirmed',
  );
});

t.test('erasure removes the contact’s events from the feed', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const erased = await insertContact(app, world.owner.accountId);
  const kept = await insertContact(app, world.owner.accountId);
  await doubleOptIn(app, world, erased);
  await doubleOptIn(app, world, kept);
  const res = await app.inject({
    method: 'DELETE',
    url: `/v1/contacts/${erased}`,
    headers: world.headers,
  });
  t.equal(res.statusCode, 204, res.body);
  const events = (await feed(app, world.headers)).data;
  t.same(
    events.map((event) => event.contactId),
    [kept],
  );
});

t.test('the feed is per account and needs events:read', async (t) => {
  const app = await build(t);
  const a = await consentWorld(app);
  const b = await consentWorld(app);
  await doubleOptIn(app, a, await insertContact(app, a.owner.accountId));
  t.same((await feed(app, b.headers)).data, [], 'account B sees none of A’s events');

  const withScope = await createApiKey(app, a.owner, ['events:read']);
  const viaKey = await feed(app, { 'x-api-key': withScope.key });
  t.equal(viaKey.data.length, 1);
  const without = await createApiKey(app, a.owner, ['contacts:read']);
  const refused = await app.inject({
    method: 'GET',
    url: '/v1/events',
    headers: { 'x-api-key': without.key },
  });
  t.equal(refused.statusCode, 403);
  t.equal(refused.json().code, 'missing_scope');
  const anonymous = await app.inject({ method: 'GET', url: '/v1/events' });
  t.equal(anonymous.statusCode, 401);
});

/**
 * The confirmation link acts for the contact (it turns a pending grant into consent), so it is
 * stored sealed: a database reader finds it nowhere, while the feed still hands it out.
 */
t.test('the feed serves the confirmation link, the database holds it only sealed', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await doubleOptIn(app, world, contactId);
  const token: string = granted.confirmation.url.split('/').pop();
  const withdrawToken: string = granted.withdrawal.url.split('/').pop();
  t.match(token, /^[A-Za-z0-9_-]{43}$/);

  // The search works: it finds the event's ids where they are stored.
  t.ok((await whereIs(db, granted.id)).includes('events.data'), 'the search finds ids');
  for (const [name, needle] of [
    ['the confirmation token', token],
    ['its first half', token.slice(0, 22)],
    ['the withdrawal token', withdrawToken],
  ] as const) {
    t.same(await whereIs(db, needle), [], `${name}: in no column of any table`);
  }
  const stored = await db
    .selectFrom('events')
    .select('data')
    .where('account_id', '=', world.owner.accountId)
    .executeTakeFirstOrThrow();
  t.match(stored.data, {
    confirmation: { sealedUrl: /^v1\.[A-Za-z0-9_-]+$/, expiresAt: granted.confirmation.expiresAt },
  });
  t.notOk('url' in (stored.data.confirmation as object), 'no url column in clear');

  // Read twice (a customer re-reading from an older cursor): the same working link each time.
  const first = (await feed(app, world.headers)).data[0]!;
  const again = (await feed(app, world.headers)).data[0]!;
  t.same(first.data.confirmation, {
    url: granted.confirmation.url,
    expiresAt: granted.confirmation.expiresAt,
  });
  t.same(again.data.confirmation, first.data.confirmation, 'every read opens the same link');
  const confirmed = await app.inject({ method: 'POST', url: first.data.confirmation!.url });
  t.equal(confirmed.statusCode, 200, confirmed.body);

  // A sealed link moved to another event (or account) does not open there.
  const other = await signupWorldEvent(app);
  await db
    .updateTable('events')
    .set({ data: JSON.stringify({ ...other.data, confirmation: stored.data.confirmation }) })
    .where('account_id', '=', other.accountId)
    .execute();
  const moved = (await feed(app, other.headers)).data[0]!;
  t.equal(moved.data.confirmation?.url, null, 'bound to its account and consent event');
});

/** A second account with one double opt-in request on its feed. */
async function signupWorldEvent(app: App) {
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  await doubleOptIn(app, world, contactId);
  const row = await app.database.owner
    .selectFrom('events')
    .select('data')
    .where('account_id', '=', world.owner.accountId)
    .executeTakeFirstOrThrow();
  return { accountId: world.owner.accountId, headers: world.headers, data: row.data };
}
