import type { Kysely, Transaction } from 'kysely';
import type { ConsentEventRow, ConsentTokensTable, DB } from '../../db/schema.js';
import { accountOf, inAccountOf } from '../../db/tenant.js';
import { type AppError, ConflictError } from '../../errors.js';
import { TokenExpiredError, TokenInvalidError, TokenUsedError } from '../../lib/link-tokens.js';
import { recordSubjectAudit } from '../audit/audit.service.js';
import {
  clearSuppressedUntilConfirmed,
  findContactRef,
  lockContact,
} from '../contacts/contacts.service.js';
import { appendEvents } from '../events/events.service.js';
import { purposeLookups } from '../purposes/purposes.service.js';
import { type ConsentLinkKind, consentLinkTokenHash } from './consent-links.js';
import type { ConsentLinkPageFacts } from './consent-links.pages.js';
import {
  deriveState,
  findConsentLink,
  lockConsentLink,
  markConsentLinkUsed,
  newestConsentEvent,
} from './consents.repository.js';
import { appendConsentEvent, consentEvent, restrictedError } from './consents.service.js';

/** What a public link knows about its caller: the request, and the evidence it leaves. */
export interface LinkRequest {
  requestId: string;
  ip: string;
  userAgent: string | null;
}

export { TokenExpiredError, TokenInvalidError, TokenUsedError };

type ConsentLinkRow = Pick<ConsentTokensTable, 'kind' | 'used_at' | 'expires_at'>;

/** Why a link row cannot be used now (unknown or of the other kind, used, expired), or null. */
function linkRefusal(row: ConsentLinkRow | undefined, kind: ConsentLinkKind): AppError | null {
  if (!row || row.kind !== kind) return new TokenInvalidError();
  if (row.used_at) return new TokenUsedError();
  if (row.expires_at.getTime() <= Date.now()) return new TokenExpiredError();
  return null;
}

/**
 * Why a confirmation cannot be recorded for this contact now, or null. Only a pending consent
 * can be confirmed: after a withdrawal, an old confirmation link must not bring it back.
 */
function confirmationRefusal(
  contact: { restricted_at: Date | null },
  newest: Pick<ConsentEventRow, 'event' | 'method'> | undefined,
): AppError | null {
  if (contact.restricted_at) return restrictedError();
  if (!newest || deriveState(newest.event, newest.method) !== 'pending') {
    return new ConflictError(
      'consent_not_pending',
      'There is no pending consent for this link to confirm (it was withdrawn or replaced).',
    );
  }
  return null;
}

/** What a link's page shows, and what a POST of the link would run into. */
export interface ConsentLinkView extends ConsentLinkPageFacts {
  /** The contact's language tag; null when the link is not known. */
  language: string | null;
  /** What a POST would fail with now; null when it would act. */
  refusal: AppError | null;
}

/**
 * Consent links: what a data subject does with the single-use links that came with their
 * consent (confirm a double opt-in, withdraw), without an account.
 */
export function createConsentLinksService(deps: { db: Kysely<DB> }) {
  const { db } = deps;

  // A link names no account: the token's account is found by an owner-defined function (row-
  // level security shows nothing before an account is bound) and the work acts for it.
  const forToken = <T>(token: string, fn: () => Promise<T>) =>
    inAccountOf(async () => {
      const hash = consentLinkTokenHash(token);
      return hash ? accountOf(db, 'account_of_consent_token', hash) : null;
    }, fn);

  /**
   * Uses a link's token once: refuses unknown or tampered tokens (404), used ones (409) and
   * expired ones (410). The row stays locked until the transaction ends, so two clicks on one
   * link cannot both succeed.
   */
  async function redeem(trx: Transaction<DB>, kind: ConsentLinkKind, token: string) {
    const hash = consentLinkTokenHash(token);
    if (!hash) throw new TokenInvalidError();
    const row = await lockConsentLink(trx, hash);
    const refusal = linkRefusal(row, kind);
    if (refusal || !row) throw refusal ?? new TokenInvalidError();
    await markConsentLinkUsed(trx, hash);
    return row;
  }

  /** The data subject acting through a link. */
  async function auditLinkEvent(
    trx: Transaction<DB>,
    link: LinkRequest,
    event: ConsentEventRow,
    action: string,
  ) {
    await recordSubjectAudit(trx, {
      accountId: event.account_id,
      requestId: link.requestId,
      action,
      entityType: 'contact',
      entityId: event.contact_id,
      changedFields: ['consent.event', 'consent.evidence'],
    });
  }

  return {
    /**
     * What the page of a link shows (the purpose, the notice version and its text, in the
     * contact's language) and whether a POST would act, without changing anything: opening a
     * link, as a mail scanner does, records nothing. Takes no lock.
     */
    async view(kind: ConsentLinkKind, token: string): Promise<ConsentLinkView> {
      return forToken(token, async () => {
        const unknown: ConsentLinkView = {
          language: null,
          purposeName: null,
          noticeVersion: null,
          notice: null,
          refusal: new TokenInvalidError(),
        };
        const hash = consentLinkTokenHash(token);
        const row = hash ? await findConsentLink(db, hash) : undefined;
        if (!row || row.kind !== kind) return unknown;
        const contact = await findContactRef(db, row.account_id, row.contact_id);
        if (!contact) return unknown;
        const refusal = linkRefusal(row, kind);
        if (refusal) return { ...unknown, language: contact.language, refusal };
        const newest = await newestConsentEvent(db, row.account_id, row.contact_id, row.purpose_id);
        const noticeVersion = newest?.notice_version ?? null;
        const purpose = await purposeLookups.forLinkPage(
          db,
          row.account_id,
          row.purpose_id,
          noticeVersion,
        );
        return {
          language: contact.language,
          purposeName: purpose?.name ?? null,
          noticeVersion,
          notice: purpose?.notice ?? null,
          refusal: kind === 'confirm' ? confirmationRefusal(contact, newest) : null,
        };
      });
    },

    /**
     * Double opt-in: the person followed the confirmation link. Records a `confirmed` event with
     * the time, IP and user agent of the click. Only a pending consent can be confirmed: after a
     * withdrawal, an old confirmation link must not bring the consent back.
     */
    async confirm(token: string, link: LinkRequest) {
      return forToken(token, async () => {
        return db.transaction().execute(async (trx) => {
          const redeemed = await redeem(trx, 'confirm', token);
          const contact = await lockContact(trx, redeemed.account_id, redeemed.contact_id);
          if (!contact) throw new TokenInvalidError();
          const newest = await newestConsentEvent(
            trx,
            redeemed.account_id,
            redeemed.contact_id,
            redeemed.purpose_id,
          );
          const refusal = confirmationRefusal(contact, newest);
          if (refusal || !newest) throw refusal ?? new TokenInvalidError();
          const event = await appendConsentEvent(trx, {
            accountId: redeemed.account_id,
            contactId: redeemed.contact_id,
            purposeId: redeemed.purpose_id,
            noticeVersion: newest.notice_version,
            event: 'confirmed',
            method: 'double_opt_in',
            legalBasis: newest.legal_basis,
            occurredAt: new Date(),
            ip: link.ip,
            userAgent: link.userAgent,
            sourceUrl: null,
            actorType: 'data_subject',
            actorId: null,
          });
          // The person confirmed: a re-admitted contact may receive other grants from now on.
          await clearSuppressedUntilConfirmed(trx, event.account_id, event.contact_id);
          await auditLinkEvent(trx, link, event, 'consent.confirmed');
          await appendEvents(trx, event.account_id, [consentEvent(event)]);
          return event;
        });
      });
    },

    /** Art. 7(3): the person withdraws with the link they received with their consent. */
    async withdrawByLink(token: string, link: LinkRequest) {
      return forToken(token, async () => {
        return db.transaction().execute(async (trx) => {
          const redeemed = await redeem(trx, 'withdraw', token);
          const contact = await lockContact(trx, redeemed.account_id, redeemed.contact_id);
          if (!contact) throw new TokenInvalidError();
          const newest = await newestConsentEvent(
            trx,
            redeemed.account_id,
            redeemed.contact_id,
            redeemed.purpose_id,
          );
          const event = await appendConsentEvent(trx, {
            accountId: redeemed.account_id,
            contactId: redeemed.contact_id,
            purposeId: redeemed.purpose_id,
            noticeVersion: newest?.notice_version ?? null,
            event: 'withdrawn',
            method: 'withdrawal_link',
            legalBasis: newest?.legal_basis ?? 'consent',
            occurredAt: new Date(),
            ip: link.ip,
            userAgent: link.userAgent,
            sourceUrl: null,
            actorType: 'data_subject',
            actorId: null,
          });
          await auditLinkEvent(trx, link, event, 'consent.withdrawn');
          await appendEvents(trx, event.account_id, [consentEvent(event)]);
          return event;
        });
      });
    },
  };
}

export type ConsentLinksService = ReturnType<typeof createConsentLinksService>;
