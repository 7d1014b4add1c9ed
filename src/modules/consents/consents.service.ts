import type { Kysely, Transaction } from 'kysely';
import { cursors, keysetPageWith } from '../../db/keyset.js';
import type { ConsentEventRow, DB } from '../../db/schema.js';
import { ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { linkSealer } from '../../lib/link-sealing.js';
import { findAccount } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import { findContactRef, lockContact } from '../contacts/contacts.service.js';
import {
  appendEvents,
  type NewEvent,
  type StoredLink,
  storedLink,
} from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import { markNoticeVersionsUsed, purposeLookups } from '../purposes/purposes.service.js';
import {
  addressMustConfirmFirst,
  grantAllowed,
  mustConfirmFirstError,
} from '../suppressions/suppressions.service.js';
import { type ConsentLinkKind, WITHDRAWAL_LINK_TTL_DAYS } from './consent-links.js';
import { buildConsentReceipt } from './consent-receipt.js';
import {
  type AppendedConsent,
  audiencePage,
  type ConsentAppend,
  type CurrentConsentRow,
  deriveState,
  insertConsentEvent,
  insertImportedConsents,
  issueConsentLinks,
  listConsentEvents,
  type NewConsentEvent,
  newestConsentEventsByKind,
  newestEventPerPurpose,
} from './consents.repository.js';
import type { LedgerEntryInput, RecordConsentInput } from './consents.schemas.js';

const HOUR_MS = 3_600_000;

export function restrictedError() {
  // Art. 18(1): a restricted contact's data is only stored; a new grant would change that.
  return new ConflictError(
    'restricted',
    'The contact is restricted (Art. 18): consent may be withdrawn, but not granted.',
  );
}

export interface ConsentsDeps {
  db: Kysely<DB>;
  /** Key of the address hashes (suppression list) and of the sealed links on the feed. */
  hashSecret: string;
  /** How long a double opt-in confirmation link works (CONSENT_TOKEN_TTL_HOURS). */
  confirmationTtlHours: number;
}

/** The consent ledger (Art. 7) and what is derived from it: state, receipt, audience. */
export function createConsentsService(deps: ConsentsDeps) {
  const { db, hashSecret, confirmationTtlHours } = deps;
  const sealer = linkSealer(hashSecret);

  async function getContact(accountId: string, contactId: string) {
    const contact = await findContactRef(db, accountId, contactId);
    if (!contact) throw new NotFoundError('The contact does not exist.');
    return contact;
  }

  async function issueLink(
    trx: Transaction<DB>,
    kind: ConsentLinkKind,
    event: ConsentEventRow,
    expiresAt: Date,
  ) {
    const [link] = await issueConsentLinks(trx, kind, [event], expiresAt);
    return link!;
  }

  /**
   * Appends a granted or withdrawn event to the contact's ledger, in the caller's transaction
   * (with its feed event and audit entry). A grant must name an existing notice version of the
   * purpose; it returns a withdrawal link (Art. 7(3)) and, for double opt-in, a confirmation
   * link; the tokens are shown only here.
   */
  async function recordIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    contactId: string,
    input: LedgerEntryInput,
  ) {
    const contact = await lockContact(trx, accountId, contactId);
    if (!contact) throw new NotFoundError('The contact does not exist.');
    const purpose = await purposeLookups.require(trx, accountId, input.purposeId);
    if (input.event === 'granted' && contact.restricted_at) throw restrictedError();
    if (
      input.event === 'granted' &&
      !grantAllowed(
        input.method,
        await addressMustConfirmFirst(trx, accountId, contact.email, hashSecret),
      )
    ) {
      throw mustConfirmFirstError();
    }
    if (input.noticeVersion !== undefined) {
      await purposeLookups.requireNoticeVersion(trx, accountId, purpose.id, input.noticeVersion);
    } else if (input.event === 'granted') {
      throw new UnprocessableError(
        'unknown_notice_version',
        'A grant must name the notice version the person saw.',
      );
    }

    const event = await appendConsentEvent(trx, {
      accountId,
      contactId,
      purposeId: purpose.id,
      noticeVersion: input.noticeVersion ?? null,
      event: input.event,
      method: input.method,
      legalBasis: input.legalBasis,
      occurredAt: input.occurredAt ? new Date(input.occurredAt) : new Date(),
      ip: input.evidence.ip ?? null,
      userAgent: input.evidence.userAgent ?? null,
      sourceUrl: input.evidence.sourceUrl ?? null,
      actorType: ctx.actor.type,
      actorId: ctx.actor.id,
    });

    let confirmation: Awaited<ReturnType<typeof issueLink>> | undefined;
    let withdrawal: Awaited<ReturnType<typeof issueLink>> | undefined;
    if (input.event === 'granted') {
      const now = Date.now();
      if (input.method === 'double_opt_in') {
        confirmation = await issueLink(
          trx,
          'confirm',
          event,
          new Date(now + confirmationTtlHours * HOUR_MS),
        );
      }
      withdrawal = await issueLink(
        trx,
        'withdraw',
        event,
        new Date(now + WITHDRAWAL_LINK_TTL_DAYS * 24 * HOUR_MS),
      );
    }

    await appendEvents(trx, accountId, [
      consentEvent(event, confirmation && storedLink(sealer, accountId, event.id, confirmation)),
    ]);

    const evidenceFields = Object.entries(input.evidence)
      .filter(([, value]) => value !== undefined)
      .map(([field]) => `consent.evidence.${field}`);
    await recordAudit(trx, ctx, {
      accountId,
      action: `consent.${input.event}`,
      entityType: 'contact',
      entityId: contactId,
      changedFields: [
        'consent.purposeId',
        'consent.method',
        'consent.legalBasis',
        'consent.occurredAt',
        ...(input.noticeVersion !== undefined ? ['consent.noticeVersion'] : []),
        ...evidenceFields,
      ],
    });
    return {
      event,
      state: deriveState(event.event, event.method),
      confirmation,
      withdrawal,
    };
  }

  return {
    recordIn,

    /** {@link recordIn} in a transaction of its own. */
    async record(
      ctx: RequestContext,
      accountId: string,
      contactId: string,
      input: RecordConsentInput,
    ) {
      return db.transaction().execute((trx) => recordIn(trx, ctx, accountId, contactId, input));
    },

    /** The derived current state per purpose, and one page of the ledger (newest first). */
    async ledger(
      accountId: string,
      contactId: string,
      query: { limit: number; cursor?: string | undefined; purposeId?: string | undefined },
    ) {
      // A forged cursor is a 400 even for a contact that does not exist.
      cursors.consentLedger.decode(query.cursor);
      await getContact(accountId, contactId);
      const current = await currentConsentEvents(db, accountId, contactId);
      const page = await listConsentEvents(db, accountId, contactId, {
        limit: query.limit,
        cursor: query.cursor,
        ...(query.purposeId ? { purposeId: query.purposeId } : {}),
      });
      return {
        current: current.map((row) => ({ row, state: deriveState(row.event, row.method) })),
        events: page.rows,
        nextCursor: page.nextCursor,
      };
    },

    /** A consent receipt (Kantara CR v1.1 / ISO/IEC 27560) for the contact's consents. */
    async receipt(accountId: string, contactId: string) {
      const contact = await getContact(accountId, contactId);
      const account = await findAccount(db, accountId);
      if (!account) throw new Error(`account ${accountId} of a contact does not exist`);
      const newestByKind = await newestConsentEventsByKind(db, accountId, contactId);
      const purposeIds = [...new Set(newestByKind.map((row) => row.purpose_id))];
      const purposes = await purposeLookups.summaries(db, accountId, purposeIds);
      const grants = newestByKind.filter(
        (row) => row.event === 'granted' && row.notice_version !== null,
      );
      const notices = await purposeLookups.noticeDigests(
        db,
        accountId,
        grants.map((g) => ({ purposeId: g.purpose_id, version: g.notice_version! })),
      );
      return buildConsentReceipt({
        account,
        contact,
        purposes: new Map(purposes.map((p) => [p.id, p])),
        newestByKind,
        notices: new Map(notices.map((n) => [`${n.purpose_id}:${n.version}`, n])),
      });
    },

    /** Who may be mailed for a purpose now: verified grant, active, not restricted. */
    async audience(
      accountId: string,
      purposeId: string,
      query: { limit: number; cursor?: string | undefined },
    ) {
      // A forged cursor is a 400 even for a purpose that does not exist.
      cursors.contactId.decode(query.cursor);
      await purposeLookups.require(db, accountId, purposeId);
      // The statement places the cursor itself, on both tables it walks (see audiencePage).
      return keysetPageWith(
        (after, limit) =>
          audiencePage(db, accountId, purposeId, { limit, afterContactId: after?.[0] }),
        {
          codec: cursors.contactId,
          cursorOf: (row) => [row.contact_id],
          limit: query.limit,
          cursor: query.cursor,
        },
      );
    },
  };
}

export type ConsentsService = ReturnType<typeof createConsentsService>;

/**
 * The feed event for a ledger entry: what the customer's mail system must do about it. A
 * double opt-in grant carries its confirmation link (sealed: see {@link storedLink}), the only
 * place besides the API answer where the link is shown.
 */
export function consentEvent(
  event: Pick<
    ConsentEventRow,
    'id' | 'contact_id' | 'purpose_id' | 'notice_version' | 'event' | 'method'
  >,
  confirmation?: StoredLink,
): NewEvent {
  const data = {
    contactId: event.contact_id,
    purposeId: event.purpose_id,
    consentEventId: event.id,
    noticeVersion: event.notice_version,
    method: event.method,
  };
  if (event.event === 'withdrawn') {
    return { type: 'consent.withdrawn', contactId: event.contact_id, data };
  }
  if (event.event === 'confirmed') {
    return { type: 'consent.confirmed', contactId: event.contact_id, data };
  }
  return confirmation
    ? {
        type: 'consent.confirmation_requested',
        contactId: event.contact_id,
        data: { ...data, confirmation },
      }
    : { type: 'consent.granted', contactId: event.contact_id, data };
}

/**
 * Appends one event to the ledger. Call it with the contact locked (`lockContact` of the
 * contacts module): see {@link insertConsentEvent}. The first event that refers to a notice
 * version marks the version used, in the same transaction; from then on the version cannot be
 * deleted.
 */
export async function appendConsentEvent(
  trx: Transaction<DB>,
  event: NewConsentEvent,
): Promise<ConsentEventRow> {
  const row = await insertConsentEvent(trx, event);
  if (row.notice_version !== null) {
    await markNoticeVersionsUsed(
      trx,
      row.account_id,
      [{ purposeId: row.purpose_id, version: row.notice_version }],
      row.recorded_at,
    );
  }
  return row;
}

/**
 * Appends an import batch's consent grants ({@link insertImportedConsents}) and marks the
 * notice versions they refer to as used. Returns the grants it appended.
 */
export async function appendImportedConsents(
  trx: Transaction<DB>,
  accountId: string,
  actor: { type: string; id: string | null },
  events: ConsentAppend[],
): Promise<AppendedConsent[]> {
  if (events.length === 0) return [];
  const appended = await insertImportedConsents(trx, accountId, actor, events);
  await markNoticeVersionsUsed(
    trx,
    accountId,
    events.flatMap((event) =>
      event.notice_version === null
        ? []
        : [{ purposeId: event.purpose_id, version: event.notice_version }],
    ),
  );
  return appended;
}

/** The newest event of each purpose the contact has events for, with its key, by key. */
export async function currentConsentEvents(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<CurrentConsentRow[]> {
  const rows = await newestEventPerPurpose(db, accountId, contactId);
  const purposes = await purposeLookups.summaries(
    db,
    accountId,
    rows.map((row) => row.purpose_id),
  );
  const keys = new Map(purposes.map((purpose) => [purpose.id, purpose.key]));
  return rows
    .flatMap((row) => {
      const key = keys.get(row.purpose_id);
      return key === undefined ? [] : [{ ...row, purpose_key: key }];
    })
    .sort((a, b) => a.purpose_key.localeCompare(b.purpose_key));
}

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself.
 */
export {
  type AppendedConsent,
  type ConsentAppend,
  type ConsentState,
  consentStateCondition,
  contactConsentLedger,
  contactsWithConfirmation,
  deriveState,
  forgetContactConsents,
  issueConsentLinks,
} from './consents.repository.js';
