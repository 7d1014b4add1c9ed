import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, keysetPage } from '../../db/keyset.js';
import type {
  BreachSubjectNoticeBatchRow,
  BreachSubjectNoticeRow,
  DB,
  SubjectNoticeStatus,
} from '../../db/schema.js';

/**
 * Art. 34 notices to the people affected by a breach: the batches (the text, kept once with its
 * hash) and one notice per person and batch. Writes take the caller's transaction; every time
 * is the service's clock.
 */

export async function insertBatch(
  trx: Transaction<DB>,
  values: {
    account_id: string;
    incident_id: string;
    selection: Record<string, unknown>;
    nature: string;
    contact_point: string;
    consequences: string;
    measures: string;
    text_sha256: string;
    created_at: Date;
  },
): Promise<BreachSubjectNoticeBatchRow> {
  return trx
    .insertInto('breach_subject_notice_batches')
    .values({ ...values, selection: JSON.stringify(values.selection) })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** How many notices the batch holds now (an erasure removes its person's). */
export async function batchNoticeCount(
  db: Kysely<DB>,
  accountId: string,
  batchId: string,
): Promise<number> {
  const row = await db
    .selectFrom('breach_subject_notices')
    .select(sql<number>`count(*)::int`.as('count'))
    .where('account_id', '=', accountId)
    .where('batch_id', '=', batchId)
    .executeTakeFirstOrThrow();
  return Number(row.count);
}

/** One pending notice per contact of `contactIds` (ids of existing contacts of the account). */
export async function insertNotices(
  trx: Transaction<DB>,
  batch: BreachSubjectNoticeBatchRow,
  contactIds: readonly string[],
  now: Date,
): Promise<number> {
  if (contactIds.length === 0) return 0;
  const rows = await trx
    .insertInto('breach_subject_notices')
    .values(
      contactIds.map((contactId) => ({
        account_id: batch.account_id,
        incident_id: batch.incident_id,
        batch_id: batch.id,
        contact_id: contactId,
        created_at: now,
        updated_at: now,
      })),
    )
    .returning('id')
    .execute();
  return rows.length;
}

export async function findBatch(
  db: Kysely<DB>,
  accountId: string,
  incidentId: string,
  batchId: string,
): Promise<BreachSubjectNoticeBatchRow | undefined> {
  return db
    .selectFrom('breach_subject_notice_batches')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('incident_id', '=', incidentId)
    .where('id', '=', batchId)
    .executeTakeFirst();
}

/** One page of an incident's notices in id (creation) order, optionally of one status. */
export function noticesPage(
  db: Kysely<DB>,
  accountId: string,
  incidentId: string,
  query: { limit: number; cursor?: string | undefined; status?: SubjectNoticeStatus | undefined },
) {
  let q = db
    .selectFrom('breach_subject_notices')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('incident_id', '=', incidentId);
  if (query.status !== undefined) q = q.where('status', '=', query.status);
  return keysetPage(q, {
    codec: cursors.contactId,
    keys: [{ column: 'id', cursorValue: (row: BreachSubjectNoticeRow) => row.id }],
    limit: query.limit,
    cursor: query.cursor,
  });
}

/** Locks the incident's notices `ids` (those that exist) for their delivery reports. */
export async function lockNotices(
  trx: Transaction<DB>,
  accountId: string,
  incidentId: string,
  ids: readonly string[],
): Promise<BreachSubjectNoticeRow[]> {
  return trx
    .selectFrom('breach_subject_notices')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('incident_id', '=', incidentId)
    .where('id', 'in', [...ids])
    .orderBy('id')
    .forUpdate()
    .execute();
}

export async function reportNotice(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  values: {
    status: SubjectNoticeStatus;
    reported_at: Date;
    failure_reason: string | null;
    updated_at: Date;
  },
): Promise<void> {
  await trx
    .updateTable('breach_subject_notices')
    .set(values)
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .execute();
}
