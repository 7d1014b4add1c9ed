import { sql } from 'kysely';
import t from 'tap';
import * as perAccount from '../../migrations/20261206T090000Z-number-events-per-account.js';
import { grantServiceRole } from '../../src/db/grants.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { whereIs } from '../fixtures/where-is.js';
import { build } from '../helper.js';
import { createPurposeWithNotice } from './consents-fixtures.js';
import { ndjson, upload } from './contact-imports-fixtures.js';
import { type App, createWebhook, WEBHOOK_ENV } from './webhooks-fixtures.js';

/** The feed's contact events, the imported grants, and `seq` as a position per account. */

interface FeedEvent {
  id: string;
  seq: number;
  type: string;
  contactId: string | null;
  data: Record<string, unknown>;
}

async function feed(app: App, owner: SignedUp): Promise<FeedEvent[]> {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/events?limit=1000',
    headers: bearer(owner.accessToken),
  });
  if (res.statusCode !== 200) throw new Error(`feed: ${res.statusCode} ${res.body}`);
  return res.json().data;
}

async function createContact(app: App, owner: SignedUp, payload: object): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: bearer(owner.accessToken),
    payload,
  });
  if (res.statusCode !== 201) throw new Error(`contact: ${res.statusCode} ${res.body}`);
  return res.json().id;
}

async function call(
  app: App,
  owner: SignedUp,
  method: 'PATCH' | 'PUT' | 'DELETE',
  url: string,
  payload?: object,
) {
  const res = await app.inject({ method, url, headers: bearer(owner.accessToken), payload });
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res;
}

t.test('each change of a contact is on the feed, by id and field name only', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const email = 'feed.types@example.com';
  const contactId = await createContact(app, owner, { email, firstName: 'Ottoline' });

  let events = await feed(app, owner);
  t.same(
    events.map((e) => [e.type, e.contactId, e.data]),
    [['contact.created', contactId, { contactId, source: 'api', importId: null }]],
    'created',
  );

  await call(app, owner, 'PATCH', `/v1/contacts/${contactId}`, {
    firstName: 'Wilhelmina-Marker',
    language: 'de',
  });
  events = await feed(app, owner);
  t.same(events.at(-1)?.type, 'contact.rectified');
  t.same(events.at(-1)?.data, { contactId, changedFields: ['firstName', 'language'] });
  t.notMatch(JSON.stringify(events), /Wilhelmina|Ottoline|feed\.types/, 'names, not values');

  // A patch that changes nothing says nothing.
  await call(app, owner, 'PATCH', `/v1/contacts/${contactId}`, { language: 'de' });
  t.equal((await feed(app, owner)).length, 2, 'no event for a patch without a change');

  await call(app, owner, 'PUT', `/v1/contacts/${contactId}/restriction`, { reason: 'disputed' });
  // A new reason for a restriction in force is no new restriction.
  await call(app, owner, 'PUT', `/v1/contacts/${contactId}/restriction`, { reason: 'still' });
  await call(app, owner, 'DELETE', `/v1/contacts/${contactId}/restriction`);
  events = await feed(app, owner);
  t.same(
    events.slice(2).map((e) => [e.type, e.contactId, e.data]),
    [
      ['contact.restricted', contactId, { contactId }],
      ['contact.restriction_lifted', contactId, { contactId }],
    ],
    'restricted once, then lifted',
  );
  t.notMatch(JSON.stringify(events), /disputed|still/, 'no restriction reason on the feed');
  const lastBefore = events.at(-1)!.seq;

  await call(app, owner, 'DELETE', `/v1/contacts/${contactId}`);
  events = await feed(app, owner);
  t.same(
    events.map((e) => [e.type, e.contactId, e.data]),
    [['contact.erased', contactId, { contactId, dataSubjectRequestId: null }]],
    'the erasure took the contact’s events, and its own event stays',
  );
  // Numbers are never handed out again, though the newest events were deleted: a reader whose
  // cursor went past them still sees the erasure.
  t.ok(events[0]!.seq > lastBefore, `seq ${events[0]!.seq} after ${lastBefore}`);
  for (const needle of [email, 'Wilhelmina', 'Ottoline']) {
    t.same(await whereIs(app.database.owner, needle), [], `${needle}: found nowhere`);
  }
});

t.test('an import announces new contacts and every grant with evidence', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const purposeId = await createPurposeWithNotice(app, owner, 'newsletter');
  const existing = await createContact(app, owner, { email: 'known@example.com' });
  const consent = {
    purpose: 'newsletter',
    noticeVersion: 1,
    method: 'form',
    grantedAt: '2025-03-01T10:15:00Z',
  };
  const w = { app, owner, headers: bearer(owner.accessToken), purposeId };
  const res = await upload(
    w,
    ndjson([
      { email: 'one@example.com', consent },
      { email: 'known@example.com', consent },
      { email: 'two@example.com', consent: { ...consent, method: 'double_opt_in' } },
      { email: 'three@example.com' },
    ]),
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
  );
  t.equal(res.statusCode, 201, res.body);
  const importId: string = res.json().id;
  const contacts = await app.database.owner
    .selectFrom('contacts')
    .select(['id', 'email'])
    .where('account_id', '=', owner.accountId)
    .execute();
  const idOf = (email: string) => contacts.find((c) => c.email === email)!.id;

  const events = (await feed(app, owner)).slice(1);
  const created = events.filter((e) => e.type === 'contact.created');
  t.same(
    created
      .map((e) => e.data)
      .sort((a, b) => String(a.contactId).localeCompare(String(b.contactId))),
    ['one@example.com', 'two@example.com', 'three@example.com']
      .map((email) => ({ contactId: idOf(email), source: 'import', importId }))
      .sort((a, b) => a.contactId.localeCompare(b.contactId)),
    'one per new contact, none for the known one',
  );
  const granted = events.filter((e) => e.type === 'consent.granted');
  t.same(
    granted.map((e) => e.contactId).sort(),
    [idOf('one@example.com'), existing].sort(),
    'one consent.granted per grant imported with its evidence',
  );
  t.match(granted[0]!.data, { purposeId, noticeVersion: 1, method: 'form' });
  t.same(
    events
      .filter((e) => e.type === 'consent.confirmation_requested')
      .map((e) => e.contactId)
      .sort(),
    [idOf('two@example.com'), idOf('three@example.com')].sort(),
    'double opt-in grants ask for confirmation instead',
  );
  t.notMatch(JSON.stringify(events), /@example\.com/, 'no address on the feed');
});

t.test('seq is a position within the account: from 1, without gaps', async (t) => {
  const app = await build(t);
  const first = await signup(app);
  const second = await signup(app);
  for (let i = 0; i < 3; i++) {
    await createContact(app, first, { email: `first-${i}@example.com` });
    await createContact(app, second, { email: `second-${i}@example.com` });
  }
  await createContact(app, first, { email: 'first-3@example.com' });
  t.same(
    (await feed(app, first)).map((e) => e.seq),
    [1, 2, 3, 4],
  );
  t.same(
    (await feed(app, second)).map((e) => e.seq),
    [1, 2, 3],
  );
});

t.test('the migration renumbers events, cursors and deliveries per account', async (t) => {
  const app = (await build(t, { env: WEBHOOK_ENV })) as App;
  const owner = app.database.owner;
  const a = await signup(app);
  const b = await signup(app);
  const webhook = await createWebhook(app, a, 'http://127.0.0.1:9/hook', ['contact.created']);

  await perAccount.down(owner);
  // Global numbers, interleaved across the two accounts.
  const order = [a, b, a, b, a, a];
  for (const [i, who] of order.entries()) {
    await sql`insert into events (account_id, type, contact_id, data)
      values (${who.accountId}::uuid, 'contact.created', null,
        ${JSON.stringify({ contactId: `00000000-0000-4000-8000-00000000000${i}`, source: 'api', importId: null })}::jsonb)`.execute(
      owner,
    );
  }
  const before = await owner
    .selectFrom('events')
    .select(['account_id', 'seq', 'id'])
    .orderBy('seq')
    .execute();
  const ofA = before.filter((e) => e.account_id === a.accountId);
  t.ok(Number(ofA[1]!.seq) > 2, 'global numbers before');
  // The endpoint has fanned out A's first two events; one delivery is of the second, one of
  // an event gone since (erased), which bore A's fourth number.
  await owner
    .updateTable('webhook_endpoints')
    .set({ cursor_seq: Number(ofA[1]!.seq) })
    .where('id', '=', webhook.id)
    .execute();
  const delivery = (eventId: string, seq: number) => ({
    account_id: a.accountId,
    endpoint_id: webhook.id,
    event_id: eventId,
    event_seq: seq,
    event_type: 'contact.created',
    status: 'delivered' as const,
    next_attempt_at: new Date(),
    give_up_at: new Date(),
  });
  await owner
    .insertInto('webhook_deliveries')
    .values([
      delivery(ofA[1]!.id, Number(ofA[1]!.seq)),
      delivery('00000000-0000-4000-8000-0000000000ff', Number(ofA[3]!.seq) + 1000),
    ])
    .execute();

  await perAccount.up(owner);
  // As `npm run migrate` does after each run: the new table's grants.
  await grantServiceRole(owner, app.database.schema, app.database.serviceRole);
  const after = await owner
    .selectFrom('events')
    .select(['account_id', 'seq', 'id'])
    .orderBy('account_id')
    .orderBy('seq')
    .execute();
  for (const who of [a, b]) {
    const was = before.filter((e) => e.account_id === who.accountId).map((e) => e.id);
    const now = after.filter((e) => e.account_id === who.accountId);
    t.same(
      now.map((e) => e.id),
      was,
      'same order',
    );
    t.same(
      now.map((e) => Number(e.seq)),
      was.map((_, i) => i + 1),
      'numbered from 1',
    );
  }
  const endpoint = await owner
    .selectFrom('webhook_endpoints')
    .select('cursor_seq')
    .where('id', '=', webhook.id)
    .executeTakeFirstOrThrow();
  t.equal(Number(endpoint.cursor_seq), 2, 'the cursor follows its event');
  const seqs = await owner
    .selectFrom('webhook_deliveries')
    .select(['event_id', 'event_seq'])
    .where('endpoint_id', '=', webhook.id)
    .orderBy('event_seq')
    .execute();
  t.same(
    seqs.map((d) => [d.event_id, Number(d.event_seq)]),
    [
      ['00000000-0000-4000-8000-0000000000ff', 0],
      [ofA[1]!.id, 2],
    ],
    'a delivery follows its event; one of a gone event points at none',
  );
  // The next event continues each account's count.
  await createContact(app, a, { email: 'after@example.com' });
  const latest = (await feed(app, a)).at(-1)!;
  t.equal(latest.seq, ofA.length + 1);
});
