import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import t from 'tap';
import {
  createContactImportsService,
  IMPORT_BATCH_SIZE,
} from '../../src/modules/contact-imports/contact-imports.service.js';
import { build, testConfig } from '../helper.js';
import {
  CONSENT,
  contactsOf,
  ndjson,
  ownerContext,
  upload,
  type World,
  world,
} from './contact-imports-fixtures.js';

/** Bounds on one import: stored errors, error rate, body size and duration. */

const good = (count: number, from = 1) =>
  Array.from({ length: count }, (_, i) => ({
    email: `row-${from + i}@example.com`,
    consent: CONSENT,
  }));
/** One error per row (`invalid_email`). */
const bad = (count: number) =>
  Array.from({ length: count }, () => ({ email: 'x', consent: CONSENT }));

async function storedErrors(w: World, id: string) {
  const rows = await w.app.database.owner
    .selectFrom('contact_import_errors')
    .select('row_number')
    .where('account_id', '=', w.owner.accountId)
    .where('import_id', '=', id)
    .execute();
  return rows.length;
}

async function allListedErrors(w: World, id: string) {
  let cursor: string | null = null;
  let count = 0;
  let last: Record<string, unknown> = {};
  do {
    const res = await w.app.inject({
      method: 'GET',
      url: `/v1/contact-imports/${id}/errors?limit=200${cursor ? `&cursor=${cursor}` : ''}`,
      headers: w.headers,
    });
    last = res.json();
    count += (last.data as unknown[]).length;
    cursor = last.nextCursor as string | null;
  } while (cursor);
  return { count, page: last };
}

function service(w: World, limits: Record<string, number>) {
  return createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
    limits,
  });
}

async function onlyJob(w: World) {
  return w.app.database.owner
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .execute();
}

t.test('a file of bad rows stops with too_many_errors, its stored errors capped', async (t) => {
  const app = await build(t, { env: { IMPORT_MAX_STORED_ERRORS: '300' } });
  const w = await world(t, app as World['app']);
  // Each `{"email":"x"}` row has two errors (invalid_email, consent_missing).
  const body = `${'{"email":"x"}\n'.repeat(5000)}`;
  const res = await upload(w, body);
  t.equal(res.statusCode, 422, res.body);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.equal(res.json().code, 'too_many_errors');
  t.match(res.json().detail, /IMPORT_MAX_ERROR_RATE/);
  const [job] = await onlyJob(w);
  t.equal(job!.status, 'failed');
  t.equal(job!.error_code, 'too_many_errors');
  t.equal(job!.processed_rows, IMPORT_BATCH_SIZE, 'stopped after the first batch');
  t.equal(await storedErrors(w, job!.id), 300, 'stored errors stop at the cap');

  const read = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${job!.id}`,
    headers: w.headers,
  });
  t.equal(read.statusCode, 200);
  t.match(read.json(), {
    status: 'failed',
    error: { code: 'too_many_errors', line: null },
    counts: { processed: IMPORT_BATCH_SIZE, rejected: IMPORT_BATCH_SIZE },
    errorCount: 2 * IMPORT_BATCH_SIZE,
    storedErrorCount: 300,
    errorsTruncated: true,
  });
  const listed = await allListedErrors(w, job!.id);
  t.equal(listed.count, 300, 'the errors listing holds the stored ones');
  t.match(listed.page, {
    errorCount: 2 * IMPORT_BATCH_SIZE,
    storedErrorCount: 300,
    errorsTruncated: true,
  });
});

t.test('the cap holds across batches and the counts stay exact', async (t) => {
  const app = await build(t, {
    env: { IMPORT_MAX_STORED_ERRORS: '300', IMPORT_MAX_ERROR_RATE: '1' },
  });
  const w = await world(t, app as World['app']);
  // Every fifth row is bad: 400 errors spread over two batches.
  const rows = Array.from({ length: 2000 }, (_, i) =>
    i % 5 === 4 ? { email: 'x', consent: CONSENT } : good(1, i + 1)[0]!,
  );
  const res = await upload(w, ndjson(rows));
  t.equal(res.statusCode, 201, res.body);
  const job = res.json();
  t.equal(job.status, 'completed');
  t.equal(job.counts.rejected, 400);
  t.equal(job.errorCount, 400);
  t.equal(job.storedErrorCount, 300);
  t.equal(job.errorsTruncated, true);
  t.equal(await storedErrors(w, job.id), 300);
  const listed = await allListedErrors(w, job.id);
  t.equal(listed.count, 300);
  t.equal(listed.page.errorsTruncated, true);

  // Under the cap nothing is truncated.
  const small = await upload(w, ndjson([...good(3, 5000), ...bad(2)]));
  t.match(small.json(), { errorCount: 2, storedErrorCount: 2, errorsTruncated: false });
});

t.test('the error rate is judged on the whole import so far', async (t) => {
  const w = await world(t);
  // 1,000 good rows, then bad ones: at 2,000 rows half are bad (not more), at 3,000 two thirds.
  const res = await upload(w, ndjson([...good(1000), ...bad(5000)]));
  t.equal(res.statusCode, 422, res.body);
  t.equal(res.json().code, 'too_many_errors');
  const [job] = await onlyJob(w);
  t.equal(job!.processed_rows, 3000);
  t.equal(job!.rejected_count, 2000);
  t.equal((await contactsOf(w)).length, 1000, 'the good batch is kept');
});

t.test('a body over IMPORT_MAX_BYTES is refused with 413', async (t) => {
  const app = await build(t, { env: { IMPORT_MAX_BYTES: '150000' } });
  const w = await world(t, app as World['app']);
  const body = ndjson(good(2500));
  t.ok(body.length > 150_000);

  // With a Content-Length: refused before anything is created.
  const declared = await upload(w, body);
  t.equal(declared.statusCode, 413, declared.body);
  t.match(declared.headers['content-type'], /application\/problem\+json/);
  t.equal(declared.json().code, 'payload_too_large');
  t.match(declared.json().detail, /IMPORT_MAX_BYTES \(150000 bytes\)/);
  t.same(await onlyJob(w), [], 'no job was created');
  t.equal((await contactsOf(w)).length, 0);

  // Streamed (no length): the job fails when the limit is reached, its whole batches kept.
  const streamed = await w.app.inject({
    method: 'POST',
    url: '/v1/contact-imports?format=ndjson',
    headers: { ...w.headers, 'content-type': 'application/x-ndjson' },
    payload: Readable.from([body.slice(0, 100_000), body.slice(100_000)]),
  });
  t.equal(streamed.statusCode, 413, streamed.body);
  t.equal(streamed.json().code, 'payload_too_large');
  const [job] = await onlyJob(w);
  t.equal(job!.status, 'failed');
  t.equal(job!.error_code, 'payload_too_large');
  t.match(streamed.json().detail, job!.id);
  t.ok(job!.processed_rows <= 1000, 'only whole batches before the limit');
  t.equal((await contactsOf(w)).length, job!.processed_rows);
});

t.test('an import running past IMPORT_MAX_DURATION_MS stops, failed too_slow', async (t) => {
  const w = await world(t);
  const imports = service(w, { maxDurationMs: 1500 });
  const body = new PassThrough();
  const running = imports
    .run(ownerContext(w), w.owner.accountId, { format: 'ndjson', missingConsent: 'reject' }, body)
    .then(
      () => null,
      (error: unknown) => error,
    );
  body.write(ndjson(good(IMPORT_BATCH_SIZE + 10)));
  // The sender stalls: no more bytes, no end. (A ref'd timer stands in for the socket that
  // keeps a server's event loop alive; the import's own timers do not hold the process.)
  const keepAlive = setInterval(() => undefined, 100);
  const error = (await running) as { status?: number; code?: string; message?: string } | null;
  t.equal(error?.status, 408);
  t.equal(error?.code, 'too_slow');
  clearInterval(keepAlive);
  t.match(error?.message, /IMPORT_MAX_DURATION_MS \(1500 ms\)/);
  const [job] = await onlyJob(w);
  t.equal(job!.status, 'failed');
  t.equal(job!.error_code, 'too_slow');
  t.equal(job!.processed_rows, IMPORT_BATCH_SIZE, 'the committed batch is kept');
  t.equal(job!.lease_expires_at, null);
  body.destroy();
  await sleep(10);
});

t.test('the limits are configuration with documented defaults', async (t) => {
  const config = testConfig();
  t.equal(config.IMPORT_MAX_BYTES, 2 * 1024 ** 3);
  t.equal(config.IMPORT_MAX_DURATION_MS, 3_600_000);
  t.equal(config.IMPORT_MAX_STORED_ERRORS, 10_000);
  t.equal(config.IMPORT_MAX_ERROR_RATE, 0.5);
  t.equal(config.IMPORT_ERROR_RATE_MIN_ROWS, 1000);
  t.throws(() => testConfig({ IMPORT_MAX_ERROR_RATE: '1.5' }));
});

t.test('a limit reached while a batch is being written fails the import cleanly', async (t) => {
  const w = await world(t);
  const db = w.app.database.owner;
  // Slow batch writes: the read ahead meets the size limit while batch 1 is still writing.
  await sql`create function slow_import_batch() returns trigger language plpgsql as $$
    begin perform pg_sleep(0.5); return null; end $$`.execute(db);
  await sql`create trigger slow_import_batch after insert on contacts
    for each statement execute function slow_import_batch()`.execute(db);
  t.teardown(async () => {
    await sql`drop trigger if exists slow_import_batch on contacts`.execute(db);
  });
  const first = ndjson(good(IMPORT_BATCH_SIZE + 5));
  const imports = service(w, { maxBytes: first.length + 100 });
  const body = Readable.from([first, ndjson(good(50, 5000))]);
  await t.rejects(
    imports.run(
      ownerContext(w),
      w.owner.accountId,
      { format: 'ndjson', missingConsent: 'reject' },
      body,
    ),
    { status: 413, code: 'payload_too_large' },
  );
  const [job] = await onlyJob(w);
  t.equal(job!.status, 'failed');
  t.equal(job!.error_code, 'payload_too_large');
  t.equal(job!.processed_rows, IMPORT_BATCH_SIZE, 'batch 1 was written whole');
});
