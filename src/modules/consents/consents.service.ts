import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import { cursors } from '../../db/keyset.js';
import type { ConsentEventRow, DB } from '../../db/schema.js';
import { AppError, ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { linkSealer } from '../../lib/link-sealing.js';
import { appendAuditEvent } from '../audit/audit.repository.js';
import { recordAudit } from '../audit/audit.service.js';
import { clearSuppressedUntilConfirmed } from '../contacts/contacts.repository.js';
import {
  appendEvents,
  type NewEvent,
  type StoredLink,
  storedLink,
} from '../events/events.repository.js';
import type { RequestContext } from '../identity/actor.js';
import {
  addressMustConfirmFirst,
  grantAllowed,
  hashSecretOf,
  mustConfirmFirstError,
} from '../suppressions/suppressions.service.js';
import { buildConsentReceipt } from './consent-receipt.js';
import {
  type ConsentTokenKind,
  consentTokenHash,
  WITHDRAWAL_LINK_TTL_DAYS,
} from './consent-tokens.js';
import {
  appendConsentEvent,
  audiencePage,
  currentConsentEvents,
  deriveState,
  issueConsentLinks,
  listConsentEvents,
  lockContact,
  newestConsentEvent,
  newestConsentEventsByKind,
} from './consents.repository.js';
import type { RecordConsentInput } from './consents.schemas.js';

const HOUR_MS = 3_600_000;

/** What a public link knows about its caller: the request, and the evidence it leaves. */
export interface LinkRequest {
  requestId: string;
  ip: string;
  userAgent: string | null;
}

export class TokenInvalidError extends NotFoundError {
  constructor() {
    super('The link is not valid.', 'token_invalid');
  }
}

export class TokenUsedError extends ConflictError {
  constructor() {
    super('token_used', 'The link was already used.');
  }
}

export class TokenExpiredError extends AppError {
  constructor() {
    super(410, 'token_expired', 'Gone', 'The link has expired.');
  }
}

function restrictedError() {
  // Art. 18(1): a restricted contact's data is only stored; a new grant would change that.
  return new ConflictError(
    'restricted',
    'The contact is restricted (Art. 18): consent may be withdrawn, but not granted.',
  );
}

/** The consent ledger (Art. 7) and what is derived from it: state, receipt, audience. */
export function createConsentsService(deps: { db: Kysely<DB>; config: Config }) {
  const { db, config } = deps;
  const hashSecret = hashSecretOf(config);
  const sealer = linkSealer(hashSecret);

  async function getContact(accountId: string, contactId: string) {
    const contact = await db
      .selectFrom('contacts')
      .select(['id', 'language'])
      .where('account_id', '=', accountId)
      .where('id', '=', contactId)
      .executeTakeFirst();
    if (!contact) throw new NotFoundError('The contact does not exist.');
    return contact;
  }

  async function issueLink(
    trx: Kysely<DB>,
    kind: ConsentTokenKind,
    event: ConsentEventRow,
    expiresAt: Date,
  ) {
    const [link] = await issueConsentLinks(trx, kind, [event], expiresAt);
    return link!;
  }

  /**
   * Uses a link's token once: refuses unknown or tampered tokens (404), used ones (409) and
   * expired ones (410). The row stays locked until the transaction ends, so two clicks on one
   * link cannot both succeed.
   */
  async function redeem(trx: Kysely<DB>, kind: ConsentTokenKind, token: string) {
    const hash = consentTokenHash(token);
    if (!hash) throw new TokenInvalidError();
    const row = await trx
      .selectFrom('consent_tokens')
      .selectAll()
      .where('token_hash', '=', hash)
      .forUpdate()
      .executeTakeFirst();
    if (!row || row.kind !== kind) throw new TokenInvalidError();
    if (row.used_at) throw new TokenUsedError();
    if (row.expires_at.getTime() <= Date.now()) throw new TokenExpiredError();
    await trx
      .updateTable('consent_tokens')
      .set({ used_at: new Date() })
      .where('token_hash', '=', hash)
      .execute();
    return row;
  }

  /** The data subject acting through a link: audited without their IP (the trail is forever). */
  async function auditLinkEvent(
    trx: Kysely<DB>,
    link: LinkRequest,
    event: ConsentEventRow,
    action: string,
  ) {
    await appendAuditEvent(trx, {
      accountId: event.account_id,
      actorType: 'data_subject',
      actorId: null,
      action,
      entityType: 'contact',
      entityId: event.contact_id,
      requestId: link.requestId,
      ip: null,
      changedFields: ['consent.event', 'consent.evidence'],
    });
  }

  return {
    /**
     * Appends a granted or withdrawn event to the contact's ledger. A grant must name an
     * existing notice version of the purpose; it returns a withdrawal link (Art. 7(3)) and, for
     * double opt-in, a confirmation link; the tokens are shown only here.
     */
    async record(
      ctx: RequestContext,
      accountId: string,
      contactId: string,
      input: RecordConsentInput,
    ) {
      return db.transaction().execute(async (trx) => {
        const contact = await lockContact(trx, accountId, contactId);
        if (!contact) throw new NotFoundError('The contact does not exist.');
        const purpose = await trx
          .selectFrom('purposes')
          .select(['id', 'key'])
          .where('account_id', '=', accountId)
          .where('id', '=', input.purposeId)
          .executeTakeFirst();
        if (!purpose) throw new NotFoundError('The purpose does not exist.');
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
          const notice = await trx
            .selectFrom('notice_versions')
            .select('version')
            .where('account_id', '=', accountId)
            .where('purpose_id', '=', purpose.id)
            .where('version', '=', input.noticeVersion)
            .executeTakeFirst();
          if (!notice) {
            throw new UnprocessableError(
              'unknown_notice_version',
              `The purpose has no notice version ${input.noticeVersion}.`,
            );
          }
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
              new Date(now + config.CONSENT_TOKEN_TTL_HOURS * HOUR_MS),
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
          consentEvent(
            event,
            confirmation && storedLink(sealer, accountId, event.id, confirmation),
          ),
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
      });
    },

    /** The derived current state per purpose, and one page of the ledger (newest first). */
    async ledger(
      accountId: string,
      contactId: string,
      query: { limit: number; cursor?: string | undefined; purposeId?: string | undefined },
    ) {
      const after = cursors.consentLedger.decode(query.cursor);
      await getContact(accountId, contactId);
      const current = await currentConsentEvents(db, accountId, contactId);
      const rows = await listConsentEvents(db, accountId, contactId, {
        limit: query.limit + 1,
        ...(after ? { after: { recordedAt: after[0], id: after[1] } } : {}),
        ...(query.purposeId ? { purposeId: query.purposeId } : {}),
      });
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        current: current.map((row) => ({ row, state: deriveState(row.event, row.method) })),
        events: page,
        nextCursor:
          rows.length > query.limit && last
            ? cursors.consentLedger.encode([last.recorded_key, last.id])
            : null,
      };
    },

    /** A consent receipt (Kantara CR v1.1 / ISO/IEC 27560) for the contact's consents. */
    async receipt(accountId: string, contactId: string) {
      const contact = await getContact(accountId, contactId);
      const account = await db
        .selectFrom('accounts')
        .select(['name', 'dpo_name', 'dpo_email', 'dpo_phone'])
        .where('id', '=', accountId)
        .executeTakeFirstOrThrow();
      const newestByKind = await newestConsentEventsByKind(db, accountId, contactId);
      const purposeIds = [...new Set(newestByKind.map((row) => row.purpose_id))];
      const purposes =
        purposeIds.length === 0
          ? []
          : await db
              .selectFrom('purposes')
              .select(['id', 'key', 'name', 'category'])
              .where('account_id', '=', accountId)
              .where('id', 'in', purposeIds)
              .execute();
      const grants = newestByKind.filter(
        (row) => row.event === 'granted' && row.notice_version !== null,
      );
      const notices =
        grants.length === 0
          ? []
          : await db
              .selectFrom('notice_versions')
              .select(['purpose_id', 'version', 'text_sha256', 'language'])
              .where('account_id', '=', accountId)
              .where((eb) =>
                eb.or(
                  grants.map((g) =>
                    eb.and([
                      eb('purpose_id', '=', g.purpose_id),
                      eb('version', '=', g.notice_version!),
                    ]),
                  ),
                ),
              )
              .execute();
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
      const afterContactId = cursors.contactId.decode(query.cursor)?.[0];
      const purpose = await db
        .selectFrom('purposes')
        .select('id')
        .where('account_id', '=', accountId)
        .where('id', '=', purposeId)
        .executeTakeFirst();
      if (!purpose) throw new NotFoundError('The purpose does not exist.');
      const rows = await audiencePage(db, accountId, purposeId, {
        limit: query.limit + 1,
        afterContactId,
      });
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        rows: page,
        nextCursor:
          rows.length > query.limit && last ? cursors.contactId.encode([last.contact_id]) : null,
      };
    },

    /**
     * Double opt-in: the person followed the confirmation link. Records a `confirmed` event with
     * the time, IP and user agent of the click. Only a pending consent can be confirmed: after a
     * withdrawal, an old confirmation link must not bring the consent back.
     */
    async confirm(token: string, link: LinkRequest) {
      return db.transaction().execute(async (trx) => {
        const redeemed = await redeem(trx, 'confirm', token);
        const contact = await lockContact(trx, redeemed.account_id, redeemed.contact_id);
        if (!contact) throw new TokenInvalidError();
        if (contact.restricted_at) throw restrictedError();
        const newest = await newestConsentEvent(
          trx,
          redeemed.account_id,
          redeemed.contact_id,
          redeemed.purpose_id,
        );
        if (!newest || deriveState(newest.event, newest.method) !== 'pending') {
          throw new ConflictError(
            'consent_not_pending',
            'There is no pending consent for this link to confirm (it was withdrawn or replaced).',
          );
        }
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
    },

    /** Art. 7(3): the person withdraws with the link they received with their consent. */
    async withdrawByLink(token: string, link: LinkRequest) {
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
