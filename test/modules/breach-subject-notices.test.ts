import { createHash } from 'node:crypto';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { addUser, bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { assertFieldProblem, createIncident, footprint } from './breach-incidents-fixtures.js';
import { CONSENT, ndjson, upload, world } from './contact-imports-fixtures.js';

type App = Awaited<ReturnType<typeof build>>;

const TEXT = {
  nature: 'A copy of the mailing list was readable through a shared link for two days.',
  contactPoint: 'Privacy Desk, privacy@example.com',
  consequences: 'Unwanted mail or phishing to your address.',
  measures: 'The link is disabled; be wary of mail asking for your password.',
};

/** What the API promises the hash is: SHA-256 of the canonical JSON (keys sorted). */
function textHash(text: typeof TEXT) {
  const canonical = JSON.stringify({
    consequences: text.consequences,
    contactPoint: text.contactPoint,
    measures: text.measures,
    nature: text.nature,
  });
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

async function contact(app: App, owner: SignedUp, email: string, status = 'active') {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: bearer(owner.accessToken),
    payload: { email, status },
  });
  if (res.statusCode !== 201) throw new Error(`contact: ${res.statusCode} ${res.body}`);
  return res.json().id as string;
}

/** Counts of the notice tables, as the owner sees them (past row-level security). */
async function noticeRows(app: App, account: SignedUp) {
  const owner = app.database.owner;
  const batches = await owner
    .selectFrom('breach_subject_notice_batches')
    .selectAll()
    .where('account_id', '=', account.accountId)
    .orderBy('id')
    .execute();
  const notices = await owner
    .selectFrom('breach_subject_notices')
    .selectAll()
    .where('account_id', '=', account.accountId)
    .orderBy('id')
    .execute();
  return { batches, notices };
}

async function highRiskIncident(app: App, owner: SignedUp) {
  return createIncident(app, owner, { risk: 'high', riskReason: 'Addresses with names exposed.' });
}

t.test('a filter selection includes unsubscribed contacts, the text hash is stored', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const active = await contact(app, owner, 'active.reader@example.com');
  const unsubscribed = await contact(app, owner, 'gone.reader@example.com', 'unsubscribed');
  const bounced = await contact(app, owner, 'bounced.reader@example.com', 'bounced');
  const incident = await highRiskIncident(app, owner);
  const url = `/v1/breach-incidents/${incident.id}/subject-notices`;

  const byFilter = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { selection: { type: 'filter', filter: { status: 'unsubscribed' } }, text: TEXT },
  });
  t.equal(byFilter.statusCode, 201, byFilter.body);
  const batch = byFilter.json();
  t.equal(batch.noticeCount, 1, 'the unsubscribed contact is told (a legal duty)');
  t.equal(batch.textSha256, textHash(TEXT), 'the hash of the text as stored');
  t.same(batch.text, TEXT);

  const all = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { selection: { type: 'all' }, text: TEXT },
  });
  t.equal(all.statusCode, 201, all.body);
  t.equal(all.json().noticeCount, 3, 'all: active, unsubscribed and bounced alike');

  const stored = await noticeRows(app, owner);
  t.equal(stored.batches.length, 2, 'one text row per batch');
  t.equal(stored.batches[0]!.text_sha256, textHash(TEXT));
  t.same(
    stored.notices.filter((n) => n.batch_id === batch.id).map((n) => n.contact_id),
    [unsubscribed],
  );
  t.ok(stored.notices.every((n) => n.kind === 'breach_notice' && n.status === 'pending'));

  // One event per batch, not per person.
  const events = await app.inject({ method: 'GET', url: '/v1/events?limit=1000', headers });
  const ready = events
    .json()
    .data.filter((e: { type: string }) => e.type === 'breach_incident.subject_notices_ready');
  t.equal(ready.length, 2, 'one ready event per batch');
  t.same(ready[0].data.batchId, batch.id);
  t.equal(ready[0].data.noticeCount, 1);
  t.equal(ready[0].data.textSha256, textHash(TEXT));

  // The sender reads the pending ones, a page at a time, with where to reach each person.
  const seen: string[] = [];
  let cursor: string | null = null;
  type Notice = { id: string; batchId: string; contact: { id: string; email: string } };
  do {
    const page: {
      statusCode: number;
      body: string;
      json(): { data: Notice[]; nextCursor: string | null };
    } = await app.inject({
      method: 'GET',
      url: `${url}?status=pending&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      headers,
    });
    t.equal(page.statusCode, 200, page.body);
    for (const n of page.json().data) seen.push(`${n.batchId}:${n.contact.email}`);
    cursor = page.json().nextCursor;
  } while (cursor);
  t.equal(seen.length, 4, 'four pending notices over the pages');
  t.ok(seen.includes(`${batch.id}:gone.reader@example.com`));

  const readBatch = await app.inject({
    method: 'GET',
    url: `/v1/breach-incidents/${incident.id}/subject-notice-batches/${batch.id}`,
    headers,
  });
  t.equal(readBatch.statusCode, 200);
  t.same(readBatch.json().selection, { type: 'filter', filter: { status: 'unsubscribed' } });

  // Delivery reports: all or none, delivered is final, a repeat is harmless.
  const pending = await app.inject({ method: 'GET', url: `${url}?status=pending`, headers });
  const [first, second] = pending.json().data as { id: string }[];
  const reportsUrl = `${url}/delivery-reports`;
  const report = await app.inject({
    method: 'POST',
    url: reportsUrl,
    headers,
    payload: {
      reports: [
        { noticeId: first!.id, status: 'delivered' },
        { noticeId: second!.id, status: 'failed', reason: 'mailbox full' },
      ],
    },
  });
  t.equal(report.statusCode, 200, report.body);
  t.same(report.json(), { updated: 2, unchanged: 0 });
  const again = await app.inject({
    method: 'POST',
    url: reportsUrl,
    headers,
    payload: { reports: [{ noticeId: first!.id, status: 'delivered' }] },
  });
  t.same(again.json(), { updated: 0, unchanged: 1 }, 'a repeated report changes nothing');
  const backwards = await app.inject({
    method: 'POST',
    url: reportsUrl,
    headers,
    payload: {
      reports: [
        { noticeId: second!.id, status: 'delivered' },
        { noticeId: first!.id, status: 'failed' },
      ],
    },
  });
  assertFieldProblem(t, backwards, 422, 'body.reports.1.status', 'invalid_transition');
  const unknown = await app.inject({
    method: 'POST',
    url: reportsUrl,
    headers,
    payload: { reports: [{ noticeId: active, status: 'delivered' }] },
  });
  assertFieldProblem(t, unknown, 422, 'body.reports.0.noticeId', 'notice_not_found');
  const after = await noticeRows(app, owner);
  const secondRow = after.notices.find((n) => n.id === second!.id)!;
  t.equal(secondRow.status, 'failed', 'the refused batch of reports changed nothing');
  t.equal(secondRow.failure_reason, 'mailbox full');
  const stillPending = await app.inject({ method: 'GET', url: `${url}?status=pending`, headers });
  t.equal(stillPending.json().data.length, 2);
  void bounced;
});

t.test('erased contacts are not selected, and erasure removes their notices', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const kept = await contact(app, owner, 'kept.reader@example.com');
  const erasedFirst = await contact(app, owner, 'erased.first@example.com');
  const erasedLater = await contact(app, owner, 'erased.later@example.com', 'unsubscribed');
  const erase = (id: string) =>
    app.inject({ method: 'DELETE', url: `/v1/contacts/${id}`, headers });
  t.equal((await erase(erasedFirst)).statusCode, 204);
  const incident = await highRiskIncident(app, owner);
  const url = `/v1/breach-incidents/${incident.id}/subject-notices`;
  const created = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { selection: { type: 'all' }, text: TEXT },
  });
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.json().noticeCount, 2, 'the erased contact is gone, so not selected');
  let rows = (await noticeRows(app, owner)).notices.map((n) => n.contact_id).sort();
  t.same(rows, [kept, erasedLater].sort());

  t.equal((await erase(erasedLater)).statusCode, 204);
  rows = (await noticeRows(app, owner)).notices.map((n) => n.contact_id);
  t.same(rows, [kept], 'erasure deleted the person’s notice');
  const list = await app.inject({ method: 'GET', url, headers });
  t.same(
    list.json().data.map((n: { contact: { id: string } }) => n.contact.id),
    [kept],
  );
  const byId = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { selection: { type: 'contacts', contactIds: [kept, erasedLater] }, text: TEXT },
  });
  assertFieldProblem(t, byId, 422, 'body.selection.contactIds.1', 'contact_not_found');
});

t.test('an import selection tells the people its file held, and only them', async (t) => {
  const w = await world(t);
  const { app, owner, headers } = w;
  const outside = await contact(app, owner, 'outside.reader@example.com');
  const imported = async (rows: object[]) => {
    const res = await upload(w, ndjson(rows));
    t.equal(res.statusCode, 201, res.body);
    t.equal(res.json().status, 'completed');
    return res.json().id as string;
  };
  const first = await imported([
    { email: 'ada.reader@example.com', firstName: 'Ada', consent: CONSENT },
    { email: 'bob.reader@example.com', consent: CONSENT },
    { email: 'not-an-address', consent: CONSENT },
  ]);
  // Bob again, unchanged (the upsert leaves his row alone), and Carol, new.
  const second = await imported([
    { email: 'bob.reader@example.com', consent: CONSENT },
    { email: 'carol.reader@example.com', consent: CONSENT },
  ]);
  const listed = async (importId: string) => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/contacts?importId=${importId}&limit=100`,
      headers,
    });
    t.equal(res.statusCode, 200, res.body);
    return res
      .json()
      .data.map((c: { email: string }) => c.email)
      .sort();
  };
  t.same(await listed(first), ['ada.reader@example.com', 'bob.reader@example.com']);
  t.same(
    await listed(second),
    ['bob.reader@example.com', 'carol.reader@example.com'],
    'a contact the import found unchanged was still in its file',
  );
  t.same(await listed('0190f3a2-7c1d-7e8f-9a0b-1c2d3e4f5a6b'), [], 'an unknown import lists none');
  const ids = new Map<string, string>();
  for (const c of (await app.inject({ method: 'GET', url: '/v1/contacts', headers })).json().data) {
    ids.set(c.email, c.id);
  }
  const bob = ids.get('bob.reader@example.com')!;
  const carol = ids.get('carol.reader@example.com')!;
  const unsubscribe = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${bob}`,
    headers,
    payload: { status: 'unsubscribed' },
  });
  t.equal(unsubscribe.statusCode, 200, unsubscribe.body);

  const incident = await highRiskIncident(app, owner);
  const url = `/v1/breach-incidents/${incident.id}/subject-notices`;
  /** Notices for the people of `importId`, on `incidentUrl` as `as`. */
  const byImport = (importId: string, as = headers, incidentUrl = url) =>
    app.inject({
      method: 'POST',
      url: incidentUrl,
      headers: as,
      payload: { selection: { type: 'import', importId }, text: TEXT },
    });
  const created = await byImport(second);
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.json().noticeCount, 2);
  t.same(created.json().selection, { type: 'import', importId: second });
  const told = (await noticeRows(app, owner)).notices.map((n) => n.contact_id).sort();
  t.same(told, [bob, carol].sort(), 'the unsubscribed Bob too; not Ada, not the outsider');
  t.notOk(told.includes(outside));

  // Erasure takes the person's import record with them.
  const importedRows = (contactId: string) =>
    app.database.owner
      .selectFrom('imported_contacts')
      .select('import_id')
      .where('account_id', '=', owner.accountId)
      .where('contact_id', '=', contactId)
      .execute();
  t.equal((await importedRows(bob)).length, 2, 'Bob was in both files');
  const erased = await app.inject({ method: 'DELETE', url: `/v1/contacts/${bob}`, headers });
  t.equal(erased.statusCode, 204);
  t.same(await importedRows(bob), [], 'erasure deleted his import records');
  t.same(await listed(second), ['carol.reader@example.com']);

  // An unknown import, another account's, or one still running: refused, nothing written.
  const other = await signup(app);
  const before = await footprint(app, owner);
  const unknown = await byImport('0190f3a2-7c1d-7e8f-9a0b-1c2d3e4f5a6b');
  assertFieldProblem(t, unknown, 422, 'body.selection.importId', 'import_not_found');
  const otherIncident = await highRiskIncident(app, other);
  const foreign = await byImport(
    first,
    bearer(other.accessToken),
    `/v1/breach-incidents/${otherIncident.id}/subject-notices`,
  );
  assertFieldProblem(t, foreign, 422, 'body.selection.importId', 'import_not_found');
  const foreignList = await app.inject({
    method: 'GET',
    url: `/v1/contacts?importId=${first}`,
    headers: bearer(other.accessToken),
  });
  t.same(foreignList.json().data, [], 'another account lists none of its contacts');
  await app.database.owner
    .updateTable('contact_imports')
    .set({ status: 'running' })
    .where('account_id', '=', owner.accountId)
    .where('id', '=', first)
    .execute();
  const running = await byImport(first);
  t.equal(running.statusCode, 409, running.body);
  t.equal(running.json().code, 'import_running');
  const bad = await byImport('nope');
  assertFieldProblem(t, bad, 400, 'body.selection.importId');
  t.same(await footprint(app, owner), before, 'nothing written');
  t.equal((await noticeRows(app, owner)).batches.length, 1, 'only the first batch');
});

t.test('refused without high risk, with an exemption, or when closed', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  await contact(app, owner, 'someone@example.com');
  const body = { selection: { type: 'all' }, text: TEXT };

  const unassessed = await createIncident(app, owner);
  const risky = await createIncident(app, owner, { risk: 'risk', riskReason: 'Some risk.' });
  for (const incident of [unassessed, risky]) {
    const before = await footprint(app, owner);
    const res = await app.inject({
      method: 'POST',
      url: `/v1/breach-incidents/${incident.id}/subject-notices`,
      headers,
      payload: body,
    });
    t.equal(res.statusCode, 409, res.body);
    t.equal(res.json().code, 'subject_notice_not_required');
    t.same(await footprint(app, owner), before, 'nothing written');
  }

  const high = await highRiskIncident(app, owner);
  const exemptionUrl = `/v1/breach-incidents/${high.id}/subject-notice-exemption`;
  const noPublic = await app.inject({
    method: 'POST',
    url: exemptionUrl,
    headers,
    payload: { ground: 'disproportionate_effort', explanation: 'No addresses for most people.' },
  });
  assertFieldProblem(t, noPublic, 422, 'body.publicCommunication', 'public_communication_required');
  const exempted = await app.inject({
    method: 'POST',
    url: exemptionUrl,
    headers: { ...headers, 'if-match': `"v${high.version}"` },
    payload: {
      ground: 'disproportionate_effort',
      explanation: 'No addresses for most people.',
      publicCommunication: {
        url: 'https://status.example.com/breach-2026-12',
        publishedAt: '2026-12-01T08:00:00.000Z',
      },
    },
  });
  t.equal(exempted.statusCode, 200, exempted.body);
  t.equal(exempted.json().subjectNoticeExemption.ground, 'disproportionate_effort');
  t.equal(
    exempted.json().subjectNoticeExemption.publicCommunication.url,
    'https://status.example.com/breach-2026-12',
  );
  t.equal(exempted.headers.etag, `"v${high.version + 1}"`);
  const before = await footprint(app, owner);
  const refused = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${high.id}/subject-notices`,
    headers,
    payload: body,
  });
  t.equal(refused.statusCode, 409, refused.body);
  t.equal(refused.json().code, 'subject_notice_exempted');
  t.same(await footprint(app, owner), before, 'nothing written');
  t.equal((await noticeRows(app, owner)).batches.length, 0);
});

t.test('bad input names the field, nothing written; members cannot write', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const someone = await contact(app, owner, 'someone@example.com', 'unsubscribed');
  const incident = await highRiskIncident(app, owner);
  const url = `/v1/breach-incidents/${incident.id}/subject-notices`;
  const before = await footprint(app, owner);
  const cases: [Record<string, unknown>, number, string, string?][] = [
    [{ selection: { type: 'all' }, text: { ...TEXT, nature: undefined } }, 422, 'body.text.nature'],
    [
      {
        selection: { type: 'all' },
        text: { nature: TEXT.nature, contactPoint: TEXT.contactPoint },
      },
      422,
      'body.text.consequences',
      'notice_text_incomplete',
    ],
    [{ selection: { type: 'all' }, text: { ...TEXT, measures: '  ' } }, 400, 'body.text.measures'],
    [{ selection: { type: 'everyone' }, text: TEXT }, 400, 'body.selection.type'],
    [
      { selection: { type: 'contacts', contactIds: ['not-an-id'] }, text: TEXT },
      400,
      'body.selection.contactIds.0',
    ],
    [
      { selection: { type: 'filter', filter: { status: 'gone' } }, text: TEXT },
      400,
      'body.selection.filter.status',
    ],
    [
      { selection: { type: 'filter', filter: { consentState: 'granted' } }, text: TEXT },
      400,
      'body.selection.filter.consentPurposeId',
    ],
    [
      { selection: { type: 'filter', filter: { status: 'active' } }, text: TEXT },
      422,
      'body.selection',
      'no_contacts_selected',
    ],
    [{ selection: { type: 'all' }, text: TEXT, extra: 1 }, 400, 'body'],
  ];
  for (const [payload, status, field, code] of cases) {
    const res = await app.inject({ method: 'POST', url, headers, payload });
    assertFieldProblem(t, res, status, field.startsWith('body.') ? field : /^body/, code);
  }
  t.same(await footprint(app, owner), before, 'nothing written (audit, events)');
  t.equal((await noticeRows(app, owner)).batches.length, 0, 'no batch');

  const member = await addUser(app, owner, 'member');
  const asMember = await app.inject({
    method: 'POST',
    url,
    headers: bearer(member.accessToken),
    payload: { selection: { type: 'contacts', contactIds: [someone] }, text: TEXT },
  });
  t.equal(asMember.statusCode, 403, 'members cannot send notices');
  const read = await app.inject({ method: 'GET', url, headers: bearer(member.accessToken) });
  t.equal(read.statusCode, 200, 'but may read them');
});
