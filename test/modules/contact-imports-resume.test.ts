import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import t from 'tap';
import {
  createContactImportsService,
  IMPORT_BATCH_SIZE,
} from '../../src/modules/contact-imports/contact-imports.service.js';
import { testConfig } from '../helper.js';
import {
  CONSENT,
  contactsOf,
  eventsOf,
  ndjson,
  ownerContext,
  upload,
  type World,
  world,
} from './contact-imports-fixtures.js';

/** Idempotency-Key on imports, leases, `interrupted` jobs, resuming and fencing. */

const rowsOf = (count: number, from = 1) =>
  Array.from({ length: count }, (_, i) => ({
    email: `row-${from + i}@example.com`,
    consent: CONSENT,
  }));

async function jobRow(w: World, id: string) {
  return w.app.database.owner
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
}

function getJob(w: World, id: string) {
  return w.app.inject({ method: 'GET', url: `/v1/contact-imports/${id}`, headers: w.headers });
}

t.test('the same key and file answer the finished import again, writing nothing', async (t) => {
  const w = await world(t);
  const body = ndjson(rowsOf(5));
  const key = { 'idempotency-key': 'import-2026-11-25-a' };
  const first = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  t.equal(first.statusCode, 201, first.body);
  t.notOk(first.headers['idempotent-replayed']);
  const eventsBefore = (await eventsOf(w)).length;

  const again = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  t.equal(again.statusCode, 201, again.body);
  t.equal(again.headers['idempotent-replayed'], 'true');
  t.same(again.json(), first.json(), 'the same job, as it finished');
  t.equal((await contactsOf(w)).length, 5);
  t.equal((await eventsOf(w)).length, eventsBefore, 'nothing recorded twice');
  const jobs = await w.app.database.owner
    .selectFrom('contact_imports')
    .select('id')
    .where('account_id', '=', w.owner.accountId)
    .execute();
  t.equal(jobs.length, 1, 'no second job');

  const otherBody = await upload(
    w,
    ndjson(rowsOf(6)),
    'format=ndjson',
    'application/x-ndjson',
    key,
  );
  t.equal(otherBody.statusCode, 422);
  t.equal(otherBody.json().code, 'idempotency_key_reused');
  const otherParams = await upload(
    w,
    body,
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter',
    'application/x-ndjson',
    key,
  );
  t.equal(otherParams.statusCode, 422);
  t.equal(otherParams.json().code, 'idempotency_key_reused');
  t.equal((await contactsOf(w)).length, 5, 'the refused retries wrote nothing');

  const otherKey = await upload(w, body, 'format=ndjson', 'application/x-ndjson', {
    'idempotency-key': 'import-2026-11-25-b',
  });
  t.equal(otherKey.statusCode, 201, 'another key is another import');
  t.not(otherKey.json().id, first.json().id);
});

t.test('keys are per account', async (t) => {
  const a = await world(t);
  const b = await world(t, a.app);
  const key = { 'idempotency-key': 'same-key' };
  const ra = await upload(a, ndjson(rowsOf(2)), 'format=ndjson', 'application/x-ndjson', key);
  const rb = await upload(b, ndjson(rowsOf(3)), 'format=ndjson', 'application/x-ndjson', key);
  t.equal(ra.statusCode, 201);
  t.equal(rb.statusCode, 201, rb.body);
  t.equal(rb.json().counts.created, 3);
});

t.test('a running import holds its key (409); a dead one reads interrupted', async (t) => {
  const w = await world(t);
  const body = ndjson(rowsOf(3));
  const key = { 'idempotency-key': 'held' };
  const first = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  const id: string = first.json().id;
  const db = w.app.database.owner;
  // Pretend a process is still at work on it: running, lease in the future.
  await db
    .updateTable('contact_imports')
    .set({
      status: 'running',
      finished_at: null,
      lease_expires_at: sql<Date>`now() + interval '1 hour'`,
    })
    .where('id', '=', id)
    .execute();
  const busy = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  t.equal(busy.statusCode, 409, busy.body);
  t.equal(busy.json().code, 'idempotency_key_in_progress');
  t.equal((await getJob(w, id)).json().status, 'running');

  // The process died: its lease ran out without renewal.
  await db
    .updateTable('contact_imports')
    .set({ lease_expires_at: sql<Date>`now() - interval '1 second'` })
    .where('id', '=', id)
    .execute();
  const read = await getJob(w, id);
  t.equal(read.json().status, 'interrupted', 'an expired lease reads as interrupted');
  const listed = await w.app.inject({
    method: 'GET',
    url: '/v1/contact-imports?status=interrupted',
    headers: w.headers,
  });
  t.equal(listed.statusCode, 200, listed.body);
  t.same(
    listed.json().data.map((job: { id: string }) => job.id),
    [id],
  );
});

t.test('a failed import resumes after its last committed row on retry', async (t) => {
  const w = await world(t);
  const rows = IMPORT_BATCH_SIZE + 500;
  const body = ndjson(rowsOf(rows));
  const poison = `row-${IMPORT_BATCH_SIZE + 200}@example.com`;
  const db = w.app.database.owner;
  await sql`create function refuse_poison_resume() returns trigger language plpgsql as $$
    begin
      if new.email = ${sql.lit(poison)} then raise exception 'injected failure'; end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger refuse_poison_resume before insert on contacts
    for each row execute function refuse_poison_resume()`.execute(db);
  const key = { 'idempotency-key': 'resume-me' };

  const failed = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  t.equal(failed.statusCode, 500);
  const [job] = await db
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .execute();
  t.equal(job!.status, 'failed');
  t.equal(job!.last_row, IMPORT_BATCH_SIZE);

  await sql`drop trigger refuse_poison_resume on contacts`.execute(db);
  const retry = await upload(w, body, 'format=ndjson', 'application/x-ndjson', key);
  t.equal(retry.statusCode, 201, retry.body);
  const resumed = retry.json();
  t.equal(resumed.id, job!.id, 'the same job carries on');
  t.equal(resumed.attempts, 2);
  t.equal(resumed.status, 'completed');
  // A fresh re-run would count batch 1 as `updated`; a resume never touches it again.
  t.same(resumed.counts, { total: rows, processed: rows, created: rows, updated: 0, rejected: 0 });
  t.equal(resumed.lastRow, rows);
  t.equal(resumed.error, null);
  t.equal((await contactsOf(w)).length, rows);
  t.equal((await eventsOf(w)).length, rows, 'one consent event per contact');
  const versions = await db
    .selectFrom('contacts')
    .select('version')
    .where('account_id', '=', w.owner.accountId)
    .where('email', '=', 'row-1@example.com')
    .executeTakeFirstOrThrow();
  t.equal(versions.version, 1, 'rows of the committed batch were not written again');
});

t.test('an attempt that lost its job to a retry stops before writing', async (t) => {
  const w = await world(t);
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
  });
  const ctx = ownerContext(w);
  const body = new PassThrough();
  const running = imports.run(
    ctx,
    w.owner.accountId,
    { format: 'ndjson', missingConsent: 'reject', idempotencyKey: 'fenced' },
    body,
  );
  const outcome = running.then(
    () => null,
    (error: unknown) => error,
  );
  body.write(ndjson(rowsOf(IMPORT_BATCH_SIZE + 1)));
  const db = w.app.database.owner;
  let job: Awaited<ReturnType<typeof jobRow>> | undefined;
  for (let i = 0; i < 400 && !(job && job.processed_rows > 0); i++) {
    await sleep(25);
    const found = await db
      .selectFrom('contact_imports')
      .select('id')
      .where('account_id', '=', w.owner.accountId)
      .executeTakeFirst();
    if (found) job = await jobRow(w, found.id);
  }
  t.equal(job?.processed_rows, IMPORT_BATCH_SIZE, 'batch 1 committed');
  // Another process took the job over (its lease had run out while this one stalled).
  await db
    .updateTable('contact_imports')
    .set((eb) => ({ attempts: eb('attempts', '+', 1) }))
    .where('id', '=', job!.id)
    .execute();
  body.end(ndjson(rowsOf(IMPORT_BATCH_SIZE - 1, IMPORT_BATCH_SIZE + 2)));
  const error = (await outcome) as { status?: number; code?: string } | null;
  t.equal(error?.status, 409);
  t.equal(error?.code, 'import_taken_over');
  t.equal(
    (await contactsOf(w)).length,
    IMPORT_BATCH_SIZE,
    'the stale attempt wrote nothing after losing the job',
  );
  t.equal((await jobRow(w, job!.id)).processed_rows, IMPORT_BATCH_SIZE);
});

t.test('the lease is renewed while an import runs', async (t) => {
  const w = await world(t);
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 1,
    consentTokenTtlHours: 72,
  });
  const ctx = ownerContext(w);
  const body = new PassThrough();
  const running = imports.run(
    ctx,
    w.owner.accountId,
    { format: 'ndjson', missingConsent: 'reject' },
    body,
  );
  body.write(ndjson(rowsOf(3)));
  // Three lease lengths with no batch committed: only the heartbeat keeps it alive.
  await sleep(3000);
  const list = await w.app.inject({
    method: 'GET',
    url: '/v1/contact-imports',
    headers: w.headers,
  });
  t.equal(list.statusCode, 200);
  t.equal(list.json().data[0].status, 'running', 'a live import never reads interrupted');
  body.end(ndjson(rowsOf(2, 4)));
  const { job } = await running;
  t.equal(job.status, 'completed');
  t.equal(job.lease_expires_at, null, 'a finished job holds no lease');
  t.equal(job.processed_rows, 5);
});

t.test('imports list: pages in creation order, filters by status', async (t) => {
  const w = await world(t);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await upload(w, ndjson(rowsOf(1, i + 1)));
    ids.push(res.json().id);
  }
  const failed = await upload(w, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0xff, 0xfe]));
  t.equal(failed.statusCode, 422);
  const first = await w.app.inject({
    method: 'GET',
    url: '/v1/contact-imports?limit=2',
    headers: w.headers,
  });
  t.equal(first.statusCode, 200);
  t.same(
    first.json().data.map((job: { id: string }) => job.id),
    ids.slice(0, 2),
  );
  const second = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports?limit=2&cursor=${first.json().nextCursor}`,
    headers: w.headers,
  });
  t.equal(second.json().data.length, 2);
  t.equal(second.json().data[0].id, ids[2]);
  t.equal(second.json().nextCursor, null);
  const onlyFailed = await w.app.inject({
    method: 'GET',
    url: '/v1/contact-imports?status=failed',
    headers: w.headers,
  });
  t.same(
    onlyFailed.json().data.map((job: { status: string }) => job.status),
    ['failed'],
  );
  const bad = await w.app.inject({
    method: 'GET',
    url: '/v1/contact-imports?status=paused',
    headers: w.headers,
  });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().errors[0].field, /status/);
});
