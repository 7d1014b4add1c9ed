import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
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
  ndjson,
  ownerContext,
  upload,
  type World,
  world,
} from './contact-imports-fixtures.js';

/**
 * A resumed import must prove that its body is the file it is resuming: the bytes the committed
 * batches were read from are checked (SHA-256) before the retry writes anything.
 */

const rowsOf = (prefix: string, count: number, from = 1) =>
  Array.from({ length: count }, (_, i) => ({
    email: `${prefix}-${from + i}@example.com`,
    consent: CONSENT,
  }));

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const KEY = { 'idempotency-key': 'resume-content' };
const FIRST = 1500;

/**
 * Starts an import of `body` with the key, lets its first batch commit, then leaves the job as
 * a crashed process would: `running` with an expired lease (it reads `interrupted`).
 */
async function interruptedImport(w: World, body: string): Promise<string> {
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
  });
  const stream = new PassThrough();
  const running = imports
    .run(
      ownerContext(w),
      w.owner.accountId,
      { format: 'ndjson', missingConsent: 'reject', idempotencyKey: KEY['idempotency-key'] },
      stream,
    )
    .catch(() => undefined);
  // The first FIRST rows arrive; the rest never does.
  const cut = body.split('\n').slice(0, FIRST).join('\n').length + 1;
  stream.write(body.slice(0, cut));
  const db = w.app.database.owner;
  let id: string | undefined;
  for (let i = 0; i < 400; i++) {
    await sleep(25);
    const job = await db
      .selectFrom('contact_imports')
      .select(['id', 'processed_rows'])
      .where('account_id', '=', w.owner.accountId)
      .executeTakeFirst();
    if (job && job.processed_rows >= IMPORT_BATCH_SIZE) {
      id = job.id;
      break;
    }
  }
  t.ok(id, 'batch 1 committed');
  // The process "dies": its connection drops, and the job is left as a crash leaves it.
  stream.destroy(new Error('connection lost'));
  await running;
  await db
    .updateTable('contact_imports')
    .set({
      status: 'running',
      error_code: null,
      finished_at: null,
      lease_expires_at: sql<Date>`now() - interval '1 second'`,
    })
    .where('id', '=', id!)
    .execute();
  return id!;
}

async function getJob(w: World, id: string) {
  const res = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${id}`,
    headers: w.headers,
  });
  return res.json();
}

async function errorRows(w: World) {
  const rows = await w.app.database.owner
    .selectFrom('contact_import_errors')
    .select('row_number')
    .where('account_id', '=', w.owner.accountId)
    .execute();
  return rows.length;
}

t.test('a resume with another body is refused (422) and writes nothing', async (t) => {
  const w = await world(t);
  const original = ndjson(rowsOf('a', 2500));
  const id = await interruptedImport(w, original);
  const before = await getJob(w, id);
  t.equal(before.status, 'interrupted');
  t.equal(before.lastRow, IMPORT_BATCH_SIZE);

  const other = ndjson(rowsOf('b', 2500));
  const res = await upload(w, other, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res.statusCode, 422, res.body);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.equal(res.json().code, 'import_content_mismatch');
  t.match(res.json().detail, /SHA-256/);
  const emails = (await contactsOf(w)).map((c) => c.email);
  t.equal(emails.length, IMPORT_BATCH_SIZE, 'only the first batch of the original');
  t.notOk(
    emails.some((e) => e.startsWith('b-')),
    'no row of the other body was written',
  );
  t.same(await getJob(w, id), before, 'the job is left exactly as it was');

  // Rows that shift: 3,000 tiny lines put rows past the checkpoint before its byte count.
  const shifted = 'x\n'.repeat(3000);
  const res2 = await upload(w, shifted, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res2.statusCode, 422, res2.body);
  t.equal(res2.json().code, 'import_content_mismatch');
  t.equal(await errorRows(w), 0, 'not even its row errors were written');
  t.same(await getJob(w, id), before);

  // A prefix of the original, too short to hold the rows already committed.
  const shorter = ndjson(rowsOf('a', 500));
  const res3 = await upload(w, shorter, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res3.statusCode, 422, res3.body);
  t.equal(res3.json().code, 'import_content_mismatch');
  t.same(await getJob(w, id), before);

  // The same file afterwards still resumes.
  const same = await upload(w, original, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(same.statusCode, 201, same.body);
  t.equal(same.json().status, 'completed');
  t.equal(same.json().contentSha256, sha256(original));
  t.equal((await contactsOf(w)).length, 2500);
});

t.test('a resume with the same body completes every row', async (t) => {
  const w = await world(t);
  const original = ndjson(rowsOf('a', 2500));
  const id = await interruptedImport(w, original);
  const res = await upload(w, original, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res.statusCode, 201, res.body);
  const job = res.json();
  t.equal(job.id, id);
  t.equal(job.status, 'completed');
  t.equal(job.attempts, 2);
  t.same(job.counts, { total: 2500, processed: 2500, created: 2500, updated: 0, rejected: 0 });
  t.equal(job.contentSha256, sha256(original), 'the hash of the file imported');
  t.equal((await contactsOf(w)).length, 2500);
});

t.test('a body that shares the committed prefix but differs later is imported', async (t) => {
  const w = await world(t);
  const original = ndjson(rowsOf('a', 2500));
  const id = await interruptedImport(w, original);
  // The same first FIRST rows (which hold everything the first attempt read), then others.
  const later = ndjson([...rowsOf('a', FIRST), ...rowsOf('c', 700, FIRST + 1)]);
  const res = await upload(w, later, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res.statusCode, 201, res.body);
  const job = res.json();
  t.equal(job.id, id);
  t.equal(job.counts.processed, FIRST + 700);
  // The job describes the body it actually finished with, never the first upload's.
  t.equal(job.contentSha256, sha256(later));
  t.not(job.contentSha256, sha256(original));
  const emails = new Set((await contactsOf(w)).map((c) => c.email));
  t.equal(emails.size, FIRST + 700);
  t.ok(emails.has(`c-${FIRST + 1}@example.com`));
  t.notOk(emails.has(`a-${FIRST + 1}@example.com`));
});

t.test('a job read to its end resumes only with exactly that body', async (t) => {
  const w = await world(t);
  const original = ndjson(rowsOf('a', 1200));
  const done = await upload(w, original, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(done.statusCode, 201, done.body);
  const id = done.json().id;
  // Its last batch committed, then the process died before it marked the job completed.
  await w.app.database.owner
    .updateTable('contact_imports')
    .set({
      status: 'running',
      total_rows: null,
      finished_at: null,
      lease_expires_at: sql<Date>`now() - interval '1 second'`,
    })
    .where('id', '=', id)
    .execute();
  const before = await getJob(w, id);
  t.equal(before.contentSha256, sha256(original), 'the last checkpoint covered the whole body');

  const longer = original + ndjson(rowsOf('d', 5));
  const res = await upload(w, longer, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(res.statusCode, 422, res.body);
  t.equal(res.json().code, 'import_content_mismatch');
  t.same(await getJob(w, id), before);
  t.equal((await contactsOf(w)).length, 1200);

  const again = await upload(w, original, 'format=ndjson', 'application/x-ndjson', KEY);
  t.equal(again.statusCode, 201, again.body);
  t.equal(again.json().status, 'completed');
  t.equal(again.json().counts.processed, 1200);
});

t.test('the check does not depend on how the body is cut into chunks', async (t) => {
  const w = await world(t);
  const original = ndjson(rowsOf('a', 2500));
  const id = await interruptedImport(w, original);
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
  });
  // Odd-sized chunks, unlike the first upload's.
  const chunks: string[] = [];
  for (let at = 0; at < original.length; at += 7777) chunks.push(original.slice(at, at + 7777));
  const { job } = await imports.run(
    ownerContext(w),
    w.owner.accountId,
    { format: 'ndjson', missingConsent: 'reject', idempotencyKey: KEY['idempotency-key'] },
    Readable.from(chunks),
  );
  t.equal(job.id, id);
  t.equal(job.status, 'completed');
  t.equal(job.processed_rows, 2500);
  t.equal(job.content_sha256, sha256(original));
});

t.test('a resume whose other file breaks the parser is a content mismatch', async (t) => {
  const w = await world(t);
  const header = 'email,consent_purpose,consent_notice_version,consent_method,consent_granted_at';
  const line = (i: number) => `c-${i}@example.com,newsletter,1,form,2025-03-01T10:15:00Z`;
  const csv = `${header}\n${Array.from({ length: 1500 }, (_, i) => line(i + 1)).join('\n')}\n`;
  const imports = createContactImportsService({
    db: w.app.database.owner,
    asyncCommit: w.app.database.engine === 'postgres',
    hashSecret: testConfig().HASH_SECRET!,
    leaseSeconds: 60,
    consentTokenTtlHours: 72,
  });
  const input = {
    format: 'csv' as const,
    missingConsent: 'reject' as const,
    idempotencyKey: KEY['idempotency-key'],
  };
  // The first upload fails after its first batch (a broken quote), leaving the job failed.
  const broken = `${csv}"unclosed,newsletter,1,form,2025-03-01T10:15:00Z\n`;
  await t.rejects(imports.run(ownerContext(w), w.owner.accountId, input, Readable.from([broken])), {
    code: 'csv_malformed',
  });
  const [job] = await w.app.database.owner
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .execute();
  t.equal(job!.status, 'failed');
  t.equal(job!.last_row, 1001);
  const before = await getJob(w, job!.id);
  // The retry sends a file whose header the parser refuses: it is not the file being resumed.
  const other = `name,email\n${line(1)}\n`;
  await t.rejects(imports.run(ownerContext(w), w.owner.accountId, input, Readable.from([other])), {
    status: 422,
    code: 'import_content_mismatch',
  });
  t.same(await getJob(w, job!.id), before, 'the job is left as it was');
});
