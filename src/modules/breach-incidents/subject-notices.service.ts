import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { BreachIncidentRow, DB, SubjectNoticeStatus } from '../../db/schema.js';
import {
  ConflictError,
  type FieldError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
  ValidationError,
} from '../../errors.js';
import { canonicalJson } from '../../lib/canonical-json.js';
import type { Clock } from '../../lib/clock.js';
import { recordAudit } from '../audit/audit.service.js';
import { findImportJob } from '../contact-imports/contact-imports.service.js';
import {
  contactAddresses,
  contactIdsPage,
  contactListFilter,
} from '../contacts/contacts.service.js';
import { appendEvents } from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import { findIncident, lockIncident, updateIncident } from './breach-incidents.repository.js';
import { feedEvent } from './breach-incidents.service.js';
import {
  batchNoticeCount,
  findBatch,
  insertBatch,
  insertNotices,
  lockNotices,
  noticesPage,
  reportNotice,
} from './subject-notices.repository.js';
import {
  type DeliveryReportsInput,
  type ExemptionInput,
  NOTICE_TEXT_FIELDS,
  type SubjectNoticesInput,
} from './subject-notices.schemas.js';

/** Contacts read and notices written per statement while a selection is walked. */
const SELECTION_PAGE = 1000;

/** A time a little ahead of our clock is a clock difference, not a report from the future. */
const CLOCK_SKEW_MS = 5 * 60_000;

function notFound() {
  return new NotFoundError('The breach incident does not exist.');
}

function inFuture(field: string, at: Date, now: Date) {
  return at.getTime() > now.getTime() + CLOCK_SKEW_MS
    ? new ValidationError([{ field, code: 'in_future', message: 'must not be in the future' }])
    : undefined;
}

/** SHA-256 (hex) of the text as stored: the UTF-8 canonical JSON of its four parts. */
export function noticeTextSha256(text: Record<(typeof NOTICE_TEXT_FIELDS)[number], string>) {
  return createHash('sha256').update(canonicalJson(text), 'utf8').digest('hex');
}

/** Which delivery reports may follow which status: `delivered` is final. */
const NEXT: Record<SubjectNoticeStatus, readonly SubjectNoticeStatus[]> = {
  pending: ['delivered', 'failed'],
  failed: ['delivered', 'failed'],
  delivered: ['delivered'],
};

/**
 * Art. 34: telling the people affected by a breach at high risk, unless an Art. 34(3) ground
 * applies. A batch keeps its text once with its SHA-256 and holds one `breach_notice` per
 * selected person; the customer's sender reads the pending ones and reports each delivery.
 * Every change is audited on the incident and put on the feed in its transaction.
 */
export function createSubjectNoticesService(deps: { db: Kysely<DB>; clock: Clock }) {
  const { db, clock } = deps;

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
    if (row.status === 'closed') {
      throw new ConflictError('invalid_transition', 'The incident is closed.');
    }
    return row;
  }

  async function audit(
    trx: Transaction<DB>,
    ctx: RequestContext,
    row: BreachIncidentRow,
    action: string,
    changedFields: string[],
  ) {
    await recordAudit(trx, ctx, {
      accountId: row.account_id,
      action: `breach_incident.${action}`,
      entityType: 'breach_incident',
      entityId: row.id,
      changedFields,
    });
  }

  /** The contact ids a selection names, a page at a time, in id order. */
  function selectionFilter(selection: SubjectNoticesInput['selection']) {
    if (selection.type === 'contacts') return { ids: [...new Set(selection.contactIds)] };
    if (selection.type === 'filter') return contactListFilter(selection.filter);
    if (selection.type === 'import') return { importId: selection.importId };
    return {};
  }

  /** A selection by import names an import of the account that has stopped writing. */
  async function checkImport(trx: Transaction<DB>, accountId: string, importId: string) {
    const job = await findImportJob(trx, accountId, importId);
    if (!job) {
      throw new UnprocessableError('import_not_found', 'The selected import does not exist.', [
        {
          field: 'body.selection.importId',
          code: 'import_not_found',
          message: 'no such import in this account',
        },
      ]);
    }
    if (job.status === 'running') {
      throw new ConflictError(
        'import_running',
        'The selected import is still writing contacts: the batch would miss the rest of its ' +
          'file. Select it once it has completed, failed or been interrupted.',
      );
    }
  }

  return {
    /** Art. 34(3): records why the people need not be told one by one. */
    async recordExemption(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: ExemptionInput,
      expectedVersion?: number,
    ) {
      const now = clock.now();
      if (input.ground === 'disproportionate_effort' && !input.publicCommunication) {
        throw new UnprocessableError(
          'public_communication_required',
          'Art. 34(3)(c): with disproportionate effort, a public communication informs the ' +
            'people instead; record where and when.',
          [
            {
              field: 'body.publicCommunication',
              code: 'public_communication_required',
              message: 'required for the ground disproportionate_effort',
            },
          ],
        );
      }
      if (input.publicCommunication) {
        const future = inFuture(
          'body.publicCommunication.publishedAt',
          new Date(input.publicCommunication.publishedAt),
          now,
        );
        if (future) throw future;
      }
      return db.transaction().execute(async (trx) => {
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        const row = await updateIncident(
          trx,
          current,
          {
            subject_notice_exemption: {
              ground: input.ground,
              explanation: input.explanation,
              publicCommunication: input.publicCommunication
                ? {
                    url: input.publicCommunication.url,
                    publishedAt: new Date(input.publicCommunication.publishedAt).toISOString(),
                  }
                : null,
              recordedAt: now.toISOString(),
            },
          },
          now,
        );
        await audit(trx, ctx, row, 'subject_notice_exemption_recorded', ['subjectNoticeExemption']);
        await appendEvents(trx, accountId, [
          feedEvent('breach_incident.subject_notice_exemption_recorded', row, {
            ground: input.ground,
          }),
        ]);
        return row;
      });
    },

    /**
     * Art. 34(1), (2): one batch of notices, one per selected person, its text stored once with
     * its SHA-256. Only at risk `high` and without an Art. 34(3) exemption.
     */
    async createNotices(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: SubjectNoticesInput,
    ) {
      const missing: FieldError[] = NOTICE_TEXT_FIELDS.filter((f) => !input.text[f]).map((f) => ({
        field: `body.text.${f}`,
        code: 'required',
        message: 'Art. 34(2): the notice must say this',
      }));
      if (missing.length > 0) {
        throw new UnprocessableError(
          'notice_text_incomplete',
          'Art. 34(2): the notice describes the nature of the breach, the contact point, the ' +
            'likely consequences and the measures; some are missing.',
          missing,
        );
      }
      const text = {
        nature: input.text.nature!,
        contactPoint: input.text.contactPoint!,
        consequences: input.text.consequences!,
        measures: input.text.measures!,
      };
      const now = clock.now();
      return db.transaction().execute(async (trx) => {
        const incident = await lockForChange(trx, accountId, id, undefined);
        if (incident.risk !== 'high') {
          throw new ConflictError(
            'subject_notice_not_required',
            `Art. 34(1): the people are told at high risk; the incident's risk is ` +
              `${incident.risk}. Assess it first.`,
          );
        }
        if (incident.subject_notice_exemption) {
          throw new ConflictError(
            'subject_notice_exempted',
            `An Art. 34(3) ground is recorded (${incident.subject_notice_exemption.ground}): ` +
              'the people are not told one by one.',
          );
        }
        const filter = selectionFilter(input.selection);
        if (input.selection.type === 'import') {
          await checkImport(trx, accountId, input.selection.importId);
        }
        if (input.selection.type === 'contacts') {
          const wanted = input.selection.contactIds;
          const found = new Set(
            await contactIdsPage(trx, accountId, { ids: wanted }, undefined, wanted.length),
          );
          const unknown = wanted.flatMap((contactId, i) =>
            found.has(contactId)
              ? []
              : [
                  {
                    field: `body.selection.contactIds.${i}`,
                    code: 'contact_not_found',
                    message: 'no such contact in this account',
                  },
                ],
          );
          if (unknown.length > 0) {
            throw new UnprocessableError(
              'contact_not_found',
              'Some selected contacts do not exist (or were erased).',
              unknown,
            );
          }
        }
        const batch = await insertBatch(trx, {
          account_id: accountId,
          incident_id: id,
          selection: input.selection,
          nature: text.nature,
          contact_point: text.contactPoint,
          consequences: text.consequences,
          measures: text.measures,
          text_sha256: noticeTextSha256(text),
          created_at: now,
        });
        let count = 0;
        let after: string | undefined;
        for (;;) {
          const ids = await contactIdsPage(trx, accountId, filter, after, SELECTION_PAGE);
          count += await insertNotices(trx, batch, ids, now);
          if (ids.length < SELECTION_PAGE) break;
          after = ids[ids.length - 1];
        }
        if (count === 0) {
          throw new UnprocessableError(
            'no_contacts_selected',
            'The selection names no contact: nobody would be told.',
            [{ field: 'body.selection', code: 'no_contacts_selected', message: 'selects nobody' }],
          );
        }
        await audit(trx, ctx, incident, 'subject_notices_created', ['subjectNotices']);
        await appendEvents(trx, accountId, [
          feedEvent('breach_incident.subject_notices_ready', incident, {
            batchId: batch.id,
            noticeCount: count,
            textSha256: batch.text_sha256,
          }),
        ]);
        return { batch, noticeCount: count };
      });
    },

    async batch(accountId: string, id: string, batchId: string) {
      const batch = await findBatch(db, accountId, id, batchId);
      if (!batch) throw new NotFoundError('The notice batch does not exist.');
      return { batch, noticeCount: await batchNoticeCount(db, accountId, batchId) };
    },

    /** One page of the incident's notices with where to reach each person (for the sender). */
    async list(
      accountId: string,
      id: string,
      query: {
        limit: number;
        cursor?: string | undefined;
        status?: SubjectNoticeStatus | undefined;
      },
    ) {
      // The page first: a cursor this list did not issue is a 400 before anything else.
      const page = await noticesPage(db, accountId, id, query);
      if (!(await findIncident(db, accountId, id))) throw notFound();
      const addresses = new Map(
        (
          await contactAddresses(
            db,
            accountId,
            page.rows.map((row) => row.contact_id),
          )
        ).map((contact) => [contact.id, contact]),
      );
      return {
        rows: page.rows.flatMap((row) => {
          const contact = addresses.get(row.contact_id);
          return contact ? [{ row, contact }] : [];
        }),
        nextCursor: page.nextCursor,
      };
    },

    /**
     * The sender's delivery reports, all or none: `pending` or `failed` → `delivered` or
     * `failed`; `delivered` is final (a repeat of it is accepted and changes nothing).
     */
    async reportDeliveries(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: DeliveryReportsInput,
    ) {
      const now = clock.now();
      const errors: FieldError[] = [];
      const seen = new Set<string>();
      input.reports.forEach((report, i) => {
        if (seen.has(report.noticeId)) {
          errors.push({
            field: `body.reports.${i}.noticeId`,
            code: 'duplicate_notice',
            message: 'the notice is reported twice in this request',
          });
        }
        seen.add(report.noticeId);
        if (report.at && new Date(report.at).getTime() > now.getTime() + CLOCK_SKEW_MS) {
          errors.push({
            field: `body.reports.${i}.at`,
            code: 'in_future',
            message: 'must not be in the future',
          });
        }
        if (report.status === 'delivered' && report.reason !== undefined) {
          errors.push({
            field: `body.reports.${i}.reason`,
            code: 'reason_for_failure_only',
            message: 'a reason goes with a failed delivery only',
          });
        }
      });
      if (errors.length > 0) throw new ValidationError(errors);
      return db.transaction().execute(async (trx) => {
        const incident = await findIncident(trx, accountId, id);
        if (!incident) throw notFound();
        const notices = new Map(
          (
            await lockNotices(
              trx,
              accountId,
              id,
              input.reports.map((r) => r.noticeId),
            )
          ).map((row) => [row.id, row]),
        );
        let updated = 0;
        let unchanged = 0;
        const unknown: FieldError[] = [];
        const refused: FieldError[] = [];
        input.reports.forEach((report, i) => {
          const notice = notices.get(report.noticeId);
          if (!notice) {
            unknown.push({
              field: `body.reports.${i}.noticeId`,
              code: 'notice_not_found',
              message: 'no such notice of this incident',
            });
          } else if (!NEXT[notice.status].includes(report.status)) {
            refused.push({
              field: `body.reports.${i}.status`,
              code: 'invalid_transition',
              message: `the notice is ${notice.status} already`,
            });
          }
        });
        if (unknown.length > 0) {
          throw new UnprocessableError('notice_not_found', 'Some notices do not exist.', unknown);
        }
        if (refused.length > 0) {
          throw new UnprocessableError(
            'invalid_transition',
            'A delivered notice cannot be reported failed.',
            refused,
          );
        }
        for (const report of input.reports) {
          const notice = notices.get(report.noticeId)!;
          if (notice.status === 'delivered' && report.status === 'delivered') {
            unchanged++;
            continue;
          }
          await reportNotice(trx, accountId, notice.id, {
            status: report.status,
            reported_at: report.at ? new Date(report.at) : now,
            failure_reason: report.status === 'failed' ? (report.reason ?? null) : null,
            updated_at: now,
          });
          updated++;
        }
        if (updated > 0) {
          await audit(trx, ctx, incident, 'subject_notice_deliveries_reported', [
            'subjectNotices.status',
          ]);
        }
        return { updated, unchanged };
      });
    },
  };
}

export type SubjectNoticesService = ReturnType<typeof createSubjectNoticesService>;
