import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { pageByCreatedAt, pageByDueDate } from '../../db/keyset.js';
import type { DataSubjectRequestRow, DB } from '../../db/schema.js';
import {
  accountOf,
  allAccounts,
  inAccountOf,
  sumOverAccounts,
  withTenant,
} from '../../db/tenant.js';
import {
  AppError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
  ValidationError,
} from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { type ExportProtection, encryptExport } from '../../lib/export-encryption.js';
import { emailFingerprint } from '../../lib/keyed-hash.js';
import { linkSealer } from '../../lib/link-sealing.js';
import {
  assertRedeemable,
  linkTokenHash,
  newLinkToken,
  TokenInvalidError,
  TokenUsedError,
} from '../../lib/link-tokens.js';
import { findAccount } from '../accounts/accounts.service.js';
import { entityAuditTrail, recordAudit, recordSubjectAudit } from '../audit/audit.service.js';
import type { ConsentsService } from '../consents/consents.service.js';
import { currentConsentEvents, deriveState } from '../consents/consents.service.js';
import type { ContactsService } from '../contacts/contacts.service.js';
import { findContactRef, findContactsByEmail } from '../contacts/contacts.service.js';
import {
  appendEvents,
  type EventType,
  type NewEvent,
  storedRequestLink,
} from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import { purposeLookups } from '../purposes/purposes.service.js';
import { suppress } from '../suppressions/suppressions.service.js';
import {
  dropExpiredExports,
  findRequest,
  findRequestByExternalId,
  findVerificationToken,
  forgetSubjectPlaintext,
  insertRequest,
  insertRequestReminders,
  insertVerificationToken,
  isDuplicateExternalId,
  lockRequest,
  lockVerificationToken,
  markVerificationTokenUsed,
  type RequestChanges,
  type RequestListFilter,
  requestIdsDueForReminder,
  requestsDueForReminder,
  requestsOfContact,
  requestsQuery,
  revokeVerificationTokens,
  updateRequest,
} from './data-subject-requests.repository.js';
import {
  type CompleteInput,
  type CreateRequestInput,
  OPEN_STATUSES,
  type REJECTION_BASES,
  type VerifyIdentityInput,
} from './data-subject-requests.schemas.js';
import { computeDeadline, daysRemaining, extensionAllowed, isOverdue } from './deadlines.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** A receipt a little ahead of our clock is a clock difference, not a request from the future. */
const RECEIPT_CLOCK_SKEW_MS = 5 * 60_000;

export const VERIFICATION_LINK_PATH = '/v1/public/data-subject-request-verifications/';

/** Art. 19: the actions whose recipients must be told. */
const RECIPIENT_ACTIONS = new Set(['rectification', 'erasure', 'restriction']);

/** The permission the action of each request type needs, beyond `requests:write`. */
export const COMPLETION_PERMISSION = {
  access: 'contacts:read',
  portability: 'contacts:read',
  rectification: 'contacts:write',
  erasure: 'contacts:write',
  restriction: 'contacts:write',
  objection: 'consents:write',
} as const;

function notFound() {
  return new NotFoundError('The data-subject request does not exist.');
}

function invalidTransition(row: DataSubjectRequestRow, action: string) {
  return new ConflictError(
    'invalid_transition',
    `The request is ${row.status}: it cannot be ${action}.`,
  );
}

/**
 * Refuses a verification link whose request no longer waits for it (verified another way, or
 * decided): as a used link, so the subject's page says no more than that.
 */
function assertAwaitingVerification(
  row: DataSubjectRequestRow | undefined,
): asserts row is DataSubjectRequestRow {
  if (row?.status !== 'received') throw new TokenUsedError();
}

/** What the page of a verification link shows, and what a POST of the link would run into. */
export interface VerificationLinkView {
  /** The contact's language tag, when the request is matched to a contact that has one. */
  language: string | null;
  /** What the subject confirms; null when the link cannot act. */
  request: {
    type: DataSubjectRequestRow['type'];
    receivedAt: Date;
    /** The zone the request was received in: its local day of receipt. */
    timeZone: string;
    /** The controller: the account's name. */
    controllerName: string | null;
  } | null;
  /** What a POST would fail with now; null when it would act. */
  refusal: AppError | null;
}

function isOpen(row: DataSubjectRequestRow): boolean {
  return (OPEN_STATUSES as readonly string[]).includes(row.status);
}

/** The plaintext about the person a decided request no longer needs (Art. 5(1)(c), (e)). */
const PLAINTEXT_CLEARED: RequestChanges = {
  subject_email: null,
  subject_customer_id: null,
  notes: null,
  identity_evidence: null,
  corrections: null,
};

export interface RequestsDeps {
  /** How often stored exports past their time are dropped (0: never; tests call the sweep). */
  exportSweepIntervalMs?: number;
  db: Kysely<DB>;
  hashSecret: string;
  clock: Clock;
  contacts: Pick<
    ContactsService,
    'eraseInTrx' | 'erased' | 'restrictInTrx' | 'updateInTrx' | 'exportDataInTrx'
  >;
  consents: Pick<ConsentsService, 'recordIn'>;
  verificationTtlHours: number;
  exportTtlDays: number;
}

/**
 * Data-subject requests (Art. 12–21): received, verified, extended once, then completed by
 * performing the action through the contacts and consents services in the request's own
 * transaction, or refused with reasons. Every transition is audited and put on the feed in
 * the transaction that makes it; every date comes from the clock.
 */
export function createDataSubjectRequestsService(deps: RequestsDeps) {
  const { db, hashSecret, clock } = deps;
  const sealer = linkSealer(hashSecret);

  async function get(accountId: string, id: string): Promise<DataSubjectRequestRow> {
    const row = await findRequest(db, accountId, id);
    if (!row) throw notFound();
    return row;
  }

  /** Locks the request; 404 when absent, 412 when `If-Match` names another version. */
  async function lockForChange(
    trx: Transaction<DB>,
    accountId: string,
    id: string,
    expectedVersion: number | undefined,
  ): Promise<DataSubjectRequestRow> {
    const row = await lockRequest(trx, accountId, id);
    if (!row) throw notFound();
    if (expectedVersion !== undefined && row.version !== expectedVersion) {
      throw new PreconditionFailedError();
    }
    return row;
  }

  /** The feed event of a transition: ids and dates only, never an address (Art. 5(1)(c)). */
  function feedEvent(
    type: EventType,
    row: DataSubjectRequestRow,
    extra: Record<string, unknown> = {},
  ) {
    return {
      type,
      // Not tied to the contact: the request's events must outlive an erasure.
      contactId: null,
      data: {
        requestId: row.id,
        requestType: row.type,
        status: row.status,
        contactId: row.contact_id,
        dueDate: row.due_date,
        dueAt: row.due_at.toISOString(),
        ...(row.external_id !== null ? { externalId: row.external_id } : {}),
        ...extra,
      },
    };
  }

  async function audit(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    row: DataSubjectRequestRow,
    action: string,
    changedFields: string[],
  ) {
    await recordAudit(trx, ctx, {
      accountId,
      action: `data_subject_request.${action}`,
      entityType: 'data_subject_request',
      entityId: row.id,
      changedFields,
    });
  }

  /** Decides the request: status, time, lateness, and the plaintext it no longer needs. */
  function decision(
    row: DataSubjectRequestRow,
    status: 'completed' | 'rejected' | 'cancelled',
    now: Date,
  ): RequestChanges {
    return {
      ...PLAINTEXT_CLEARED,
      status,
      decided_at: now,
      decided_late: isOverdue(row.due_at, now),
    };
  }

  async function resolveContact(
    trx: Transaction<DB>,
    accountId: string,
    row: Pick<DataSubjectRequestRow, 'contact_id' | 'subject_email'>,
  ): Promise<string | null> {
    if (row.contact_id) {
      return (await findContactRef(trx, accountId, row.contact_id)) ? row.contact_id : null;
    }
    if (!row.subject_email) return null;
    const [found] = await findContactsByEmail(trx, accountId, [row.subject_email]);
    return found?.id ?? null;
  }

  /** Art. 15(1)(a)–(h): what the controller must tell besides the data itself. */
  async function accessFacts(trx: Transaction<DB>, accountId: string, contactId: string) {
    const account = await findAccount(trx, accountId);
    const current = await currentConsentEvents(trx, accountId, contactId);
    const purposes = await purposeLookups.all(trx, accountId);
    const byId = new Map(purposes.map((p) => [p.id, p]));
    return {
      controller: {
        name: account?.name ?? null,
        dataProtectionOfficer: account
          ? { name: account.dpo_name, email: account.dpo_email, phone: account.dpo_phone }
          : null,
      },
      purposes: current.map((row) => ({
        purposeId: row.purpose_id,
        name: byId.get(row.purpose_id)?.name ?? null,
        category: byId.get(row.purpose_id)?.category ?? null,
        legalBasis: row.legal_basis,
        state: deriveState(row.event, row.method),
        source: row.method,
      })),
      recipients: 'The controller’s email service provider (processor, Art. 28).',
      retention: 'Kept while a consent or another legal basis lasts; erased on request (Art. 17).',
      rights: [
        'access (Art. 15)',
        'rectification (Art. 16)',
        'erasure (Art. 17)',
        'restriction (Art. 18)',
        'portability (Art. 20)',
        'objection (Art. 21)',
        'withdraw consent at any time (Art. 7(3))',
        'lodge a complaint with a supervisory authority (Art. 77)',
      ],
    };
  }

  // A verification link names no account: an owner-defined function finds the token's, and
  // the work acts for it (row-level security shows nothing before an account is bound).
  const forRequestToken = <T>(token: string, fn: () => Promise<T>) =>
    inAccountOf(async () => {
      const hash = linkTokenHash(token);
      return hash ? accountOf(db, 'account_of_request_token', hash) : null;
    }, fn);

  let sweepTimer: NodeJS.Timeout | undefined;

  const service = {
    get,

    /** Drops stored exports past REQUEST_EXPORT_TTL_DAYS, in every account. */
    // Across accounts: each account's expired exports, bound to it.
    sweepExpiredExports: async () => {
      let dropped = 0;
      for (const accountId of await allAccounts(db)) {
        dropped += await withTenant(accountId, () => dropExpiredExports(db, clock.now()));
      }
      return dropped;
    },

    /** Runs the export sweep every `exportSweepIntervalMs` until {@link stopSweeping}. */
    startSweeping(log: { warn: (obj: object, msg: string) => void }) {
      const every = deps.exportSweepIntervalMs ?? 0;
      if (every <= 0 || sweepTimer) return;
      sweepTimer = setInterval(() => {
        service.sweepExpiredExports().catch((err) => log.warn({ err }, 'export sweep failed'));
      }, every);
      sweepTimer.unref();
    },
    stopSweeping() {
      if (sweepTimer) clearInterval(sweepTimer);
      sweepTimer = undefined;
    },

    async list(
      accountId: string,
      query: {
        limit: number;
        cursor?: string | undefined;
        sort: 'createdAt' | 'dueAt';
        status?: RequestListFilter['status'];
        type?: RequestListFilter['type'];
        overdue?: 'true' | 'false' | undefined;
        dueBefore?: string | undefined;
        contactId?: string | undefined;
      },
    ) {
      const filtered = requestsQuery(db, accountId, {
        status: query.status,
        type: query.type,
        contactId: query.contactId,
        dueBefore: query.dueBefore ? new Date(query.dueBefore) : undefined,
        overdue: query.overdue ? { value: query.overdue === 'true', now: clock.now() } : undefined,
      });
      return query.sort === 'dueAt'
        ? pageByDueDate(filtered, query)
        : pageByCreatedAt(filtered, query);
    },

    /** The request's history: its own audit entries (no second history table). */
    async timeline(accountId: string, id: string) {
      await get(accountId, id);
      return entityAuditTrail(db, accountId, { type: 'data_subject_request', id });
    },

    /** Art. 12(3): records a request and its due date, counted from the receipt. */
    async create(ctx: RequestContext, accountId: string, input: CreateRequestInput) {
      const now = clock.now();
      const receivedAt = input.receivedAt ? new Date(input.receivedAt) : now;
      if (receivedAt.getTime() > now.getTime() + RECEIPT_CLOCK_SKEW_MS) {
        throw new ValidationError([
          { field: 'body.receivedAt', code: 'in_future', message: 'must not be in the future' },
        ]);
      }
      try {
        return await db.transaction().execute(async (trx) => {
          if (
            input.externalId &&
            (await findRequestByExternalId(trx, accountId, input.externalId))
          ) {
            throw requestExists();
          }
          const account = await findAccount(trx, accountId);
          if (!account) throw new Error(`account ${accountId} does not exist`);
          let contactId: string | null = null;
          if (input.contactId) {
            if (!(await findContactRef(trx, accountId, input.contactId))) {
              throw new UnprocessableError('unknown_contact', 'No contact has this id.', [
                { field: 'body.contactId', code: 'unknown_contact', message: 'no such contact' },
              ]);
            }
            contactId = input.contactId;
          } else {
            contactId = await resolveContact(trx, accountId, {
              contact_id: null,
              subject_email: input.subject.email,
            });
          }
          if (input.purposeIds) {
            const unique = [...new Set(input.purposeIds)];
            const known = await purposeLookups.summaries(trx, accountId, unique);
            if (known.length !== unique.length) {
              throw new UnprocessableError('unknown_purpose', 'A named purpose does not exist.', [
                { field: 'body.purposeIds', code: 'unknown_purpose', message: 'no such purpose' },
              ]);
            }
          }
          const deadline = computeDeadline({
            receivedAt,
            timeZone: account.time_zone,
            holidayCountry: account.holiday_country,
          });
          const row = await insertRequest(trx, {
            account_id: accountId,
            type: input.type,
            status: 'received',
            external_id: input.externalId ?? null,
            channel: input.channel ?? null,
            contact_id: contactId,
            subject_email: input.subject.email,
            subject_email_hash: emailFingerprint(hashSecret, input.subject.email),
            subject_customer_id: input.subject.customerId ?? null,
            notes: input.notes ?? null,
            purpose_ids: input.purposeIds ? [...new Set(input.purposeIds)] : null,
            corrections: input.corrections
              ? (input.corrections as Record<string, string | null>)
              : null,
            received_at: receivedAt,
            time_zone: deadline.timeZone,
            holiday_country: deadline.holidayCountry,
            calendar: deadline.calendar,
            due_date: deadline.dueDate,
            due_at: deadline.dueAt,
            original_due_at: deadline.dueAt,
            created_at: now,
            updated_at: now,
          });
          await audit(trx, ctx, accountId, row, 'received', [
            'type',
            'subject.email',
            ...(input.subject.customerId ? ['subject.customerId'] : []),
            ...(input.externalId ? ['externalId'] : []),
            ...(input.channel ? ['channel'] : []),
            ...(input.notes ? ['notes'] : []),
            ...(input.purposeIds ? ['purposeIds'] : []),
            ...(input.corrections ? ['corrections'] : []),
            'receivedAt',
            'dueAt',
          ]);
          await appendEvents(trx, accountId, [feedEvent('data_subject_request.received', row)]);
          return row;
        });
      } catch (err) {
        // Two creations with one externalId racing: the unique index decides.
        if (isDuplicateExternalId(err)) throw requestExists();
        throw err;
      }
    },

    /**
     * Art. 12(6): confirms who asked. `manual` records how it was checked; `link` issues a
     * single-use link (only its hash stored) that the customer's systems send the subject,
     * from the feed; the subject's page posts it to the public verification endpoint.
     */
    async verifyIdentity(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: VerifyIdentityInput,
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (current.status !== 'received') throw invalidTransition(current, 'verified');
        if (input.method === 'manual') {
          const row = await updateRequest(
            trx,
            current,
            {
              status: 'identity_verified',
              identity_verified_at: now,
              identity_method: 'manual',
              identity_evidence: input.evidence,
            },
            now,
          );
          await revokeVerificationTokens(trx, accountId, id, now);
          await audit(trx, ctx, accountId, row, 'identity_verified', [
            'status',
            'identity.method',
            'identity.evidence',
          ]);
          await appendEvents(trx, accountId, [
            feedEvent('data_subject_request.identity_verified', row, { method: 'manual' }),
          ]);
          return { row, link: null };
        }
        // A new link replaces any earlier one.
        await revokeVerificationTokens(trx, accountId, id, now);
        const { token, hash } = newLinkToken();
        const expiresAt = new Date(now.getTime() + deps.verificationTtlHours * HOUR_MS);
        await insertVerificationToken(trx, {
          tokenHash: hash,
          accountId,
          requestId: id,
          expiresAt,
          now,
        });
        const row = await updateRequest(trx, current, { verification_requested_at: now }, now);
        const link = { url: VERIFICATION_LINK_PATH + token, expiresAt: expiresAt.toISOString() };
        await audit(trx, ctx, accountId, row, 'identity_verification_requested', [
          'identity.verificationRequestedAt',
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('data_subject_request.identity_verification_requested', row, {
            verification: storedRequestLink(sealer, accountId, id, link),
          }),
        ]);
        return { row, link: { token, ...link } };
      });
    },

    /**
     * What the page of a verification link shows, and whether a POST would act, without
     * changing anything: opening the link (as a mail scanner does) verifies nothing. Only what
     * the subject needs to recognise their request: its type, the controller, the day it was
     * received; nothing of the subject. Takes no lock.
     */
    async verificationView(token: string): Promise<VerificationLinkView> {
      return forRequestToken(token, async () => {
        const tokenHash = linkTokenHash(token);
        const link = tokenHash ? await findVerificationToken(db, tokenHash) : undefined;
        const row = link && (await findRequest(db, link.account_id, link.request_id));
        if (!link || !row)
          return { language: null, request: null, refusal: new TokenInvalidError() };
        const contact = row.contact_id
          ? await findContactRef(db, row.account_id, row.contact_id)
          : undefined;
        const language = contact?.language ?? null;
        try {
          assertRedeemable(link, clock.now());
          assertAwaitingVerification(row);
        } catch (err) {
          if (err instanceof AppError) return { language, request: null, refusal: err };
          throw err;
        }
        const account = await findAccount(db, row.account_id);
        return {
          language,
          request: {
            type: row.type,
            receivedAt: row.received_at,
            timeZone: row.time_zone,
            controllerName: account?.name ?? null,
          },
          refusal: null,
        };
      });
    },

    /** The subject follows the verification link (public; audited without an IP). */
    async verifyByLink(token: string, requestId: string) {
      return forRequestToken(token, async () => {
        const tokenHash = linkTokenHash(token);
        if (!tokenHash) throw new TokenInvalidError();
        return db.transaction().execute(async (trx) => {
          const now = clock.now();
          const link = await lockVerificationToken(trx, tokenHash);
          assertRedeemable(link, now);
          const current = await lockRequest(trx, link.account_id, link.request_id);
          assertAwaitingVerification(current);
          await markVerificationTokenUsed(trx, tokenHash, now);
          const row = await updateRequest(
            trx,
            current,
            { status: 'identity_verified', identity_verified_at: now, identity_method: 'link' },
            now,
          );
          await recordSubjectAudit(trx, {
            accountId: row.account_id,
            requestId,
            action: 'data_subject_request.identity_verified',
            entityType: 'data_subject_request',
            entityId: row.id,
            changedFields: ['status', 'identity.method'],
          });
          await appendEvents(trx, row.account_id, [
            feedEvent('data_subject_request.identity_verified', row, { method: 'link' }),
          ]);
          return row;
        });
      });
    },

    /**
     * Art. 12(3): extends the deadline once, by one or two months counted again from the
     * receipt, while the request is open and no later than the original due time (the subject
     * must be told within the first month, with reasons).
     */
    async extend(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: { months: 1 | 2; reason: string; subjectInformedAt?: string | undefined },
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (!isOpen(current)) throw invalidTransition(current, 'extended');
        if (current.extension_months !== null) {
          throw new ConflictError(
            'already_extended',
            'The deadline was extended already; Art. 12(3) allows one extension.',
          );
        }
        if (!extensionAllowed(current.original_due_at, now)) {
          throw new ConflictError(
            'extension_too_late',
            'The original deadline has passed; an extension must be decided within it.',
          );
        }
        const deadline = computeDeadline({
          receivedAt: current.received_at,
          timeZone: current.time_zone,
          holidayCountry: current.holiday_country,
          extensionMonths: input.months,
        });
        const row = await updateRequest(
          trx,
          current,
          {
            due_date: deadline.dueDate,
            due_at: deadline.dueAt,
            extension_months: input.months,
            extension_reason: input.reason,
            extended_at: now,
            subject_informed_at: input.subjectInformedAt ? new Date(input.subjectInformedAt) : null,
          },
          now,
        );
        await audit(trx, ctx, accountId, row, 'extended', [
          'extension.months',
          'extension.reason',
          'dueAt',
          ...(input.subjectInformedAt ? ['extension.subjectInformedAt'] : []),
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('data_subject_request.extended', row, {
            months: input.months,
            subjectMustBeInformedBy: current.original_due_at.toISOString(),
          }),
        ]);
        return row;
      });
    },

    /**
     * Art. 12(4): refuses with reasons, having told the subject of the right to complain. An
     * objection to direct marketing cannot be refused (Art. 21(3)).
     */
    async reject(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: { reason: string; basis: (typeof REJECTION_BASES)[number] },
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (!isOpen(current)) throw invalidTransition(current, 'rejected');
        if (current.type === 'objection') {
          const named = current.purpose_ids;
          const purposes = named
            ? await purposeLookups.summaries(trx, accountId, named)
            : await purposeLookups.all(trx, accountId);
          if (purposes.some((purpose) => purpose.category.toLowerCase() === 'marketing')) {
            throw new ConflictError(
              'objection_absolute',
              'An objection to direct marketing must be followed (Art. 21(3)); it cannot be ' +
                'refused.',
            );
          }
        }
        const row = await updateRequest(
          trx,
          current,
          {
            ...decision(current, 'rejected', now),
            decision_reason: input.reason,
            rejection_basis: input.basis,
            complaint_information_given: true,
          },
          now,
        );
        await revokeVerificationTokens(trx, accountId, id, now);
        await audit(trx, ctx, accountId, row, 'rejected', [
          'status',
          'decision.reason',
          'decision.basis',
          'decision.complaintInformationGiven',
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('data_subject_request.rejected', row, {
            basis: input.basis,
            late: row.decided_late,
          }),
        ]);
        return row;
      });
    },

    /** The subject withdrew the request. */
    async cancel(
      ctx: RequestContext,
      accountId: string,
      id: string,
      reason: string,
      expectedVersion?: number,
    ) {
      return db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, expectedVersion);
        if (!isOpen(current)) throw invalidTransition(current, 'cancelled');
        const row = await updateRequest(
          trx,
          current,
          { ...decision(current, 'cancelled', now), decision_reason: reason },
          now,
        );
        await revokeVerificationTokens(trx, accountId, id, now);
        await audit(trx, ctx, accountId, row, 'cancelled', ['status', 'decision.reason']);
        await appendEvents(trx, accountId, [feedEvent('data_subject_request.cancelled', row)]);
        return row;
      });
    },

    /**
     * Performs the request's action and closes it, in one transaction through the contacts
     * and consents services: anything that fails (a suppressed address for a rectification,
     * say) rolls all of it back and leaves the request open.
     */
    async complete(
      ctx: RequestContext,
      accountId: string,
      id: string,
      input: CompleteInput,
      options: {
        protection?: ExportProtection | undefined;
        expectedVersion?: number | undefined;
        /** Throws when the caller may not perform this type's action (403). */
        authorizeAction: (type: DataSubjectRequestRow['type']) => void;
      },
    ) {
      const informs = input.recipientsInformed !== undefined;
      const explains = input.recipientsNotInformedReason !== undefined;
      const { protection } = options;
      let erased = false;
      // Every check runs on the locked row, inside the transaction: one read, and nothing
      // decided on a version another request is changing.
      const row = await db.transaction().execute(async (trx) => {
        const now = clock.now();
        const current = await lockForChange(trx, accountId, id, options.expectedVersion);
        options.authorizeAction(current.type);
        if (RECIPIENT_ACTIONS.has(current.type)) {
          if (informs === explains) {
            throw new ValidationError([
              {
                field: 'body.recipientsInformed',
                code: 'recipients_required',
                message:
                  'Art. 19: give recipientsInformed or recipientsNotInformedReason (one of them)',
              },
            ]);
          }
        } else if (informs || explains) {
          throw new ValidationError([
            {
              field: informs ? 'body.recipientsInformed' : 'body.recipientsNotInformedReason',
              code: 'not_applicable',
              message: 'only for rectification, erasure and restriction (Art. 19)',
            },
          ]);
        }
        const exporting = current.type === 'access' || current.type === 'portability';
        if (exporting && !protection) {
          throw new BadRequestError(
            'export_protection_required',
            'An access or portability answer is stored encrypted: send X-Export-Passphrase or ' +
              'X-Export-Recipient.',
          );
        }
        if (current.status !== 'identity_verified') {
          throw invalidTransition(
            current,
            current.status === 'received'
              ? 'completed until the identity is verified'
              : 'completed',
          );
        }
        const contactId = await resolveContact(trx, accountId, current);
        const outcome: Record<string, unknown> = { noDataHeld: contactId === null };
        const changes: RequestChanges = {};
        switch (current.type) {
          case 'erasure': {
            if (contactId) {
              await deps.contacts.eraseInTrx(trx, ctx, accountId, contactId, {
                dataSubjectRequestId: current.id,
              });
              erased = true;
            } else {
              // No contact: the address still goes on the suppression list, so it cannot be
              // added again by accident (Art. 17).
              await suppress(trx, accountId, [current.subject_email_hash], 'erased');
            }
            outcome.suppressed = true;
            break;
          }
          case 'rectification': {
            if (contactId) {
              const updated = await deps.contacts.updateInTrx(
                trx,
                ctx,
                accountId,
                contactId,
                current.corrections ?? {},
              );
              outcome.contactVersion = updated.version;
              outcome.rectifiedFields = Object.keys(current.corrections ?? {});
            }
            break;
          }
          case 'restriction': {
            if (contactId) {
              await deps.contacts.restrictInTrx(
                trx,
                ctx,
                accountId,
                contactId,
                `data-subject request ${current.id}`,
              );
              outcome.restricted = true;
            }
            break;
          }
          case 'objection': {
            if (contactId) {
              const purposeIds =
                current.purpose_ids ??
                (await currentConsentEvents(trx, accountId, contactId))
                  .filter((event) => deriveState(event.event, event.method) !== 'withdrawn')
                  .map((event) => event.purpose_id);
              for (const purposeId of purposeIds) {
                await deps.consents.recordIn(trx, ctx, accountId, contactId, {
                  purposeId,
                  event: 'withdrawn',
                  method: 'data_subject_request',
                  legalBasis: 'consent',
                  evidence: {},
                });
              }
              outcome.withdrawnPurposeIds = purposeIds;
            }
            break;
          }
          case 'access':
          case 'portability': {
            if (contactId) {
              const data = await deps.contacts.exportDataInTrx(
                trx,
                ctx,
                accountId,
                contactId,
                true,
              );
              const document = {
                request: { id: current.id, type: current.type },
                ...data,
                // Art. 15(1): the facts besides the data (portability gets them too).
                facts: await accessFacts(trx, accountId, contactId),
              };
              const armored = await encryptExport(JSON.stringify(document), protection!);
              const expiresAt = new Date(now.getTime() + deps.exportTtlDays * DAY_MS);
              changes.export_ciphertext = armored;
              changes.export_expires_at = expiresAt;
              outcome.export = {
                sha256: createHash('sha256').update(armored).digest('hex'),
                bytes: Buffer.byteLength(armored),
                expiresAt: expiresAt.toISOString(),
                url: `/v1/data-subject-requests/${current.id}/export`,
              };
            }
            break;
          }
        }
        const row = await updateRequest(
          trx,
          current,
          {
            ...decision(current, 'completed', now),
            ...changes,
            contact_id: contactId ?? current.contact_id,
            recipients_informed: input.recipientsInformed ?? null,
            recipients_not_informed_reason: input.recipientsNotInformedReason ?? null,
            outcome,
          },
          now,
        );
        if (current.verification_requested_at) {
          await revokeVerificationTokens(trx, accountId, id, now);
        }
        await audit(trx, ctx, accountId, row, 'completed', [
          'status',
          'result',
          ...(informs ? ['recipientsInformed'] : []),
          ...(explains ? ['recipientsNotInformedReason'] : []),
        ]);
        await appendEvents(trx, accountId, [
          feedEvent('data_subject_request.completed', row, {
            late: row.decided_late,
            noDataHeld: outcome.noDataHeld,
            ...(informs ? { recipientsInformed: input.recipientsInformed!.length } : {}),
          }),
        ]);
        return row;
      });
      if (erased) deps.contacts.erased();
      return row;
    },

    /** The stored, encrypted access/portability export, while it is kept. */
    async exportFile(accountId: string, id: string) {
      const row = await get(accountId, id);
      if (row.export_ciphertext && row.export_expires_at) {
        if (row.export_expires_at.getTime() > clock.now().getTime()) {
          return { armored: row.export_ciphertext, row };
        }
        throw new AppError(410, 'export_expired', 'Gone', 'The export is no longer kept.');
      }
      throw new NotFoundError('The request has no stored export.', 'export_not_available');
    },
  };
  return service;
}

function requestExists() {
  return new ConflictError('request_exists', 'A request with this externalId exists already.');
}

export type DataSubjectRequestsService = ReturnType<typeof createDataSubjectRequestsService>;

/** For the contacts module's erasure (wired in the route table): see forgetSubjectPlaintext. */
export function requestPlaintextForgetter(clock: Clock) {
  return (
    trx: Transaction<DB>,
    accountId: string,
    subject: { contactId: string; fingerprints: readonly string[] },
  ) => forgetSubjectPlaintext(trx, accountId, subject, clock.now());
}

/** For the contact export: the requests about the contact (facts only). */
export function requestsExportSection(clock: Clock) {
  return async (db: Kysely<DB>, accountId: string, contactId: string) => {
    const rows = await requestsOfContact(db, accountId, contactId);
    const now = clock.now();
    return {
      dataSubjectRequests: rows.map((row) => ({
        id: row.id,
        type: row.type,
        status: row.status,
        receivedAt: row.received_at.toISOString(),
        dueDate: row.due_date,
        decidedAt: row.decided_at?.toISOString() ?? null,
        overdue: isOpen(row) && isOverdue(row.due_at, now),
      })),
    };
  };
}

/**
 * Art. 12(3) reminders, for the worker: `data_subject_request.due_soon` once an open request is
 * due within seven days, `data_subject_request.overdue` once it is past its due time; each once
 * per request (the reminders table's key decides, also between workers). Up to `limit` per
 * sweep: the question across accounts answers ids, and each account's reminders are then
 * recorded and put on its feed in a transaction bound to it. Returns how many were put on the
 * feed.
 */
export async function sendRequestDueReminders(
  db: Kysely<DB>,
  clock: Clock,
  limit = 500,
): Promise<number> {
  const now = clock.now();
  const due = await requestIdsDueForReminder(db, now, limit);
  return sumOverAccounts(due, (accountId, ids) =>
    db.transaction().execute(async (trx) => {
      const rows = await requestsDueForReminder(trx, accountId, ids, now);
      const fresh = await insertRequestReminders(
        trx,
        rows.map((row) => ({
          account_id: accountId,
          request_id: row.id,
          threshold: row.threshold,
          sent_at: now,
        })),
      );
      const recorded = new Set(fresh.map((r) => `${r.request_id}/${r.threshold}`));
      const events: NewEvent[] = rows
        .filter((row) => recorded.has(`${row.id}/${row.threshold}`))
        .map((row) => ({
          type:
            row.threshold === '7d'
              ? 'data_subject_request.due_soon'
              : 'data_subject_request.overdue',
          contactId: null,
          data: {
            requestId: row.id,
            requestType: row.type,
            status: row.status,
            contactId: row.contact_id,
            dueDate: row.due_date,
            dueAt: row.due_at.toISOString(),
            ...(row.external_id !== null ? { externalId: row.external_id } : {}),
            ...(row.threshold === '7d'
              ? { daysRemaining: daysRemaining(row.due_date, row.time_zone, now) }
              : {}),
          },
        }));
      if (events.length > 0) await appendEvents(trx, accountId, events);
      return events.length;
    }),
  );
}
