import { type Insertable, type Kysely, sql, type Transaction, type Updateable } from 'kysely';
import type {
  DataSubjectRequestRow,
  DataSubjectRequestStatus,
  DataSubjectRequestsTable,
  DataSubjectRequestType,
  DB,
} from '../../db/schema.js';

/**
 * Data-subject requests and their identity-verification links. Reads take a `Kysely` or a
 * transaction; writes and locks take the caller's transaction. Times come from the service's
 * clock, never from SQL `now()`, so a moved clock moves every date the module writes.
 */

const UNIQUE_EXTERNAL_ID_INDEX = 'data_subject_requests_external_id_key';

/** The jsonb columns, written as JSON text (PGlite and pg both take it). */
type JsonColumns = 'purpose_ids' | 'corrections' | 'recipients_informed' | 'outcome';

export type NewRequest = Omit<Insertable<DataSubjectRequestsTable>, JsonColumns | 'id'> & {
  purpose_ids?: string[] | null;
  corrections?: Record<string, string | null> | null;
};

export type RequestChanges = Omit<
  Updateable<DataSubjectRequestsTable>,
  JsonColumns | 'account_id' | 'id' | 'version' | 'updated_at'
> & {
  recipients_informed?: { name: string; informedAt: string }[] | null;
  outcome?: Record<string, unknown> | null;
  corrections?: Record<string, string | null> | null;
};

function json(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

export function isDuplicateExternalId(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  return (
    e.code === '23505' &&
    (e.constraint === UNIQUE_EXTERNAL_ID_INDEX || !!e.message?.includes(UNIQUE_EXTERNAL_ID_INDEX))
  );
}

export async function insertRequest(
  trx: Transaction<DB>,
  values: NewRequest,
): Promise<DataSubjectRequestRow> {
  const { purpose_ids, corrections, ...rest } = values;
  return trx
    .insertInto('data_subject_requests')
    .values({ ...rest, purpose_ids: json(purpose_ids), corrections: json(corrections) })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findRequest(
  db: Kysely<DB>,
  accountId: string,
  id: string,
): Promise<DataSubjectRequestRow | undefined> {
  return db
    .selectFrom('data_subject_requests')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function findRequestByExternalId(
  db: Kysely<DB>,
  accountId: string,
  externalId: string,
): Promise<{ id: string } | undefined> {
  return db
    .selectFrom('data_subject_requests')
    .select('id')
    .where('account_id', '=', accountId)
    .where('external_id', '=', externalId)
    .executeTakeFirst();
}

/** Reads and locks the request for the rest of the transaction. */
export async function lockRequest(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<DataSubjectRequestRow | undefined> {
  return trx
    .selectFrom('data_subject_requests')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export async function updateRequest(
  trx: Transaction<DB>,
  current: DataSubjectRequestRow,
  changes: RequestChanges,
  now: Date,
): Promise<DataSubjectRequestRow> {
  const { recipients_informed, outcome, corrections, ...rest } = changes;
  return trx
    .updateTable('data_subject_requests')
    .set({
      ...rest,
      ...(recipients_informed !== undefined
        ? { recipients_informed: json(recipients_informed) }
        : {}),
      ...(outcome !== undefined ? { outcome: json(outcome) } : {}),
      ...(corrections !== undefined ? { corrections: json(corrections) } : {}),
      updated_at: now,
      version: current.version + 1,
    })
    .where('account_id', '=', current.account_id)
    .where('id', '=', current.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * What a list shows of each request: the facts for tracking deadlines, not the subject's
 * address, notes or evidence (those are read one request at a time, where they are needed).
 */
export const SUMMARY_COLUMNS = [
  'id',
  'type',
  'status',
  'external_id',
  'channel',
  'contact_id',
  'received_at',
  'time_zone',
  'calendar',
  'due_date',
  'due_at',
  'extension_months',
  'decided_at',
  'decided_late',
  'created_at',
  'updated_at',
  'version',
] as const;
export type RequestSummaryRow = Pick<DataSubjectRequestRow, (typeof SUMMARY_COLUMNS)[number]>;

export interface RequestListFilter {
  status?: DataSubjectRequestStatus | undefined;
  type?: DataSubjectRequestType | undefined;
  contactId?: string | undefined;
  /** Due strictly before this instant. */
  dueBefore?: Date | undefined;
  /** true: open and past its due instant at `now`; false: not so. */
  overdue?: { value: boolean; now: Date } | undefined;
}

/** The account's requests, filtered; the caller pages it (by created_at or due_at). */
export function requestsQuery(db: Kysely<DB>, accountId: string, filter: RequestListFilter) {
  let q = db
    .selectFrom('data_subject_requests')
    .select(SUMMARY_COLUMNS)
    .where('account_id', '=', accountId);
  if (filter.status) q = q.where('status', '=', filter.status);
  if (filter.type) q = q.where('type', '=', filter.type);
  if (filter.contactId) q = q.where('contact_id', '=', filter.contactId);
  if (filter.dueBefore) q = q.where('due_at', '<', filter.dueBefore);
  if (filter.overdue) {
    const { value, now } = filter.overdue;
    const open = ['received', 'identity_verified'] as const;
    q = value
      ? q.where('status', 'in', open).where('due_at', '<', now)
      : q.where((eb) => eb.or([eb('status', 'not in', open), eb('due_at', '>=', now)]));
  }
  return q;
}

/** The requests about a contact, oldest first (for the contact's own export). */
export async function requestsOfContact(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<DataSubjectRequestRow[]> {
  return db
    .selectFrom('data_subject_requests')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/**
 * Art. 17: after an erasure nothing in a request may still say who the person was. Clears the
 * plaintext of every request about the contact (by id) or any of its addresses (by keyed
 * fingerprint): address, customer id, notes, identity evidence, requested corrections and any
 * stored export; and deletes their verification links. Type, dates, decision, reasons and the
 * fingerprint remain. Returns how many requests were cleared.
 */
export async function forgetSubjectPlaintext(
  trx: Transaction<DB>,
  accountId: string,
  subject: { contactId: string; fingerprints: readonly string[] },
  now: Date,
): Promise<number> {
  const rows = await trx
    .updateTable('data_subject_requests')
    .set({
      subject_email: null,
      subject_customer_id: null,
      notes: null,
      identity_evidence: null,
      corrections: null,
      export_ciphertext: null,
      updated_at: now,
    })
    .where('account_id', '=', accountId)
    .where((eb) =>
      eb.or([
        eb('contact_id', '=', subject.contactId),
        ...(subject.fingerprints.length > 0
          ? [eb('subject_email_hash', 'in', [...subject.fingerprints])]
          : []),
      ]),
    )
    .returning('id')
    .execute();
  if (rows.length > 0) {
    await trx
      .deleteFrom('data_subject_request_tokens')
      .where('account_id', '=', accountId)
      .where(
        'request_id',
        'in',
        rows.map((row) => row.id),
      )
      .execute();
  }
  return rows.length;
}

/**
 * Drops stored exports whose time is up, in every account (the digest and size stay in
 * `outcome`). Returns how many were dropped.
 */
export async function dropExpiredExports(db: Kysely<DB>, now: Date): Promise<number> {
  const rows = await db
    .updateTable('data_subject_requests')
    .set({ export_ciphertext: null })
    .where('export_ciphertext', 'is not', null)
    .where('export_expires_at', '<=', now)
    .returning('id')
    .execute();
  return rows.length;
}

export async function insertVerificationToken(
  trx: Transaction<DB>,
  values: {
    tokenHash: string;
    accountId: string;
    requestId: string;
    expiresAt: Date;
    now: Date;
  },
): Promise<void> {
  await trx
    .insertInto('data_subject_request_tokens')
    .values({
      token_hash: values.tokenHash,
      account_id: values.accountId,
      request_id: values.requestId,
      expires_at: values.expiresAt,
      created_at: values.now,
    })
    .execute();
}

/** A verification link by its token's hash, without a lock (its page only reads). */
export async function findVerificationToken(db: Kysely<DB>, tokenHash: string) {
  return db
    .selectFrom('data_subject_request_tokens')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/** A verification link by its token's hash, locked: using it is a once-only act. */
export async function lockVerificationToken(trx: Transaction<DB>, tokenHash: string) {
  return trx
    .selectFrom('data_subject_request_tokens')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .forUpdate()
    .executeTakeFirst();
}

export async function markVerificationTokenUsed(
  trx: Transaction<DB>,
  tokenHash: string,
  now: Date,
): Promise<void> {
  await trx
    .updateTable('data_subject_request_tokens')
    .set({ used_at: now })
    .where('token_hash', '=', tokenHash)
    .execute();
}

/** A request's unused links stop working when it is decided (or a new link replaces them). */
export async function revokeVerificationTokens(
  trx: Transaction<DB>,
  accountId: string,
  requestId: string,
  now: Date,
): Promise<void> {
  await trx
    .updateTable('data_subject_request_tokens')
    .set({ used_at: now })
    .where('account_id', '=', accountId)
    .where('request_id', '=', requestId)
    .where('used_at', 'is', null)
    .execute();
}

export type RequestReminderThreshold = '7d' | 'overdue';

const WEEK_MS = 7 * 24 * 3_600_000;

/**
 * Across accounts (through the owner-defined `data_subject_requests_due_for_reminder()`, the
 * sweep runs bound to no account): the ids of open requests whose current reminder is not sent
 * yet, soonest due first. Each account's are then read with {@link requestsDueForReminder}.
 */
export async function requestIdsDueForReminder(
  db: Kysely<DB>,
  now: Date,
  limit: number,
): Promise<{ account_id: string; id: string }[]> {
  const { rows } = await sql<{ account_id: string; id: string }>`
    select account_id, id from data_subject_requests_due_for_reminder(${now}, ${limit})`.execute(
    db,
  );
  return rows;
}

/**
 * Of the account's requests `ids`, the open ones whose current reminder is not sent yet:
 * `overdue` past the due time, `7d` within a week of it.
 */
export async function requestsDueForReminder(
  trx: Transaction<DB>,
  accountId: string,
  ids: string[],
  now: Date,
): Promise<(DataSubjectRequestRow & { threshold: RequestReminderThreshold })[]> {
  if (ids.length === 0) return [];
  const threshold = sql<RequestReminderThreshold>`case
    when d.due_at < ${now} then 'overdue' else '7d' end`;
  return trx
    .selectFrom('data_subject_requests as d')
    .selectAll('d')
    .select(threshold.as('threshold'))
    .where('d.account_id', '=', accountId)
    .where('d.id', 'in', ids)
    .where('d.status', 'in', ['received', 'identity_verified'])
    .where('d.due_at', '<=', new Date(now.getTime() + WEEK_MS))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('data_subject_request_reminders as r')
            .select(sql`1`.as('one'))
            .whereRef('r.account_id', '=', 'd.account_id')
            .whereRef('r.request_id', '=', 'd.id')
            .where(sql<boolean>`r.threshold = ${threshold}`),
        ),
      ),
    )
    .orderBy('d.due_at')
    .orderBy('d.id')
    .execute();
}

/** Records reminders as sent; returns those that were not already (a concurrent worker's). */
export async function insertRequestReminders(
  trx: Transaction<DB>,
  rows: {
    account_id: string;
    request_id: string;
    threshold: RequestReminderThreshold;
    sent_at: Date;
  }[],
): Promise<{ account_id: string; request_id: string; threshold: RequestReminderThreshold }[]> {
  if (rows.length === 0) return [];
  return trx
    .insertInto('data_subject_request_reminders')
    .values(rows)
    .onConflict((oc) => oc.doNothing())
    .returning(['account_id', 'request_id', 'threshold'])
    .execute();
}
