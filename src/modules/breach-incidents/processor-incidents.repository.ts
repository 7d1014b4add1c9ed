import { type Kysely, sql, type Transaction } from 'kysely';
import type { BreachKind, ContactPoint, DB, ProcessorBreachIncidentRow } from '../../db/schema.js';

/**
 * Breaches at the provider as processor (Art. 33(2)): the provider-level record, its fan-out
 * cursor, and the operators' view of the accounts told (an owner-defined function, since it
 * reads across accounts). Accounts are listed through `account_directory()`.
 */

export async function insertProcessorIncident(
  trx: Transaction<DB>,
  values: {
    title: string;
    description: string;
    kinds: BreachKind[];
    occurred_at: Date | null;
    aware_at: Date;
    contact_point: ContactPoint;
    target_account_ids: string[] | null;
    created_by: string;
    created_at: Date;
  },
): Promise<ProcessorBreachIncidentRow> {
  return trx
    .insertInto('processor_breach_incidents')
    .values({
      ...values,
      kinds: JSON.stringify(values.kinds),
      contact_point: JSON.stringify(values.contact_point),
      target_account_ids:
        values.target_account_ids === null ? null : JSON.stringify(values.target_account_ids),
      updated_at: values.created_at,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findProcessorIncident(
  db: Kysely<DB>,
  id: string,
): Promise<ProcessorBreachIncidentRow | undefined> {
  return db
    .selectFrom('processor_breach_incidents')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Processor incidents whose fan-out is not finished, oldest first. */
export async function unfinishedFanOuts(
  db: Kysely<DB>,
  limit: number,
): Promise<ProcessorBreachIncidentRow[]> {
  return db
    .selectFrom('processor_breach_incidents')
    .selectAll()
    .where('fan_out_done_at', 'is', null)
    .orderBy('created_at')
    .orderBy('id')
    .limit(limit)
    .execute();
}

/** Moves the fan-out past `after` (finished with `doneAt`). */
export async function advanceFanOut(
  db: Kysely<DB>,
  id: string,
  after: string | null,
  doneAt: Date | null,
  now: Date,
): Promise<ProcessorBreachIncidentRow> {
  return db
    .updateTable('processor_breach_incidents')
    .set({ fan_out_after: after, fan_out_done_at: doneAt, updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function recordPublicCommunication(
  db: Kysely<DB>,
  id: string,
  communication: { url: string; publishedAt: string; recordedAt: string },
  now: Date,
): Promise<ProcessorBreachIncidentRow | undefined> {
  return db
    .updateTable('processor_breach_incidents')
    .set({ public_communication: JSON.stringify(communication), updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** Every account's id after `after`, in id order, `limit` at most. */
export async function accountIdsAfter(
  db: Kysely<DB>,
  after: string | null,
  limit: number,
): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select id from account_directory()
    where ${after === null ? sql`true` : sql`id > ${after}`}
    order by id limit ${limit}`.execute(db);
  return rows.map((row) => row.id);
}

/** Those of `ids` that are accounts. */
export async function existingAccountIds(
  db: Kysely<DB>,
  ids: readonly string[],
): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<{ id: string }>`
    select id from account_directory() where id in (${sql.join([...ids])})`.execute(db);
  return rows.map((row) => row.id);
}

export interface ProcessorAccountRow {
  account_id: string;
  incident_id: string;
  told_at: Date;
  webhook_delivered_at: Date | null;
  acknowledged_at: Date | null;
}

/** The accounts told of a processor incident, with their copy's id and their answers. */
export async function processorAccounts(
  db: Kysely<DB>,
  id: string,
): Promise<ProcessorAccountRow[]> {
  const { rows } = await sql<ProcessorAccountRow>`
    select account_id, incident_id, told_at, webhook_delivered_at, acknowledged_at
    from processor_breach_accounts(${id})`.execute(db);
  return rows.map((row) => ({
    ...row,
    told_at: new Date(row.told_at),
    webhook_delivered_at: row.webhook_delivered_at ? new Date(row.webhook_delivered_at) : null,
    acknowledged_at: row.acknowledged_at ? new Date(row.acknowledged_at) : null,
  }));
}
