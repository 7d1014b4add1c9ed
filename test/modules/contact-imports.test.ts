import { Readable } from 'node:stream';
import { sql } from 'kysely';
import t from 'tap';
import { emailFingerprint } from '../../src/lib/keyed-hash.js';
import {
  createContactImportsService,
  IMPORT_BATCH_SIZE,
} from '../../src/modules/contact-imports/contact-imports.service.js';
import { ENGINE, testConfig } from '../helper.js';
import {
  CONSENT,
  contactsOf,
  errorsOf,
  eventsOf,
  GRANTED_AT,
  ndjson,
  ownerContext,
  upload,
  world,
} from './contact-imports-fixtures.js';

t.test('NDJSON happy path: counts, contacts, consent events, one audit entry', async (t) => {
  const w = await world(t);
  const body = ndjson([
    { email: 'Ada@Example.com', firstName: 'Ada', consent: CONSENT },
    { email: 'bob@example.com', language: 'en', attributes: { tier: 'gold' }, consent: CONSENT },
    { email: 'not-an-email', consent: CONSENT },
  ]);
  const res = await upload(w, body);
  t.equal(res.statusCode, 201, res.body);
  const job = res.json();
  t.equal(job.status, 'completed');
  t.same(job.counts, { total: 3, processed: 3, created: 2, updated: 0, rejected: 1 });
  t.equal(job.lastRow, 3);
  t.match(job.contentSha256, /^[0-9a-f]{64}$/);
  t.equal(res.headers.location, `/v1/contact-imports/${job.id}`);

  const contacts = await contactsOf(w);
  t.same(
    contacts.map((c) => [c.email, c.first_name, c.language, c.attributes]),
    [
      ['ada@example.com', 'Ada', null, {}],
      ['bob@example.com', null, 'en', { tier: 'gold' }],
    ],
  );
  const events = await eventsOf(w);
  t.equal(events.length, 2);
  t.ok(events.every((e) => e.event === 'granted' && e.notice_version === 1 && e.method === 'form'));

  const got = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${job.id}`,
    headers: w.headers,
  });
  t.equal(got.statusCode, 200);
  t.same(got.json(), job);

  const audit = await w.app.database.owner
    .selectFrom('audit_events')
    .select(['action', 'changed_fields', 'entity_id'])
    .where('account_id', '=', w.owner.accountId)
    .where('action', 'like', 'contact%')
    .execute();
  t.same(audit, [
    {
      action: 'contact_import.completed',
      changed_fields: ['created', 'rejected', 'updated'],
      entity_id: job.id,
    },
  ]);
});

t.test('CSV happy path with per-row errors that never echo values', async (t) => {
  const w = await world(t);
  const csv = [
    'email,first_name,consent_purpose,consent_notice_version,consent_method,consent_granted_at',
    `carla@example.com,Carla,newsletter,1,form,${GRANTED_AT}`,
    `secret-value-not-an-email,Dan,newsletter,1,form,${GRANTED_AT}`,
    `erin@example.com,Erin,no-such-purpose,1,form,${GRANTED_AT}`,
    `fred@example.com,Fred,newsletter,99,form,${GRANTED_AT}`,
    'gina@example.com,Gina,,,,',
  ].join('\r\n');
  const res = await upload(w, csv, 'format=csv', 'text/csv');
  t.equal(res.statusCode, 201, res.body);
  t.same(res.json().counts, { total: 5, processed: 5, created: 1, updated: 0, rejected: 4 });
  const errors = await errorsOf(w, res.json().id);
  t.same(
    errors.map((e) => [e.row, e.field, e.code]),
    [
      [3, 'email', 'invalid_email'],
      [4, 'consent_purpose', 'unknown_purpose'],
      [5, 'consent_notice_version', 'unknown_notice_version'],
      [6, 'consent', 'consent_missing'],
    ],
  );
  const text = JSON.stringify(errors);
  for (const value of ['secret-value', 'erin@', 'fred@', 'gina@', 'no-such-purpose']) {
    t.notOk(text.includes(value), `error report does not contain ${value}`);
  }
  t.same(
    (await contactsOf(w)).map((c) => c.email),
    ['carla@example.com'],
  );

  // Cursor pagination over the errors.
  const first = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${res.json().id}/errors?limit=3`,
    headers: w.headers,
  });
  t.equal(first.json().data.length, 3);
  const second = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${res.json().id}/errors?limit=3&cursor=${first.json().nextCursor}`,
    headers: w.headers,
  });
  t.same(
    second.json().data.map((e: { row: number }) => e.row),
    [6],
  );
  t.equal(second.json().nextCursor, null);
});

t.test('duplicate emails merge predictably: later given fields win', async (t) => {
  const w = await world(t);
  const body = ndjson([
    {
      email: 'dup@example.com',
      firstName: 'First',
      lastName: 'Kept',
      attributes: { a: 1 },
      consent: CONSENT,
    },
    { email: 'other@example.com', consent: CONSENT },
    { email: 'DUP@example.com', firstName: 'Second', attributes: { b: 2 }, consent: CONSENT },
  ]);
  const res = await upload(w, body);
  t.equal(res.statusCode, 201, res.body);
  t.same(res.json().counts, { total: 3, processed: 3, created: 2, updated: 1, rejected: 0 });
  const dup = (await contactsOf(w)).find((c) => c.email === 'dup@example.com')!;
  t.equal(dup.first_name, 'Second');
  t.equal(dup.last_name, 'Kept');
  t.same(dup.attributes, { a: 1, b: 2 });
  t.equal((await eventsOf(w)).length, 2, 'identical consent evidence recorded once');
});

t.test('missing consent: rejected by default, pending double opt-in when asked', async (t) => {
  const w = await world(t);
  const body = ndjson([{ email: 'nobasis@example.com', firstName: 'N' }]);
  const rejected = await upload(w, body);
  t.equal(rejected.statusCode, 201);
  t.same(rejected.json().counts, { total: 1, processed: 1, created: 0, updated: 0, rejected: 1 });
  t.same(
    (await errorsOf(w, rejected.json().id)).map((e) => e.code),
    ['consent_missing'],
  );
  t.equal((await contactsOf(w)).length, 0);

  const noPurpose = await upload(w, body, 'format=ndjson&missingConsent=pending_double_opt_in');
  t.equal(noPurpose.statusCode, 400);
  t.equal(noPurpose.json().code, 'purpose_required');

  const pending = await upload(
    w,
    body,
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
  );
  t.equal(pending.statusCode, 201, pending.body);
  t.same(pending.json().counts, { total: 1, processed: 1, created: 1, updated: 0, rejected: 0 });
  const events = await eventsOf(w);
  t.equal(events.length, 1);
  t.equal(events[0]!.method, 'double_opt_in', 'a pending grant: confirmed later by the person');
  t.equal(events[0]!.purpose_id, w.purposeId);

  const again = await upload(
    w,
    body,
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
  );
  t.same(again.json().counts, { total: 1, processed: 1, created: 0, updated: 1, rejected: 0 });
  t.equal((await eventsOf(w)).length, 1, 'no second pending grant');
});

t.test('suppressed addresses are refused unless pending double opt-in', async (t) => {
  const w = await world(t);
  const hash = emailFingerprint(testConfig().HASH_SECRET!, 'erased@example.com');
  await w.app.database.owner
    .insertInto('suppressions')
    .values({ account_id: w.owner.accountId, email_hash: hash, reason: 'erased' })
    .execute();
  const res = await upload(w, ndjson([{ email: 'Erased@example.com', consent: CONSENT }]));
  t.equal(res.statusCode, 201);
  t.same(res.json().counts, { total: 1, processed: 1, created: 0, updated: 0, rejected: 1 });
  const errors = await errorsOf(w, res.json().id);
  t.same(
    errors.map((e) => [e.row, e.field, e.code]),
    [[1, 'email', 'suppressed']],
  );
  t.notOk(JSON.stringify(errors).includes('erased@'));
  t.equal((await contactsOf(w)).length, 0);

  const pending = await upload(
    w,
    ndjson([{ email: 'erased@example.com' }]),
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter',
  );
  t.same(pending.json().counts.created, 1, 'comes back only pending a fresh double opt-in');
});

t.test('restricted contacts are left unchanged', async (t) => {
  const w = await world(t);
  await upload(w, ndjson([{ email: 'r@example.com', firstName: 'Before', consent: CONSENT }]));
  await w.app.database.owner
    .updateTable('contacts')
    .set({ restricted_at: new Date(), restriction_reason: 'contested' })
    .where('account_id', '=', w.owner.accountId)
    .execute();
  const res = await upload(
    w,
    ndjson([
      {
        email: 'r@example.com',
        firstName: 'After',
        consent: { ...CONSENT, grantedAt: '2025-04-01T00:00:00Z' },
      },
    ]),
  );
  t.same(res.json().counts, { total: 1, processed: 1, created: 0, updated: 0, rejected: 1 });
  t.same(
    (await errorsOf(w, res.json().id)).map((e) => [e.field, e.code]),
    [[null, 'restricted']],
  );
  const [contact] = await contactsOf(w);
  t.equal(contact!.first_name, 'Before');
  t.equal((await eventsOf(w)).length, 1);
});

t.test('re-running the same file creates nothing new', async (t) => {
  const w = await world(t);
  const body = ndjson(
    Array.from({ length: 25 }, (_, i) => ({
      email: `rerun-${i}@example.com`,
      firstName: `N${i}`,
      consent: CONSENT,
    })),
  );
  const first = await upload(w, body);
  t.same(first.json().counts, { total: 25, processed: 25, created: 25, updated: 0, rejected: 0 });
  const versionsBefore = (await contactsOf(w)).map((c) => c.version);
  const second = await upload(w, body);
  t.equal(second.statusCode, 201);
  t.same(second.json().counts, { total: 25, processed: 25, created: 0, updated: 25, rejected: 0 });
  t.equal(second.json().contentSha256, first.json().contentSha256, 'same content, same hash');
  t.not(second.json().id, first.json().id);
  t.equal((await contactsOf(w)).length, 25);
  t.same(
    (await contactsOf(w)).map((c) => c.version),
    versionsBefore,
    'unchanged rows are not rewritten',
  );
  t.equal((await eventsOf(w)).length, 25, 'no duplicate consent events');
});

t.test('a failure in batch 2 leaves batch 1 whole; a re-run completes the file', async (t) => {
  const w = await world(t);
  const rows = IMPORT_BATCH_SIZE + 500;
  const poison = `row-${IMPORT_BATCH_SIZE + 200}@example.com`;
  const body = ndjson(
    Array.from({ length: rows }, (_, i) => ({
      email: `row-${i + 1}@example.com`,
      consent: CONSENT,
    })),
  );
  // A database-level failure in the middle of batch 2: a trigger refusing one address. (A
  // process kill would do the same to an open transaction; this makes it deterministic.)
  const db = w.app.database.owner;
  await sql`create function refuse_poison() returns trigger language plpgsql as $$
    begin
      if new.email = ${sql.lit(poison)} then
        raise exception 'injected failure';
      end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger refuse_poison before insert on contacts
    for each row execute function refuse_poison()`.execute(db);

  const failed = await upload(w, body);
  t.equal(failed.statusCode, 500, 'a database failure is a server error, not the file’s fault');
  const [job] = await db
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .execute();
  t.equal(job!.status, 'failed');
  t.equal(job!.error_code, 'internal_error');
  t.equal(job!.processed_rows, IMPORT_BATCH_SIZE, 'counters cover exactly batch 1');
  t.equal(job!.last_row, IMPORT_BATCH_SIZE, 'checkpoint at the end of batch 1');
  t.equal((await contactsOf(w)).length, IMPORT_BATCH_SIZE, 'only the whole first batch');
  t.equal((await eventsOf(w)).length, IMPORT_BATCH_SIZE);

  await sql`drop trigger refuse_poison on contacts`.execute(db);
  const rerun = await upload(w, body);
  t.equal(rerun.statusCode, 201, rerun.body);
  t.same(rerun.json().counts, {
    total: rows,
    processed: rows,
    created: rows - IMPORT_BATCH_SIZE,
    updated: IMPORT_BATCH_SIZE,
    rejected: 0,
  });
  t.equal((await contactsOf(w)).length, rows);
  t.equal((await eventsOf(w)).length, rows, 'one consent event per contact, none duplicated');
});

t.test('malformed files: a clear 4xx, the job failed, never a 5xx', async (t) => {
  const w = await world(t);
  const binary = Buffer.from([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x01,
  ]);
  const png = await upload(w, binary);
  t.equal(png.statusCode, 422, png.body);
  t.match(png.headers['content-type'], /problem\+json/);
  t.equal(png.json().code, 'not_text');

  const badHeader = await upload(
    w,
    'email,shoe_size\nx@example.com,44\n',
    'format=csv',
    'text/csv',
  );
  t.equal(badHeader.statusCode, 422);
  t.equal(badHeader.json().code, 'unknown_column');

  const brokenQuote = await upload(
    w,
    `email,consent_purpose\n"a@example.com,newsletter\n`,
    'format=csv',
    'text/csv',
  );
  t.equal(brokenQuote.statusCode, 422);
  t.equal(brokenQuote.json().code, 'csv_malformed');

  const jobs = await w.app.database.owner
    .selectFrom('contact_imports')
    .select(['status', 'error_code'])
    .where('account_id', '=', w.owner.accountId)
    .orderBy('created_at')
    .execute();
  t.same(
    jobs.map((j) => [j.status, j.error_code]),
    [
      ['failed', 'not_text'],
      ['failed', 'unknown_column'],
      ['failed', 'csv_malformed'],
    ],
  );

  const json = await w.app.inject({
    method: 'POST',
    url: '/v1/contact-imports?format=ndjson',
    headers: w.headers,
    payload: { email: 'x@example.com' },
  });
  t.equal(json.statusCode, 415, 'a JSON body is not an import file');
  const anonymous = await w.app.inject({
    method: 'POST',
    url: '/v1/contact-imports',
    headers: { 'content-type': 'application/x-ndjson' },
    payload: ndjson([{ email: 'x@example.com' }]),
  });
  t.equal(anonymous.statusCode, 401);
});

t.test('tenancy: another account’s import is 404', async (t) => {
  const a = await world(t);
  const b = await world(t, a.app);
  const res = await upload(b, ndjson([{ email: 'b@example.com', consent: CONSENT }]));
  const id = res.json().id;
  for (const url of [`/v1/contact-imports/${id}`, `/v1/contact-imports/${id}/errors`]) {
    const asA = await a.app.inject({ method: 'GET', url, headers: a.headers });
    t.equal(asA.statusCode, 404, url);
    t.notOk(asA.body.includes('b@example.com'));
  }
  const asB = await b.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${id}`,
    headers: b.headers,
  });
  t.equal(asB.statusCode, 200);
  t.comment(`engine: ${ENGINE}`);
});

t.test('a body over the size limit is refused with 413 and the job failed', async (t) => {
  const w = await world(t);
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
    limits: { maxBytes: 64 },
  });
  const ctx = ownerContext(w);
  const body = Readable.from([Buffer.from(ndjson([{ email: 'a@example.com', consent: CONSENT }]))]);
  await t.rejects(
    imports.run(ctx, w.owner.accountId, { format: 'ndjson', missingConsent: 'reject' }, body),
    { status: 413, code: 'payload_too_large' },
  );
  const [job] = await w.app.database.owner
    .selectFrom('contact_imports')
    .select(['status', 'error_code'])
    .where('account_id', '=', w.owner.accountId)
    .execute();
  t.same(job, { status: 'failed', error_code: 'payload_too_large' });
});
