import type { Kysely, Transaction } from 'kysely';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { ContactRow, DB } from '../../db/schema.js';
import {
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
} from '../../errors.js';
import { forgetIdempotentRequests } from '../../http/idempotency.js';
import { toIso } from '../../http/schemas.js';
import { canonicalJson } from '../../lib/canonical-json.js';
import { addressesWithin } from '../../lib/email.js';
import { emailFingerprint } from '../../lib/keyed-hash.js';
import { entityAuditTrail, recordAudit } from '../audit/audit.service.js';
import { toConsentEvent, toCurrentConsent } from '../consents/consents.schemas.js';
import {
  contactConsentLedger,
  currentConsentEvents,
  deriveState,
  forgetContactConsents,
} from '../consents/consents.service.js';
import { forgetImportKeys } from '../contact-imports/contact-imports.service.js';
import { appendEvents, contactEvents, type NewEvent } from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import { grantAllowed, isSuppressed, suppress } from '../suppressions/suppressions.service.js';
import {
  type ContactColumns,
  type ContactListFilter,
  contactsQuery,
  deleteContact,
  earlierAddressHashes,
  findContact,
  findContactIdByEmail,
  insertContact,
  insertErasure,
  isDuplicateEmail,
  lockContactRow,
  rememberEarlierAddress,
  updateContact,
} from './contacts.repository.js';
import {
  type ContactFilterInput,
  type ContactPatch,
  type CreateContactInput,
  type ListContactsFilter,
  toContact,
} from './contacts.schemas.js';

/** Wire field → column, for patches and the audit trail's field names. */
const COLUMN_OF = {
  email: 'email',
  firstName: 'first_name',
  lastName: 'last_name',
  language: 'language',
  attributes: 'attributes',
  status: 'status',
} as const;
type PatchField = keyof typeof COLUMN_OF;

/**
 * Art. 16 and 18(2): while a contact is restricted, only rectification — correcting who the
 * person is — is allowed; anything else (attributes, status) is processing.
 */
const RECTIFICATION_FIELDS: ReadonlySet<PatchField> = new Set([
  'email',
  'firstName',
  'lastName',
  'language',
]);

/**
 * A contact event for the feed: the contact by id, and what the type adds (field names, other
 * ids), never a value of the contact's data. Recipients of the data learn of a rectification,
 * restriction or erasure from it (Art. 19).
 */
function contactEvent(
  type: Extract<NewEvent['type'], `contact.${string}`>,
  contactId: string,
  extra: Record<string, unknown> = {},
): NewEvent {
  return { type, contactId, data: { contactId, ...extra } };
}

function notFound() {
  return new NotFoundError('The contact does not exist.');
}

function contactExists() {
  return new ConflictError('contact_exists', 'A contact with this email already exists.');
}

function suppressedError() {
  // Art. 17: an erased address must not come back by accident.
  return new UnprocessableError(
    'suppressed',
    'The address was erased and is on the suppression list; it can only come back with a ' +
      'fresh consent through double opt-in (doubleOptIn: true).',
  );
}

function restrictedError(detail: string) {
  return new ConflictError('restricted', detail);
}

/**
 * The tables an erasure deletes from or rewrites: their dead row versions still hold the
 * erased data until they are vacuumed (see `debouncedVacuum`).
 */
export const ERASURE_TOUCHED_TABLES = [
  'contacts',
  'contact_address_history',
  'consent_events',
  'consent_tokens',
  'events',
  'idempotency_keys',
  'contact_imports',
] as const;

/**
 * Contacts and the data-subject rights over them: access and portability (Art. 15, 20),
 * rectification (Art. 16), erasure (Art. 17) and restriction (Art. 18). Every change is audited
 * in its own transaction, by field name only.
 */
/**
 * What another module keeps about a person that an erasure must also forget, inside the
 * erasure's transaction: the contact's id and the keyed hashes of every address it held.
 * Wired in the route table, so this module does not depend on the modules that hold such data.
 */
export type ErasureForgetter = (
  trx: Transaction<DB>,
  accountId: string,
  subject: { contactId: string; fingerprints: readonly string[] },
) => Promise<unknown>;

/** More of what is held about a contact, for its export (Art. 15), from other modules. */
export type ExportSection = (
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
) => Promise<Record<string, unknown>>;

export function createContactsService(deps: {
  db: Kysely<DB>;
  hashSecret: string;
  /** Called after each erasure has committed (to vacuum the touched tables). */
  onErased?: () => void;
  /** Other modules' data about the person, forgotten with the contact (Art. 17). */
  forgetters?: readonly ErasureForgetter[];
  /** Other modules' data about the contact, added to its export (Art. 15). */
  exportSections?: readonly ExportSection[];
}) {
  const { db, hashSecret } = deps;

  async function get(accountId: string, id: string): Promise<ContactRow> {
    const row = await findContact(db, accountId, id);
    if (!row) throw notFound();
    return row;
  }

  async function lockOrThrow(trx: Transaction<DB>, accountId: string, id: string) {
    const row = await lockContactRow(trx, accountId, id);
    if (!row) throw notFound();
    return row;
  }

  const service = {
    get,

    async list(accountId: string, query: ListContactsFilter) {
      const filtered = contactsQuery(db, accountId, contactListFilter(query));
      return pageByCreatedAt(filtered, query);
    },

    /**
     * Creates a contact. A suppressed (erased) address is refused unless it arrives with a
     * fresh double opt-in consent (`doubleOptIn`), which the caller records next.
     */
    async create(ctx: RequestContext, accountId: string, input: CreateContactInput) {
      const fingerprint = emailFingerprint(hashSecret, input.email);
      try {
        return await db.transaction().execute(async (trx) => {
          if (await findContactIdByEmail(trx, accountId, input.email)) throw contactExists();
          const suppressed = await isSuppressed(trx, accountId, fingerprint);
          // The same rule as for grants (see mustConfirmFirst): only a double opt-in re-admits.
          if (!grantAllowed(input.doubleOptIn ? 'double_opt_in' : 'none', suppressed)) {
            throw suppressedError();
          }
          const row = await insertContact(trx, {
            // Re-admitted at an erased address: see mustConfirmFirst.
            suppressedUntilConfirmed: suppressed,
            accountId,
            email: input.email,
            firstName: input.firstName ?? null,
            lastName: input.lastName ?? null,
            language: input.language ?? null,
            attributes: input.attributes ?? {},
            status: input.status,
          });
          const given = (Object.keys(COLUMN_OF) as PatchField[]).filter(
            (field) => input[field] !== undefined && input[field] !== null,
          );
          await recordAudit(trx, ctx, {
            accountId,
            action: 'contact.created',
            entityType: 'contact',
            entityId: row.id,
            changedFields: given,
          });
          await appendEvents(trx, accountId, [
            contactEvent('contact.created', row.id, { source: 'api', importId: null }),
          ]);
          return row;
        });
      } catch (err) {
        // Two creations of one address racing: the unique index decides.
        if (isDuplicateEmail(err)) throw contactExists();
        throw err;
      }
    },

    /**
     * Applies a partial update. With `expectedVersion`, refuses (412) when someone changed the
     * contact since. A restricted contact accepts rectification only (409 `restricted`).
     */
    async update(
      ctx: RequestContext,
      accountId: string,
      id: string,
      patch: ContactPatch,
      expectedVersion?: number,
    ) {
      try {
        return await db
          .transaction()
          .execute((trx) => updateInTrx(trx, ctx, accountId, id, patch, expectedVersion));
      } catch (err) {
        if (isDuplicateEmail(err)) throw contactExists();
        throw err;
      }
    },
    updateInTrx,

    /** Art. 18: restricts processing; restricting again only updates the reason. */
    async restrict(ctx: RequestContext, accountId: string, id: string, reason: string) {
      return db.transaction().execute((trx) => restrictInTrx(trx, ctx, accountId, id, reason));
    },
    restrictInTrx,

    /** Art. 18(3): lifting a restriction is an explicit, audited act. Idempotent. */
    async liftRestriction(ctx: RequestContext, accountId: string, id: string) {
      return db.transaction().execute(async (trx) => {
        const current = await lockOrThrow(trx, accountId, id);
        if (!current.restricted_at) return current;
        const updated = await updateContact(trx, current, {
          restricted_at: null,
          restriction_reason: null,
        });
        await recordAudit(trx, ctx, {
          accountId,
          action: 'contact.restriction_lifted',
          entityType: 'contact',
          entityId: id,
          changedFields: ['restrictedAt', 'restrictionReason'],
        });
        await appendEvents(trx, accountId, [contactEvent('contact.restriction_lifted', id)]);
        return updated;
      });
    },

    /** Art. 17 erasure in its own transaction; see {@link eraseInTrx}. */
    async erase(ctx: RequestContext, accountId: string, id: string) {
      await db.transaction().execute((trx) => eraseInTrx(trx, ctx, accountId, id));
      erased();
    },
    eraseInTrx,
    /** Call after a transaction that ran {@link eraseInTrx} has committed. */
    erased,

    /**
     * Art. 15 (access) and 20 (portability): everything held about the contact, as JSON. The
     * export itself is audited (who obtained the data, not the data).
     */
    async exportData(ctx: RequestContext, accountId: string, id: string, encrypted: boolean) {
      return db.transaction().execute((trx) => exportDataInTrx(trx, ctx, accountId, id, encrypted));
    },
    exportDataInTrx,
  };
  return service;

  /** {@link update} inside the caller's transaction (a duplicate address aborts it). */
  async function updateInTrx(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    id: string,
    patch: ContactPatch,
    expectedVersion?: number,
  ): Promise<ContactRow> {
    const current = await lockOrThrow(trx, accountId, id);
    if (expectedVersion !== undefined && current.version !== expectedVersion) {
      throw new PreconditionFailedError();
    }
    const changes: ContactColumns = {};
    const changed: PatchField[] = [];
    for (const field of Object.keys(COLUMN_OF) as PatchField[]) {
      const value = patch[field];
      if (value === undefined) continue;
      const column = COLUMN_OF[field];
      const same =
        field === 'attributes'
          ? canonicalJson(value) === canonicalJson(current.attributes)
          : value === current[column];
      if (same) continue;
      changed.push(field);
      (changes as Record<string, unknown>)[column] = value;
    }
    if (changed.length === 0) return current;
    if (current.restricted_at) {
      const refused = changed.filter((field) => !RECTIFICATION_FIELDS.has(field));
      if (refused.length > 0) {
        throw restrictedError(
          `The contact is restricted (Art. 18): only rectification (email, firstName, ` +
            `lastName, language) is allowed; refused: ${refused.join(', ')}.`,
        );
      }
    }
    if (changes.email !== undefined) {
      if (await findContactIdByEmail(trx, accountId, changes.email)) throw contactExists();
      // Rectifying to an erased address would bring it back.
      if (await isSuppressed(trx, accountId, emailFingerprint(hashSecret, changes.email))) {
        throw suppressedError();
      }
      // Art. 17: an erasure must also suppress the address being left behind.
      await rememberEarlierAddress(trx, accountId, id, emailFingerprint(hashSecret, current.email));
    }
    const updated = await updateContact(trx, current, changes);
    await recordAudit(trx, ctx, {
      accountId,
      action: 'contact.updated',
      entityType: 'contact',
      entityId: id,
      changedFields: changed,
    });
    await appendEvents(trx, accountId, [
      contactEvent('contact.rectified', id, { changedFields: changed }),
    ]);
    return updated;
  }

  /** {@link restrict} inside the caller's transaction. */
  async function restrictInTrx(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    id: string,
    reason: string,
  ): Promise<ContactRow> {
    const current = await lockOrThrow(trx, accountId, id);
    if (current.restricted_at && current.restriction_reason === reason) return current;
    const changes: ContactColumns = { restriction_reason: reason };
    const changedFields = ['restrictionReason'];
    if (!current.restricted_at) {
      changes.restricted_at = new Date();
      changedFields.unshift('restrictedAt');
    }
    const updated = await updateContact(trx, current, changes);
    await recordAudit(trx, ctx, {
      accountId,
      action: 'contact.restricted',
      entityType: 'contact',
      entityId: id,
      changedFields,
    });
    // A new reason for a restriction already in force changes nothing downstream.
    if (!current.restricted_at) {
      await appendEvents(trx, accountId, [contactEvent('contact.restricted', id)]);
    }
    return updated;
  }

  /**
   * Art. 17 erasure inside the caller's transaction: the addresses survive only as keyed hashes
   * (on the suppression list — the current one and every earlier one — and in the erasure
   * record); the contact, its address history, its consent ledger and links, its events and
   * any stored idempotent response or import key that names it are forgotten, each by the
   * module that owns the table. Call {@link erased} once the transaction has committed.
   */
  async function eraseInTrx(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    id: string,
    options: { dataSubjectRequestId?: string } = {},
  ): Promise<void> {
    const current = await lockOrThrow(trx, accountId, id);
    const fingerprint = emailFingerprint(hashSecret, current.email);
    const held = new Set([fingerprint, ...(await earlierAddressHashes(trx, accountId, id))]);
    await suppress(trx, accountId, held, 'erased');
    // A client-chosen key is personal data when it holds one of the addresses; earlier
    // addresses are known only by their hashes, so candidates in the key are hashed too.
    const keyNames = (key: string) =>
      key.toLowerCase().includes(current.email) ||
      addressesWithin(key).some((address) => held.has(emailFingerprint(hashSecret, address)));
    await insertErasure(trx, {
      accountId,
      contactId: id,
      emailHash: fingerprint,
      requestId: ctx.requestId,
      dataSubjectRequestId: options.dataSubjectRequestId,
    });
    for (const forget of deps.forgetters ?? []) {
      await forget(trx, accountId, { contactId: id, fingerprints: [...held] });
    }
    await forgetContactConsents(trx, accountId, id);
    await forgetIdempotentRequests(
      trx,
      accountId,
      { contactId: id, email: current.email },
      keyNames,
    );
    await forgetImportKeys(trx, accountId, keyNames);
    await deleteContact(trx, accountId, id);
    // Appended after the deletion, which took the contact's other events: this one stays, so
    // the customer's systems learn that they must forget the contact too (Art. 17(2), 19). It
    // holds ids only; the contact's id stays an opaque id that no longer leads anywhere.
    await appendEvents(trx, accountId, [
      contactEvent('contact.erased', id, {
        dataSubjectRequestId: options.dataSubjectRequestId ?? null,
      }),
    ]);
    await recordAudit(trx, ctx, {
      accountId,
      action: 'contact.erased',
      entityType: 'contact',
      entityId: id,
      changedFields: ['email', 'firstName', 'lastName', 'language', 'attributes', 'consents'],
    });
  }

  /** Vacuums the erased data's dead row versions soon (see `debouncedVacuum`). */
  function erased(): void {
    deps.onErased?.();
  }

  /** {@link exportData} inside the caller's transaction (the audit entry is part of it). */
  async function exportDataInTrx(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    id: string,
    encrypted: boolean,
  ) {
    const contact = await findContact(trx, accountId, id);
    if (!contact) throw notFound();
    const events = await contactConsentLedger(trx, accountId, id);
    const current = await currentConsentEvents(trx, accountId, id);
    const audit = await entityAuditTrail(trx, accountId, { type: 'contact', id });
    const notifications = await contactEvents(trx, accountId, id);
    const sections: Record<string, unknown> = {};
    for (const section of deps.exportSections ?? []) {
      Object.assign(sections, await section(trx, accountId, id));
    }
    await recordAudit(trx, ctx, {
      accountId,
      action: 'contact.exported',
      entityType: 'contact',
      entityId: id,
      changedFields: encrypted ? ['encrypted'] : [],
    });
    return {
      generatedAt: new Date().toISOString(),
      contact: toContact(contact),
      consents: {
        current: current.map((row) => toCurrentConsent(row, deriveState(row.event, row.method))),
        events: events.map(toConsentEvent),
      },
      auditEvents: audit.map((row) => ({
        id: row.id,
        occurredAt: toIso(row.occurred_at),
        action: row.action,
        actor: { type: row.actor_type, id: row.actor_id },
        changedFields: row.changed_fields,
      })),
      notifications: notifications.map((row) => ({
        type: row.type,
        occurredAt: toIso(row.created_at),
        purposeId: typeof row.data.purposeId === 'string' ? row.data.purposeId : null,
      })),
      ...sections,
    };
  }
}

export type ContactsService = ReturnType<typeof createContactsService>;

/** The list's filter from its query (or a body holding the same fields, `ContactFilter`). */
export function contactListFilter(query: ContactFilterInput): ContactListFilter {
  return {
    email: query.email,
    status: query.status,
    restricted: query.restricted,
    updatedSince: query.updatedSince,
    consent:
      query.consentPurposeId && query.consentState
        ? { purposeId: query.consentPurposeId, state: query.consentState }
        : undefined,
    importId: query.importId,
  };
}

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself.
 */
export {
  type ContactListFilter,
  type ContactUpsert,
  clearSuppressedUntilConfirmed,
  contactAddresses,
  contactIdsPage,
  findContactRef,
  findContactsByEmail,
  type LockedContact,
  lockContact,
  markedUntilConfirmed,
  recordImportedContacts,
  restrictedEmails,
  upsertContacts,
} from './contacts.repository.js';
