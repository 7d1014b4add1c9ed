import type { Kysely, Transaction } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type {
  BreachAuthorityNotificationRow,
  BreachIncidentRow,
  BreachStatus,
  ContactPoint,
  DB,
} from '../../db/schema.js';
import { sumOverAccounts } from '../../db/tenant.js';
import {
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
  ValidationError,
} from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { findAccount } from '../accounts/accounts.service.js';
import { entityAuditTrail, recordAudit } from '../audit/audit.service.js';
import { appendEvents, type EventType } from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import {
  findIncident,
  type IncidentChanges,
  incidentIdsDueForReminder,
  incidentsDueForReminder,
  incidentsQuery,
  insertIncident,
  insertNotification,
  insertReminders,
  lastNotification,
  lockIncident,
  notificationsOf,
  updateIncident,
} from './breach-incidents.repository.js';
import type {
  CloseInput,
  CreateBreachIncidentInput,
  NotificationInput,
  PatchBreachIncidentInput,
} from './breach-incidents.schemas.js';
import { authorityDeadline, hoursRemaining } from './deadline.js';

/** A time a little ahead of our clock is a clock difference, not a report from the future. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** Register pages read per query while the CSV streams. */
const REGISTER_CSV_PAGE = 500;

function notFound() {
  return new NotFoundError('The breach incident does not exist.');
}

function invalidTransition(row: BreachIncidentRow, action: string) {
  return new ConflictError(
    'invalid_transition',
    `The incident is ${row.status}: it cannot be ${action}.`,
  );
}

function inFuture(field: string, at: Date, now: Date) {
  return at.getTime() > now.getTime() + CLOCK_SKEW_MS
    ? new ValidationError([{ field, code: 'in_future', message: 'must not be in the future' }])
    : undefined;
}

function occurredAfterAwareness(field: string) {
  return new ValidationError([
    {
      field,
      code: 'occurred_after_aware',
      message: 'occurredAt must not be after awareAt: one cannot be aware before it happened',
    },
  ]);
}

/** The lifecycle's order: a status only moves forward (open → assessed → notified → closed). */
const RANK: Record<BreachStatus, number> = { open: 0, assessed: 1, notified: 2, closed: 3 };

/** The PATCH fields that are plain columns (the API name → the column). */
const PLAIN_FIELDS = {
  title: 'title',
  description: 'description',
  approximateSubjects: 'approximate_subjects',
  approximateRecords: 'approximate_records',
  likelyConsequences: 'likely_consequences',
  measuresTaken: 'measures_taken',
} as const;

/** The Art. 33(3) content an authority notification carries, as it stands now. */
function contentSnapshot(row: BreachIncidentRow, summary: string | undefined) {
  return {
    title: row.title,
    description: row.description,
    kinds: row.kinds,
    occurredAt: row.occurred_at?.toISOString() ?? null,
    awareAt: row.aware_at.toISOString(),
    risk: row.risk,
    dataCategories: row.data_categories,
    subjectCategories: row.subject_categories,
    approximateSubjects: row.approximate_subjects,
    approximateRecords: row.approximate_records,
    likelyConsequences: row.likely_consequences,
    measuresTaken: row.measures_taken,
    contactPoint: row.contact_point,
    ...(summary !== undefined ? { summary } : {}),
  };
}

/** The feed event of a change: ids, states and dates, never the incident's text. */
export function feedEvent(
  type: EventType,
  row: BreachIncidentRow,
  extra: Record<string, unknown> = {},
) {
  return {
    type,
    contactId: null,
    data: {
      incidentId: row.id,
      status: row.status,
      risk: row.risk,
      kinds: row.kinds,
      source: row.source,
      awareAt: row.aware_at.toISOString(),
      authorityDeadlineAt: row.authority_deadline_at.toISOString(),
      ...extra,
    },
  };
}

export interface BreachIncidentsDeps {
  db: Kysely<DB>;
  clock: Clock;
}

/**
 * Personal-data breaches (Art. 33): recorded with their 72-hour deadline, assessed, notified to
 * the supervisory authority in phases, closed; every one kept for the register (Art. 33(5)).
 * Every change is audited and put on the feed in the transaction that makes it.
 */
export function createBreachIncidentsService(deps: BreachIncidentsDeps) {
  const { db, clock } = deps;

  async function get(accountId: string, id: string): Promise<BreachIncidentRow> {
    const row = await findIncident(db, accountId, id);
    if (!row) throw notFound();
    return row;
  }

  /** Locks the incident; 404 when absent, 412 when `If-Match` names another version. */
  async function lockForChange(
    trx: Transaction<DB>,
    accountId: string,
    id: string,
    expectedVersion: number | undefined,
  ): Promise<BreachIncidentRow> {
    const row = await lockIncident(trx, accountId, id);
    if (!row) throw notFound();
    if (expectedVersion !== undefined && row.version !== expectedVersion) {
      throw new PreconditionFailedError();
    }
    return row;
  }

  async function audit(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    row: BreachIncidentRow,
    action: string,
    changedFields: string[],
  ) {
    await recordAudit(trx, ctx, {
      accountId,
      action: `breach_incident.${action}`,
      entityType: 'breach_incident',
      entityId: row.id,
      changedFields,
    });
  }

  return {
    get,

    list(
      accountId: string,
      query: {
        limit: number;
        cursor?: string | undefined;
        status?: BreachStatus | undefined;
        overdue?: 'true' | 'false' | undefined;
      },
    ) {
      const filtered = incidentsQuery(db, accountId, {
        status: query.status,
        overdue: query.overdue ? { value: query.overdue === 'true', now: clock.now() } : undefined,
      });
      return pageByCreatedAt(filtered, query);
    },

    /** The incident's history: its own audit entries. */
    async timeline(accountId: string, id: string) {
      await get(accountId, id);
      return entityAuditTrail(db, accountId, { type: 'breach_incident', id });
    },

    /** The phases of one incident's authority notification, in order. */
    async notifications(accountId: string, id: string) {
      await get(accountId, id);
      return notificationsOf(db, accountId, [id]);
    },

    /** One page of the register (Art. 33(5)): incidents with their phases. */
    async registerPage(accountId: string, page: { limit: number; cursor?: string | undefined }) {
      const result = await pageByCreatedAt(incidentsQuery(db, accountId, {}), page);
      const phases = await notificationsOf(
        db,
        accountId,
        result.rows.map((row) => row.id),
      );
      return { ...result, phases: groupByIncident(phases) };
    },

    /** Every incident of the account with its phases, a page at a time (for the CSV). */
    async *registerAll(
      accountId: string,
    ): AsyncGenerator<{ row: BreachIncidentRow; phases: BreachAuthorityNotificationRow[] }> {
      let cursor: string | undefined;
      for (;;) {
        const page = await pageByCreatedAt(incidentsQuery(db, accountId, {}), {
          limit: REGISTER_CSV_PAGE,
          cursor,
        });
        const phases = groupByIncident(
          await notificationsOf(
            db,
            accountId,
            page.rows.map((row) => row.id),
          ),
        );
        for (const row of page.rows) yield { row, phases: phases.get(row.id) ?? [] };
        if (!page.nextCursor) return;
        cursor = page.nextCursor;
      }
    },

    /** Art. 33(1), (5): records a breach and its deadline, 72 hours from awareness. */
    async create(ctx: RequestContext, accountId: string, input: CreateBreachIncidentInput) {
      const now = clock.now();
      const awareAt = input.awareAt ? new Date(input.awareAt) : now;
      const occurredAt = input.occurredAt ? new Date(input.occurredAt) : null;
      const future =
        inFuture('body.awareAt', awareAt, now) ??
        (occurredAt ? inFuture('body.occurredAt', occurredAt, now) : undefined);
      if (future) throw future;
      if (occurredAt && occurredAt.getTime() > awareAt.getTime()) {
        throw occurredAfterAwareness('body.occurredAt');
      }
      const kinds = [...new Set(input.kinds)];
      return db.transaction().execute(async (trx) => {
        let contactPoint: ContactPoint;
        if (input.contactPoint) {
          contactPoint = {
            name: input.contactPoint.name ?? null,
            email: input.contactPoint.email ?? null,
            phone: input.contactPoint.phone ?? null,
          };
        } else {
          const account = await findAccount(trx, accountId);
          if (!account) throw new Error(`account ${accountId} does not exist`);
          contactPoint = {
            name: account.dpo_name,
            email: account.dpo_email,
            phone: account.dpo_phone,
          };
          if (!contactPoint.name && !contactPoint.email && !contactPoint.phone) {
            throw new UnprocessableError(
              'contact_point_required',
              'Art. 33(3)(b): give a contactPoint, or set the DPO contact on the account.',
              [
                {
                  field: 'body.contactPoint',
                  code: 'contact_point_required',
                  message: 'no contactPoint given and the account has no DPO contact',
                },
              ],
            );
          }
        }
        const assessed = input.risk !== 'unassessed';
        const row = await insertIncident(trx, {
          account_id: accountId,
          status: assessed ? 'assessed' : 'open',
          title: input.title,
          description: input.description,
          kinds,
          occurred_at: occurredAt,
          aware_at: awareAt,
          authority_deadline_at: authorityDeadline(awareAt),
          risk: input.risk,
          risk_reason: input.riskReason ?? null,
          assessed_at: assessed ? now : null,
          data_categories: input.dataCategories ?? null,
          subject_categories: input.subjectCategories ?? null,
          approximate_subjects: input.approximateSubjects ?? null,
          approximate_records: input.approximateRecords ?? null,
          likely_consequences: input.likelyConsequences ?? null,
          measures_taken: input.measuresTaken ?? null,
          contact_point: contactPoint,
          created_at: now,
          updated_at: now,
        });
        const given = Object.keys(input).filter(
          (key) => (input as Record<string, unknown>)[key] !== undefined,
        );
        await audit(trx, ctx, accountId, row, 'created', [
          ...new Set([...given, 'awareAt', 'authorityDeadlineAt', 'contactPoint']),
        ]);
        await appendEvents(trx, accountId, [feedEvent('breach_incident.created', row)]);
        return row;
      });
    },

    /**
     * Changes the facts. `authorityDeadlineAt` follows `awareAt` only: a correction of
     * `awareAt` needs its reason, is kept with it, and moves the deadline in this transaction.
     */
    async update(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: PatchBreachIncidentInput,
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (current.status === 'closed') throw invalidTransition(current, 'changed');
        const changes: IncidentChanges = {};
        const changed: string[] = [];
        for (const [field, column] of Object.entries(PLAIN_FIELDS)) {
          const value = input[field as keyof typeof PLAIN_FIELDS];
          if (value !== undefined && value !== current[column]) {
            Object.assign(changes, { [column]: value });
            changed.push(field);
          }
        }
        const sameList = (a: readonly string[] | null, b: readonly string[] | null) =>
          JSON.stringify(a) === JSON.stringify(b);
        if (input.kinds !== undefined) {
          const kinds = [...new Set(input.kinds)];
          if (!sameList(kinds, current.kinds)) {
            changes.kinds = kinds;
            changed.push('kinds');
          }
        }
        if (
          input.dataCategories !== undefined &&
          !sameList(input.dataCategories, current.data_categories)
        ) {
          changes.data_categories = input.dataCategories;
          changed.push('dataCategories');
        }
        if (
          input.subjectCategories !== undefined &&
          !sameList(input.subjectCategories, current.subject_categories)
        ) {
          changes.subject_categories = input.subjectCategories;
          changed.push('subjectCategories');
        }
        if (input.contactPoint !== undefined) {
          const contactPoint = {
            name: input.contactPoint.name ?? null,
            email: input.contactPoint.email ?? null,
            phone: input.contactPoint.phone ?? null,
          };
          if (JSON.stringify(contactPoint) !== JSON.stringify(current.contact_point)) {
            changes.contact_point = contactPoint;
            changed.push('contactPoint');
          }
        }
        let occurredAt = current.occurred_at;
        if (input.occurredAt !== undefined) {
          occurredAt = input.occurredAt === null ? null : new Date(input.occurredAt);
          if (occurredAt) {
            const future = inFuture('body.occurredAt', occurredAt, now);
            if (future) throw future;
          }
          if (occurredAt?.getTime() !== current.occurred_at?.getTime()) {
            changes.occurred_at = occurredAt;
            changed.push('occurredAt');
          }
        }
        let awareAt = current.aware_at;
        if (input.awareAt !== undefined) {
          const corrected = new Date(input.awareAt);
          if (corrected.getTime() !== current.aware_at.getTime()) {
            const future = inFuture('body.awareAt', corrected, now);
            if (future) throw future;
            if (input.awareAtCorrectionReason === undefined) {
              throw new UnprocessableError(
                'correction_reason_required',
                'awareAt moves the 72-hour deadline: a correction needs its reason.',
                [
                  {
                    field: 'body.awareAtCorrectionReason',
                    code: 'correction_reason_required',
                    message: 'required to correct awareAt',
                  },
                ],
              );
            }
            awareAt = corrected;
            changes.aware_at = corrected;
            changes.authority_deadline_at = authorityDeadline(corrected);
            changes.aware_at_corrections = [
              ...(current.aware_at_corrections ?? []),
              {
                previousAwareAt: current.aware_at.toISOString(),
                awareAt: corrected.toISOString(),
                reason: input.awareAtCorrectionReason,
                correctedAt: now.toISOString(),
              },
            ];
            changed.push('awareAt', 'authorityDeadlineAt', 'awareAtCorrectionReason');
          }
        }
        if (occurredAt && occurredAt.getTime() > awareAt.getTime()) {
          throw occurredAfterAwareness(
            input.occurredAt !== undefined ? 'body.occurredAt' : 'body.awareAt',
          );
        }
        if (changed.length === 0) return current;
        const row = await updateIncident(trx, current, changes, now);
        await audit(
          trx,
          ctx,
          accountId,
          row,
          changes.aware_at ? 'aware_at_corrected' : 'updated',
          changed,
        );
        return row;
      });
    },

    /** Records the risk assessment and why (Art. 33(1): `none` needs no notification). */
    async assess(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: { risk: 'none' | 'risk' | 'high'; reason: string },
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (current.status === 'closed') throw invalidTransition(current, 'assessed');
        const row = await updateIncident(
          trx,
          current,
          {
            status: RANK[current.status] < RANK.assessed ? 'assessed' : current.status,
            risk: input.risk,
            risk_reason: input.reason,
            assessed_at: now,
          },
          now,
        );
        await audit(trx, ctx, accountId, row, 'assessed', ['status', 'risk', 'riskReason']);
        await appendEvents(trx, accountId, [feedEvent('breach_incident.assessed', row)]);
        return row;
      });
    },

    /**
     * Art. 33(4): appends a phase of the notification to the supervisory authority, in order.
     * A first phase after the deadline needs the reasons for the delay (Art. 33(1)) and is
     * kept marked late.
     */
    async notifyAuthority(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: NotificationInput,
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (current.status === 'closed') throw invalidTransition(current, 'notified');
        const notifiedAt = input.notifiedAt ? new Date(input.notifiedAt) : now;
        const future = inFuture('body.notifiedAt', notifiedAt, now);
        if (future) throw future;
        if (notifiedAt.getTime() < current.aware_at.getTime()) {
          throw new UnprocessableError(
            'notified_before_aware',
            'A notification cannot precede awareness of the breach.',
            [
              {
                field: 'body.notifiedAt',
                code: 'notified_before_aware',
                message: 'must not be before the incident’s awareAt',
              },
            ],
          );
        }
        const previous = await lastNotification(trx, accountId, id);
        if (previous && notifiedAt.getTime() < previous.notified_at.getTime()) {
          throw new UnprocessableError(
            'phase_out_of_order',
            `Phase ${previous.phase} was notified at ${previous.notified_at.toISOString()}; ` +
              'the next phase cannot come before it.',
            [
              {
                field: 'body.notifiedAt',
                code: 'phase_out_of_order',
                message: 'must not be before the previous phase',
              },
            ],
          );
        }
        const phase = (previous?.phase ?? 0) + 1;
        const late = phase === 1 && notifiedAt.getTime() > current.authority_deadline_at.getTime();
        if (late && input.delayReason === undefined) {
          throw new UnprocessableError(
            'delay_reason_required',
            `The first notification comes after the 72-hour deadline ` +
              `(${current.authority_deadline_at.toISOString()}): Art. 33(1) asks for the ` +
              'reasons for the delay.',
            [
              {
                field: 'body.delayReason',
                code: 'delay_reason_required',
                message: 'required for a notification after authorityDeadlineAt',
              },
            ],
          );
        }
        let authority = input.authority;
        if (authority === undefined) {
          const account = await findAccount(trx, accountId);
          authority = account?.supervisory_authority ?? undefined;
          if (!authority) {
            throw new UnprocessableError(
              'authority_required',
              'Name the authority, or set supervisoryAuthority on the account.',
              [
                {
                  field: 'body.authority',
                  code: 'authority_required',
                  message: 'no authority given and the account has no supervisoryAuthority',
                },
              ],
            );
          }
        }
        const notification = await insertNotification(trx, {
          account_id: accountId,
          incident_id: id,
          phase,
          notified_at: notifiedAt,
          authority,
          reference: input.reference ?? null,
          channel: input.channel ?? null,
          content: contentSnapshot(current, input.summary),
          delay_reason: input.delayReason ?? null,
          late,
          created_at: now,
        });
        const row = await updateIncident(
          trx,
          current,
          {
            status: 'notified',
            notification_count: phase,
            ...(phase === 1 ? { first_notified_at: notifiedAt, notified_late: late } : {}),
          },
          now,
        );
        await audit(trx, ctx, accountId, row, 'authority_notified', [
          'authorityNotifications',
          ...(phase === 1 ? ['status', 'authorityNotification.firstNotifiedAt'] : []),
          ...(input.delayReason !== undefined ? ['delayReason'] : []),
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('breach_incident.notified', row, {
            phase,
            notifiedAt: notifiedAt.toISOString(),
            late,
          }),
        ]);
        return { row, notification };
      });
    },

    /**
     * Closes the incident: after an authority notification, or at risk `none` with the reason
     * no notification was needed (the register keeps it, Art. 33(5)).
     */
    async close(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: CloseInput,
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (current.status === 'closed' || current.status === 'open') {
          throw invalidTransition(
            current,
            current.status === 'open' ? 'closed before it is assessed' : 'closed',
          );
        }
        const notified = current.notification_count > 0;
        if (!notified) {
          if (current.risk !== 'none') {
            throw new UnprocessableError(
              'notification_required',
              `At risk ${current.risk} the supervisory authority must be notified before the ` +
                'incident is closed (Art. 33(1)).',
              [
                {
                  field: 'body.noNotificationReason',
                  code: 'notification_required',
                  message: 'closing without a notification is only for risk none',
                },
              ],
            );
          }
          if (input.noNotificationReason === undefined) {
            throw new UnprocessableError(
              'no_notification_reason_required',
              'Closing without a notification needs the reason (Art. 33(5)).',
              [
                {
                  field: 'body.noNotificationReason',
                  code: 'no_notification_reason_required',
                  message: 'required to close without an authority notification',
                },
              ],
            );
          }
        }
        const row = await updateIncident(
          trx,
          current,
          {
            status: 'closed',
            closed_at: now,
            no_notification_reason: input.noNotificationReason ?? null,
            closing_summary: input.summary ?? null,
          },
          now,
        );
        await audit(trx, ctx, accountId, row, 'closed', [
          'status',
          ...(input.noNotificationReason !== undefined ? ['noNotificationReason'] : []),
          ...(input.summary !== undefined ? ['closingSummary'] : []),
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('breach_incident.closed', row, { notified }),
        ]);
        return row;
      });
    },
  };
}

/**
 * Art. 33(1) reminders, for the worker: `breach_incident.deadline_approaching` 24 and 6 hours
 * before the deadline of an incident not yet notified, `breach_incident.deadline_passed` after
 * it; each once per incident and threshold (the reminders table's key decides, also between
 * workers). Up to `limit` per sweep: the question across accounts answers ids, and each account's
 * reminders are then recorded and put on its feed in a transaction bound to it. Returns how many
 * were put on the feed.
 */
export async function sendBreachDeadlineReminders(
  db: Kysely<DB>,
  clock: Clock,
  limit = 500,
): Promise<number> {
  const now = clock.now();
  const due = await incidentIdsDueForReminder(db, now, limit);
  return sumOverAccounts(due, (accountId, ids) =>
    db.transaction().execute(async (trx) => {
      const rows = await incidentsDueForReminder(trx, accountId, ids, now);
      const fresh = await insertReminders(
        trx,
        rows.map((row) => ({
          account_id: accountId,
          incident_id: row.id,
          threshold: row.threshold,
          sent_at: now,
        })),
      );
      const recorded = new Set(fresh.map((r) => `${r.incident_id}/${r.threshold}`));
      const events = rows
        .filter((row) => recorded.has(`${row.id}/${row.threshold}`))
        .map((row) =>
          row.threshold === 'passed'
            ? feedEvent('breach_incident.deadline_passed', row)
            : feedEvent('breach_incident.deadline_approaching', row, {
                threshold: row.threshold,
                hoursRemaining: hoursRemaining(row, now),
              }),
        );
      if (events.length > 0) await appendEvents(trx, accountId, events);
      return events.length;
    }),
  );
}

function groupByIncident(rows: BreachAuthorityNotificationRow[]) {
  const byIncident = new Map<string, BreachAuthorityNotificationRow[]>();
  for (const row of rows) {
    const list = byIncident.get(row.incident_id);
    if (list) list.push(row);
    else byIncident.set(row.incident_id, [row]);
  }
  return byIncident;
}

export type BreachIncidentsService = ReturnType<typeof createBreachIncidentsService>;
