import { type Kysely, sql, type Transaction } from 'kysely';
import type {
  ConsentEventRow,
  ContactImportErrorRow,
  ContactImportRow,
  DB,
} from '../../db/schema.js';

/**
 * Contact imports: the job rows, their per-row errors, and the set-based writes of one batch.
 * Every function takes a `Kysely` or a transaction and is scoped to one account.
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
  trx: Kysely<DB>,
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
  trx: Kysely<DB>,
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

/** One page of an import's row errors in (row, ordinal) order, after the cursor. */
export async function listRowErrors(
  db: Kysely<DB>,
  accountId: string,
  importId: string,
  query: { limit: number; after?: { rowNumber: number; ordinal: number } | undefined },
): Promise<ContactImportErrorRow[]> {
  let q = db
    .selectFrom('contact_import_errors')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('import_id', '=', importId);
  if (query.after) {
    const { rowNumber, ordinal } = query.after;
    q = q.where(sql<boolean>`(row_number, ordinal) > (${rowNumber}::int, ${ordinal}::int)`);
  }
  return q.orderBy('row_number').orderBy('ordinal').limit(query.limit).execute();
}

/**
 * `= any($1::text[])`: a batch's keys as one array parameter. Postgres plans it exactly like an
 * `in (...)` list (an index scan with the array as its condition), but the client sends one
 * value instead of a thousand placeholders to compile and bind.
 */
function anyText(values: string[]) {
  return sql<string>`any(${values}::text[])`;
}

export interface ExistingContact {
  id: string;
  email: string;
}

export async function findContactsByEmail(
  trx: Kysely<DB>,
  accountId: string,
  emails: string[],
): Promise<ExistingContact[]> {
  if (emails.length === 0) return [];
  return trx
    .selectFrom('contacts')
    .select(['id', 'email'])
    .where('account_id', '=', accountId)
    .where('email', '=', anyText(emails))
    .execute();
}

/** Which of these addresses belong to restricted contacts (Art. 18), through a small index. */
export async function restrictedEmails(
  trx: Kysely<DB>,
  accountId: string,
  emails: string[],
): Promise<Set<string>> {
  if (emails.length === 0) return new Set();
  const rows = await trx
    .selectFrom('contacts')
    .select('email')
    .where('account_id', '=', accountId)
    .where('email', '=', anyText(emails))
    .where('restricted_at', 'is not', null)
    .execute();
  return new Set(rows.map((row) => row.email));
}

export async function suppressedFingerprints(
  trx: Kysely<DB>,
  accountId: string,
  fingerprints: string[],
): Promise<Set<string>> {
  if (fingerprints.length === 0) return new Set();
  const rows = await trx
    .selectFrom('suppressions')
    .select('email_hash')
    .where('account_id', '=', accountId)
    .where('email_hash', '=', anyText(fingerprints))
    .execute();
  return new Set(rows.map((row) => row.email_hash));
}

export interface ContactUpsert {
  email: string;
  first_name: string | null;
  last_name: string | null;
  language: string | null;
  /** Shallow-merged into the stored attributes (`||`); `{}` changes nothing. */
  attributes: Record<string, unknown>;
  /** Set on insertion only (a re-admission at an erased address); absent means false. */
  suppressed_until_confirmed?: true;
}

/**
 * Inserts or updates a batch of contacts in one statement. Absent fields keep their stored
 * value; attributes are merged key by key. A restricted contact is never changed (Art. 18);
 * the caller filters those out before and this guard covers a restriction racing in. Rows
 * whose values would not change are not rewritten (no version bump). Returns the ids of the
 * contacts that were inserted.
 *
 * The rows travel as one JSON parameter expanded by `json_to_recordset`: one round trip, the
 * same on node-postgres and PGlite, and no per-row parameters. `json`, not `jsonb`: the text is
 * read once, as the rows are produced, instead of first being built into a `jsonb` value at
 * bind time (about 6 ms of a 1,000-row batch).
 */
export async function upsertContacts(
  trx: Kysely<DB>,
  accountId: string,
  rows: ContactUpsert[],
): Promise<{ id: string; email: string; inserted: boolean }[]> {
  if (rows.length === 0) return [];
  const result = await sql<{ id: string; email: string; inserted: boolean }>`
    insert into contacts (
      account_id, email, first_name, last_name, language, attributes, suppressed_until_confirmed
    )
    select ${accountId}::uuid, u.email, u.first_name, u.last_name, u.language, u.attributes,
      coalesce(u.suppressed_until_confirmed, false)
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as u(email text, first_name text, last_name text, language text, attributes jsonb,
        suppressed_until_confirmed boolean)
    on conflict (account_id, email) do update set
      first_name = coalesce(excluded.first_name, contacts.first_name),
      last_name = coalesce(excluded.last_name, contacts.last_name),
      language = coalesce(excluded.language, contacts.language),
      attributes = contacts.attributes || excluded.attributes,
      updated_at = clock_timestamp(),
      version = contacts.version + 1
    where contacts.restricted_at is null
      and (contacts.first_name, contacts.last_name, contacts.language, contacts.attributes)
        is distinct from (
          coalesce(excluded.first_name, contacts.first_name),
          coalesce(excluded.last_name, contacts.last_name),
          coalesce(excluded.language, contacts.language),
          contacts.attributes || excluded.attributes
        )
    returning id, email, (xmax = 0) as inserted`.execute(trx);
  return result.rows;
}

export interface ConsentAppend {
  contact_id: string;
  purpose_id: string;
  notice_version: number | null;
  method: string;
  occurred_at: string;
  ip: string | null;
  user_agent: string | null;
  source_url: string | null;
  /** A double opt-in pending grant made by the import: only when the purpose has no event. */
  pending_only_if_none: boolean;
}

/**
 * Appends the batch's consent grants to the ledger, in file order (`recorded_at` is the clock
 * at each insertion). Skipped, so re-running a file adds nothing:
 * - an identical event (contact, purpose, notice version, time, method) already recorded;
 * - evidence older than a withdrawal recorded for the purpose (an old grant must not undo a
 *   later withdrawal);
 * - the import's own pending grant when the contact already has any event for the purpose.
 * The caller leaves out restricted contacts (Art. 18). Marks the notice versions used.
 * Returns the pending double opt-in grants it appended (not the others).
 */
export async function appendImportedConsents(
  trx: Kysely<DB>,
  accountId: string,
  actor: { type: string; id: string | null },
  events: ConsentAppend[],
): Promise<AppendedConsent[]> {
  if (events.length === 0) return [];
  const result = await appendConsentsStatement(accountId, actor, events).execute(trx);
  const pairs = new Map<string, { purposeId: string; version: number }>();
  for (const event of events) {
    if (event.notice_version === null) continue;
    pairs.set(`${event.purpose_id}:${event.notice_version}`, {
      purposeId: event.purpose_id,
      version: event.notice_version,
    });
  }
  for (const { purposeId, version } of pairs.values()) {
    await trx
      .updateTable('notice_versions')
      .set({ first_used_at: sql<Date>`now()` })
      .where('account_id', '=', accountId)
      .where('purpose_id', '=', purposeId)
      .where('version', '=', version)
      .where('first_used_at', 'is', null)
      .execute();
  }
  return result.rows;
}

/**
 * The statement behind {@link appendImportedConsents} (exported so a test can EXPLAIN it). It
 * returns only the pending double opt-in grants it appended, the ones that need a confirmation
 * link: sending back and parsing a row per accepted contact cost a few ms per batch.
 */
export function appendConsentsStatement(
  accountId: string,
  actor: { type: string; id: string | null },
  events: ConsentAppend[],
) {
  const ordered = events.map((event, ord) => ({ ...event, ord }));
  // Keyed by contact id, not by email: the plan is index lookups whatever the table's
  // statistics say (a join on email planned without statistics compares every pair).
  // `offset 0` keeps the NOT EXISTS a per-row subplan (an index probe on contact and purpose):
  // turned into an anti join, a table that grew since it was last analysed is planned as tiny,
  // and every row of the batch was compared with all of the account's events (1,000 x n).
  return sql<AppendedConsent>`
    with appended as (
      insert into consent_events (
        account_id, contact_id, purpose_id, notice_version, event, method, legal_basis,
        occurred_at, recorded_at, ip, user_agent, source_url, actor_type, actor_id
      )
      select ${accountId}::uuid, u.contact_id, u.purpose_id, u.notice_version, 'granted', u.method,
        'consent', u.occurred_at, clock_timestamp(), u.ip, u.user_agent, u.source_url,
        ${actor.type}, ${actor.id}
      from json_to_recordset(${JSON.stringify(ordered)}::json) as u(
        ord int, contact_id uuid, purpose_id uuid, notice_version int, method text,
        occurred_at timestamptz, ip text, user_agent text, source_url text,
        pending_only_if_none boolean
      )
      where not exists (
          select 1 from consent_events e
          where e.account_id = ${accountId}::uuid and e.contact_id = u.contact_id
            and e.purpose_id = u.purpose_id
            and (
              (u.pending_only_if_none)
              or (e.event = 'granted' and e.method = u.method and e.occurred_at = u.occurred_at
                  and e.notice_version is not distinct from u.notice_version)
              or (e.event = 'withdrawn' and e.occurred_at >= u.occurred_at)
            )
          offset 0
        )
      order by u.ord
      returning id, contact_id, purpose_id, notice_version, event, method
    )
    -- pending, as deriveState (consents.repository) defines it
    select * from appended where event = 'granted' and method = 'double_opt_in'`;
}

export type AppendedConsent = Pick<
  ConsentEventRow,
  'id' | 'contact_id' | 'purpose_id' | 'notice_version' | 'event' | 'method'
>;

export async function findPurposeIds(
  db: Kysely<DB>,
  accountId: string,
  keys: string[],
): Promise<Map<string, string>> {
  if (keys.length === 0) return new Map();
  const rows = await db
    .selectFrom('purposes')
    .select(['id', 'key'])
    .where('account_id', '=', accountId)
    .where('key', 'in', keys)
    .execute();
  return new Map(rows.map((row) => [row.key, row.id]));
}

export async function noticeVersionExists(
  db: Kysely<DB>,
  accountId: string,
  purposeId: string,
  version: number,
): Promise<boolean> {
  const row = await db
    .selectFrom('notice_versions')
    .select('version')
    .where('account_id', '=', accountId)
    .where('purpose_id', '=', purposeId)
    .where('version', '=', version)
    .executeTakeFirst();
  return row !== undefined;
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
