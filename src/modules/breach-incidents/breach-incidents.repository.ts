import { type Insertable, type Kysely, sql, type Transaction, type Updateable } from 'kysely';
import type {
  AwareAtCorrection,
  BreachAuthorityNotificationRow,
  BreachAuthorityNotificationsTable,
  BreachIncidentRow,
  BreachIncidentsTable,
  BreachKind,
  BreachStatus,
  ContactPoint,
  DB,
  SubjectNoticeExemption,
} from '../../db/schema.js';

/**
 * Breach incidents (Art. 33) and the phases of their notification to the supervisory
 * authority. Reads take a `Kysely` or a transaction; writes and locks take the caller's
 * transaction. Every time is the service's clock, never SQL `now()`.
 */

/** The jsonb columns, written as JSON text (PGlite and pg both take it). */
type JsonColumns =
  | 'kinds'
  | 'aware_at_corrections'
  | 'data_categories'
  | 'subject_categories'
  | 'contact_point'
  | 'subject_notice_exemption';

interface JsonValues {
  kinds?: BreachKind[];
  aware_at_corrections?: AwareAtCorrection[] | null;
  data_categories?: string[] | null;
  subject_categories?: string[] | null;
  contact_point?: ContactPoint;
  subject_notice_exemption?: SubjectNoticeExemption | null;
}

export type NewIncident = Omit<Insertable<BreachIncidentsTable>, JsonColumns | 'id'> &
  JsonValues & { kinds: BreachKind[]; contact_point: ContactPoint };

export type IncidentChanges = Omit<
  Updateable<BreachIncidentsTable>,
  JsonColumns | 'account_id' | 'id' | 'version' | 'updated_at'
> &
  JsonValues;

function json(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

function jsonColumns(values: JsonValues) {
  const out: Record<string, string | null> = {};
  for (const key of [
    'kinds',
    'aware_at_corrections',
    'data_categories',
    'subject_categories',
    'contact_point',
    'subject_notice_exemption',
  ] as const) {
    if (values[key] !== undefined) out[key] = json(values[key]);
  }
  return out;
}

function withoutJson<T extends JsonValues>(values: T) {
  const {
    kinds: _k,
    aware_at_corrections: _a,
    data_categories: _d,
    subject_categories: _s,
    contact_point: _c,
    subject_notice_exemption: _e,
    ...rest
  } = values;
  return rest;
}

export async function insertIncident(
  trx: Transaction<DB>,
  values: NewIncident,
): Promise<BreachIncidentRow> {
  return trx
    .insertInto('breach_incidents')
    .values({ ...withoutJson(values), ...jsonColumns(values) } as Insertable<BreachIncidentsTable>)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findIncident(
  db: Kysely<DB>,
  accountId: string,
  id: string,
): Promise<BreachIncidentRow | undefined> {
  return db
    .selectFrom('breach_incidents')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Reads and locks the incident for the rest of the transaction. */
export async function lockIncident(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<BreachIncidentRow | undefined> {
  return trx
    .selectFrom('breach_incidents')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export async function updateIncident(
  trx: Transaction<DB>,
  current: BreachIncidentRow,
  changes: IncidentChanges,
  now: Date,
): Promise<BreachIncidentRow> {
  return trx
    .updateTable('breach_incidents')
    .set({
      ...withoutJson(changes),
      ...jsonColumns(changes),
      updated_at: now,
      version: current.version + 1,
    } as Updateable<BreachIncidentsTable>)
    .where('account_id', '=', current.account_id)
    .where('id', '=', current.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface IncidentListFilter {
  status?: BreachStatus | undefined;
  /** true: unnotified, risk not `none`, not closed and past the deadline at `now`. */
  overdue?: { value: boolean; now: Date } | undefined;
}

/** The account's incidents, filtered; the caller pages it by (created_at, id). */
export function incidentsQuery(db: Kysely<DB>, accountId: string, filter: IncidentListFilter) {
  let q = db.selectFrom('breach_incidents').selectAll().where('account_id', '=', accountId);
  if (filter.status) q = q.where('status', '=', filter.status);
  if (filter.overdue) {
    const { value, now } = filter.overdue;
    q = value
      ? q
          .where('first_notified_at', 'is', null)
          .where('risk', '<>', 'none')
          .where('status', '<>', 'closed')
          .where('authority_deadline_at', '<', now)
      : q.where((eb) =>
          eb.or([
            eb('first_notified_at', 'is not', null),
            eb('risk', '=', 'none'),
            eb('status', '=', 'closed'),
            eb('authority_deadline_at', '>=', now),
          ]),
        );
  }
  return q;
}

export async function insertNotification(
  trx: Transaction<DB>,
  values: Omit<Insertable<BreachAuthorityNotificationsTable>, 'content' | 'id'> & {
    content: Record<string, unknown>;
  },
): Promise<BreachAuthorityNotificationRow> {
  return trx
    .insertInto('breach_authority_notifications')
    .values({ ...values, content: JSON.stringify(values.content) })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The phases of the incidents named, in phase order (one query for a page of the register). */
export async function notificationsOf(
  db: Kysely<DB>,
  accountId: string,
  incidentIds: readonly string[],
): Promise<BreachAuthorityNotificationRow[]> {
  if (incidentIds.length === 0) return [];
  return db
    .selectFrom('breach_authority_notifications')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('incident_id', 'in', [...incidentIds])
    .orderBy('incident_id')
    .orderBy('phase')
    .execute();
}

/** The latest phase of an incident, if any (the next one must not come before it). */
export async function lastNotification(
  trx: Transaction<DB>,
  accountId: string,
  incidentId: string,
): Promise<BreachAuthorityNotificationRow | undefined> {
  return trx
    .selectFrom('breach_authority_notifications')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('incident_id', '=', incidentId)
    .orderBy('phase', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export type ReminderThreshold = '24h' | '6h' | 'passed';

const HOUR_MS = 3_600_000;

/**
 * Across accounts (through the owner-defined `breach_incidents_due_for_reminder()`, the sweep
 * runs bound to no account): the ids of unnotified incidents that still need notifying (risk not
 * `none`, not closed) whose current reminder is not sent yet, soonest deadline first. Each
 * account's are then read with {@link incidentsDueForReminder}, bound to it.
 */
export async function incidentIdsDueForReminder(
  db: Kysely<DB>,
  now: Date,
  limit: number,
): Promise<{ account_id: string; id: string }[]> {
  const { rows } = await sql<{ account_id: string; id: string }>`
    select account_id, id from breach_incidents_due_for_reminder(${now}, ${limit})`.execute(db);
  return rows;
}

/**
 * Of the account's incidents `ids`, those whose current reminder is still unsent: `passed` past
 * the deadline, `6h` within six hours of it, `24h` within a day. A threshold whose time went by
 * unsent (the worker was down) is skipped for the next one.
 */
export async function incidentsDueForReminder(
  trx: Transaction<DB>,
  accountId: string,
  ids: string[],
  now: Date,
): Promise<(BreachIncidentRow & { threshold: ReminderThreshold })[]> {
  if (ids.length === 0) return [];
  const threshold = sql<ReminderThreshold>`case
    when b.authority_deadline_at < ${now} then 'passed'
    when b.authority_deadline_at <= ${new Date(now.getTime() + 6 * HOUR_MS)} then '6h'
    else '24h' end`;
  return trx
    .selectFrom('breach_incidents as b')
    .selectAll('b')
    .select(threshold.as('threshold'))
    .where('b.account_id', '=', accountId)
    .where('b.id', 'in', ids)
    .where('b.first_notified_at', 'is', null)
    .where('b.status', '<>', 'closed')
    .where('b.risk', '<>', 'none')
    .where('b.authority_deadline_at', '<=', new Date(now.getTime() + 24 * HOUR_MS))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('breach_incident_reminders as r')
            .select(sql`1`.as('one'))
            .whereRef('r.account_id', '=', 'b.account_id')
            .whereRef('r.incident_id', '=', 'b.id')
            .where(sql<boolean>`r.threshold = ${threshold}`),
        ),
      ),
    )
    .orderBy('b.authority_deadline_at')
    .orderBy('b.id')
    .execute();
}

/** Records reminders as sent; returns those that were not already (a concurrent worker's). */
export async function insertReminders(
  trx: Transaction<DB>,
  rows: { account_id: string; incident_id: string; threshold: ReminderThreshold; sent_at: Date }[],
): Promise<{ account_id: string; incident_id: string; threshold: ReminderThreshold }[]> {
  if (rows.length === 0) return [];
  return trx
    .insertInto('breach_incident_reminders')
    .values(rows)
    .onConflict((oc) => oc.doNothing())
    .returning(['account_id', 'incident_id', 'threshold'])
    .execute();
}

/**
 * The account's own copy of a breach its processor reported (Art. 33(2)), unless it has one
 * already: the unique (account_id, processor_incident_id) makes a resumed fan-out tell no
 * account twice. Undefined when it was told before.
 */
export async function insertProcessorCopy(
  trx: Transaction<DB>,
  values: NewIncident & { processor_incident_id: string },
): Promise<BreachIncidentRow | undefined> {
  return trx
    .insertInto('breach_incidents')
    .values({ ...withoutJson(values), ...jsonColumns(values) } as Insertable<BreachIncidentsTable>)
    .onConflict((oc) =>
      oc
        .columns(['account_id', 'processor_incident_id'])
        .where('processor_incident_id', 'is not', null)
        .doNothing(),
    )
    .returningAll()
    .executeTakeFirst();
}
