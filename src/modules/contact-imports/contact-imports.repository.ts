import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, type KeysetPage, keysetPage } from '../../db/keyset.js';
import type { ContactImportErrorRow, ContactImportRow, DB } from '../../db/schema.js';

/**
 * Contact imports: the job rows and their per-row errors (the only module writing them).
 * Every function is scoped to one account; those that are part of a batch's transaction take
 * that transaction.
 */

export interface NewImportJob {
  accountId: string;
  format: 'ndjson' | 'csv';
  missingConsent: 'reject' | 'pending_double_opt_in';
  actorType: string;
  actorId: string | null;
  idempotencyKey: string | null;
  leaseMs: number;
}

/**
 * Creates a running job holding a lease. With an idempotency key that another job of the
 * account already has, inserts nothing and returns undefined.
 */
export async function insertImportJob(
  db: Kysely<DB>,
  job: NewImportJob,
): Promise<ContactImportRow | undefined> {
  return db
    .insertInto('contact_imports')
    .values({
      account_id: job.accountId,
      format: job.format,
      missing_consent: job.missingConsent,
      created_by_type: job.actorType,
      created_by_id: job.actorId,
      idempotency_key: job.idempotencyKey,
      lease_expires_at: leaseUntil(job.leaseMs),
    })
    .onConflict((oc) =>
      oc
        .columns(['account_id', 'idempotency_key'])
        .where('idempotency_key', 'is not', null)
        .doNothing(),
    )
    .returningAll()
    .executeTakeFirst();
}

function leaseUntil(leaseMs: number) {
  return sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})`;
}

/**
 * Marks the account's `running` jobs whose lease ran out as `interrupted` (their process died
 * mid-import); `id` limits it to one job. Cheap enough to run before every read.
 */
export async function expireImportLeases(db: Kysely<DB>, accountId: string, id?: string) {
  let query = db
    .updateTable('contact_imports')
    .set({ status: 'interrupted', lease_expires_at: null, updated_at: sql<Date>`now()` })
    .where('account_id', '=', accountId)
    .where('status', '=', 'running')
    .where('lease_expires_at', '<', sql<Date>`now()`);
  if (id !== undefined) query = query.where('id', '=', id);
  await query.execute();
}

export async function findImportJobByKey(
  db: Kysely<DB>,
  accountId: string,
  key: string,
): Promise<ContactImportRow | undefined> {
  return db
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('idempotency_key', '=', key)
    .executeTakeFirst();
}

/**
 * Takes over an interrupted or failed job for another attempt: only one caller wins, and only
 * while no live process holds the job's lease. Returns the job as taken, or undefined.
 */
export async function takeOverImportJob(
  db: Kysely<DB>,
  accountId: string,
  id: string,
  leaseMs: number,
): Promise<ContactImportRow | undefined> {
  return db
    .updateTable('contact_imports')
    .set((eb) => ({
      status: 'running',
      attempts: eb('attempts', '+', 1),
      lease_expires_at: leaseUntil(leaseMs),
      error_code: null,
      error_line: null,
      finished_at: null,
      updated_at: sql<Date>`now()`,
    }))
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .where((eb) =>
      eb.or([
        eb('status', 'in', ['interrupted', 'failed']),
        eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', sql<Date>`now()`)]),
      ]),
    )
    .returningAll()
    .executeTakeFirst();
}

/**
 * Gives a job back as it was before an attempt that wrote nothing took it over (a resumed
 * upload whose body turned out to be another file). Fenced like a batch: only while this
 * attempt still holds it.
 */
export async function releaseImportJob(
  db: Kysely<DB>,
  accountId: string,
  before: ContactImportRow,
  attempt: number,
) {
  await db
    .updateTable('contact_imports')
    .set({
      // A job taken over straight from an expired lease had been `interrupted` all along.
      status: before.status === 'running' ? 'interrupted' : before.status,
      attempts: before.attempts,
      lease_expires_at: null,
      error_code: before.error_code,
      error_line: before.error_line,
      finished_at: before.finished_at,
      updated_at: before.updated_at,
    })
    .where('account_id', '=', accountId)
    .where('id', '=', before.id)
    .where('status', '=', 'running')
    .where('attempts', '=', attempt)
    .execute();
}

/** Extends a running job's lease; false when the job is no longer running (taken over). */
export async function renewImportLease(
  db: Kysely<DB>,
  accountId: string,
  id: string,
  leaseMs: number,
): Promise<boolean> {
  const result = await db
    .updateTable('contact_imports')
    .set({ lease_expires_at: leaseUntil(leaseMs) })
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export function importJobsQuery(
  db: Kysely<DB>,
  accountId: string,
  filter: { status?: ContactImportRow['status'] | undefined },
) {
  let query = db.selectFrom('contact_imports').selectAll().where('account_id', '=', accountId);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return query;
}

export async function findImportJob(
  db: Kysely<DB>,
  accountId: string,
  id: string,
): Promise<ContactImportRow | undefined> {
  return db
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export interface BatchProgress {
  rows: number;
  created: number;
  updated: number;
  rejected: number;
  lastRow: number;
  /** Row errors found in the batch, and how many of them were stored (the report is capped). */
  errors: number;
  storedErrors: number;
  /** What had been read of the body when the batch closed (see ImportBody). */
  checkpoint: { bytes: number; sha256: string; whole: boolean };
}

/** Thrown when a job was taken over by another attempt: this attempt must stop writing. */
export class ImportLeaseLostError extends Error {
  constructor() {
    super('the import was taken over by another attempt');
  }
}

/**
 * Advances counters and the checkpoint; call it in the batch's transaction. `attempt` fences
 * off a process whose lease ran out while it was still working: once another attempt took the
 * job over, the old one's batch fails here and its transaction rolls back.
 */
export async function advanceImportJob(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  attempt: number,
  progress: BatchProgress,
) {
  const result = await trx
    .updateTable('contact_imports')
    .set((eb) => ({
      processed_rows: eb('processed_rows', '+', progress.rows),
      created_count: eb('created_count', '+', progress.created),
      updated_count: eb('updated_count', '+', progress.updated),
      rejected_count: eb('rejected_count', '+', progress.rejected),
      error_count: sql<string>`error_count + ${progress.errors}`,
      stored_error_count: eb('stored_error_count', '+', progress.storedErrors),
      last_row: progress.lastRow,
      consumed_bytes: progress.checkpoint.bytes,
      consumed_sha256: progress.checkpoint.sha256,
      // The body was read to its end: this is its hash (a retry must then be exactly it).
      ...(progress.checkpoint.whole ? { content_sha256: progress.checkpoint.sha256 } : {}),
      updated_at: sql<Date>`now()`,
    }))
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .where('status', '=', 'running')
    .where('attempts', '=', attempt)
    .executeTakeFirst();
  if (result.numUpdatedRows === 0n) throw new ImportLeaseLostError();
}

export async function finishImportJob(
  db: Kysely<DB>,
  accountId: string,
  id: string,
  outcome:
    | { status: 'completed'; contentSha256: string }
    | { status: 'failed'; errorCode: string; errorLine: number | null },
): Promise<ContactImportRow> {
  return db
    .updateTable('contact_imports')
    .set((eb) =>
      outcome.status === 'completed'
        ? {
            status: 'completed' as const,
            content_sha256: outcome.contentSha256,
            total_rows: eb.ref('processed_rows'),
            lease_expires_at: null,
            finished_at: sql<Date>`now()`,
            updated_at: sql<Date>`now()`,
          }
        : {
            status: 'failed' as const,
            error_code: outcome.errorCode,
            error_line: outcome.errorLine,
            lease_expires_at: null,
            finished_at: sql<Date>`now()`,
            updated_at: sql<Date>`now()`,
          },
    )
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface NewRowError {
  rowNumber: number;
  field: string | null;
  code: string;
  message: string;
}

/**
 * Stores a batch's row errors. The primary key makes a retried batch harmless: an error already
 * recorded for (row, ordinal) is left as it is.
 */
export async function insertRowErrors(
  trx: Transaction<DB>,
  accountId: string,
  importId: string,
  errors: NewRowError[],
) {
  if (errors.length === 0) return;
  const ordinals = new Map<number, number>();
  const values = errors.map((error) => {
    const ordinal = ordinals.get(error.rowNumber) ?? 0;
    ordinals.set(error.rowNumber, ordinal + 1);
    return {
      account_id: accountId,
      import_id: importId,
      row_number: error.rowNumber,
      ordinal,
      field: error.field,
      code: error.code,
      message: error.message,
    };
  });
  // Postgres allows 65,535 parameters per statement: 7 columns, so chunks of 5,000 rows.
  for (let start = 0; start < values.length; start += 5000) {
    await trx
      .insertInto('contact_import_errors')
      .values(values.slice(start, start + 5000))
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

/** One page of an import's row errors in (row, ordinal) order. */
export function listRowErrors(
  db: Kysely<DB>,
  accountId: string,
  importId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<KeysetPage<ContactImportErrorRow>> {
  const q = db
    .selectFrom('contact_import_errors')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('import_id', '=', importId);
  return keysetPage(q, {
    codec: cursors.importError,
    keys: [
      { column: 'row_number', cursorValue: (row) => row.row_number, toSql: (v) => sql`${v}::int` },
      { column: 'ordinal', cursorValue: (row) => row.ordinal, toSql: (v) => sql`${v}::int` },
    ],
    limit: page.limit,
    cursor: page.cursor,
  });
}

/**
 * Art. 17: removes the Idempotency-Key of every import job whose key names an erased contact
 * (`keyNames`, e.g. `import-jana@example.si`). The job stays, as the record of the import; a
 * retry with that key starts a new import, whose rows at suppressed addresses are refused.
 */
export async function forgetImportKeys(
  trx: Transaction<DB>,
  accountId: string,
  keyNames: (key: string) => boolean,
): Promise<void> {
  const candidates = await trx
    .selectFrom('contact_imports')
    .select(['id', 'idempotency_key'])
    .where('account_id', '=', accountId)
    .where(sql<boolean>`position('@' in idempotency_key) > 0`)
    .execute();
  const ids = candidates.filter((row) => keyNames(row.idempotency_key!)).map((row) => row.id);
  if (ids.length === 0) return;
  await trx
    .updateTable('contact_imports')
    .set({ idempotency_key: null, updated_at: sql<Date>`now()` })
    .where('account_id', '=', accountId)
    .where('id', 'in', ids)
    .execute();
}
