import { type Kysely, sql, type Transaction } from 'kysely';
import type { ContactRow, ContactStatus, DB } from '../../db/schema.js';
import { type ConsentState, consentStateCondition } from '../consents/consents.service.js';

/**
 * Contacts: rows of one account at a time. Reads take a `Kysely` or a transaction; writes and
 * locks take the caller's transaction.
 */

const UNIQUE_EMAIL_INDEX = 'contacts_email_key';

export function isDuplicateEmail(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  return (
    e.code === '23505' &&
    (e.constraint === UNIQUE_EMAIL_INDEX || !!e.message?.includes(UNIQUE_EMAIL_INDEX))
  );
}

export async function findContact(
  db: Kysely<DB>,
  accountId: string,
  id: string,
): Promise<ContactRow | undefined> {
  return db
    .selectFrom('contacts')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Reads and locks the row for the rest of the transaction. */
export async function lockContactRow(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<ContactRow | undefined> {
  return trx
    .selectFrom('contacts')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export interface LockedContact {
  id: string;
  email: string;
  status: string;
  language: string | null;
  restricted_at: Date | null;
}

/**
 * Locks the row until the transaction ends against changes to the contact (`FOR NO KEY UPDATE`:
 * rows that refer to it, such as consent events, may still be inserted). The consent ledger
 * appends one event at a time per contact under it, and a restriction cannot slip in between
 * its check and the write.
 */
export async function lockContact(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
): Promise<LockedContact | undefined> {
  return trx
    .selectFrom('contacts')
    .select(['id', 'email', 'status', 'language', 'restricted_at'])
    .where('account_id', '=', accountId)
    .where('id', '=', contactId)
    .forNoKeyUpdate()
    .executeTakeFirst();
}

/**
 * The contact's id, language and restriction, if it exists (what a ledger read, a receipt or a
 * consent link's page needs).
 */
export async function findContactRef(
  db: Kysely<DB> | Transaction<DB>,
  accountId: string,
  contactId: string,
) {
  return db
    .selectFrom('contacts')
    .select(['id', 'language', 'restricted_at'])
    .where('account_id', '=', accountId)
    .where('id', '=', contactId)
    .executeTakeFirst();
}

export async function findContactIdByEmail(
  db: Kysely<DB>,
  accountId: string,
  email: string,
): Promise<string | undefined> {
  const row = await db
    .selectFrom('contacts')
    .select('id')
    .where('account_id', '=', accountId)
    .where('email', '=', email)
    .executeTakeFirst();
  return row?.id;
}

export interface NewContact {
  accountId: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  language: string | null;
  attributes: Record<string, unknown>;
  status: ContactStatus;
  /** Created at a suppressed address: only double opt-in grants until one is confirmed. */
  suppressedUntilConfirmed?: boolean;
}

export async function insertContact(
  trx: Transaction<DB>,
  contact: NewContact,
): Promise<ContactRow> {
  return trx
    .insertInto('contacts')
    .values({
      account_id: contact.accountId,
      email: contact.email,
      first_name: contact.firstName,
      last_name: contact.lastName,
      language: contact.language,
      attributes: JSON.stringify(contact.attributes),
      status: contact.status,
      suppressed_until_confirmed: contact.suppressedUntilConfirmed ?? false,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface ContactColumns {
  email?: string;
  first_name?: string | null;
  last_name?: string | null;
  language?: string | null;
  attributes?: Record<string, unknown>;
  status?: ContactStatus;
  restricted_at?: Date | null;
  restriction_reason?: string | null;
}

/** Applies changed columns, bumps the version and `updated_at`. */
export async function updateContact(
  trx: Transaction<DB>,
  current: ContactRow,
  columns: ContactColumns,
): Promise<ContactRow> {
  const { attributes, ...rest } = columns;
  return trx
    .updateTable('contacts')
    .set({
      ...rest,
      ...(attributes !== undefined ? { attributes: JSON.stringify(attributes) } : {}),
      updated_at: sql<Date>`clock_timestamp()`,
      version: current.version + 1,
    })
    .where('account_id', '=', current.account_id)
    .where('id', '=', current.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface ContactListFilter {
  email?: string | undefined;
  status?: string | undefined;
  restricted?: boolean | undefined;
  updatedSince?: string | undefined;
  consent?: { purposeId: string; state: ConsentState } | undefined;
  /** Only the contacts this import wrote or confirmed. */
  importId?: string | undefined;
}

/**
 * The account's contacts matching the list filters, for keyset paging. The consent filter is
 * the ledger's own condition (the state derived from the newest event of the purpose).
 */
export function contactsQuery(db: Kysely<DB>, accountId: string, filter: ContactListFilter) {
  let q = db.selectFrom('contacts').selectAll().where('account_id', '=', accountId);
  if (filter.email !== undefined) q = q.where('email', '=', filter.email);
  if (filter.status !== undefined) {
    q = q.where('status', '=', filter.status as ContactStatus);
  }
  if (filter.restricted !== undefined) {
    q = q.where('restricted_at', filter.restricted ? 'is not' : 'is', null);
  }
  if (filter.updatedSince !== undefined) {
    q = q.where('updated_at', '>=', new Date(filter.updatedSince));
  }
  if (filter.importId !== undefined) {
    const importId = filter.importId;
    q = q.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('imported_contacts')
          .select(sql.lit(1).as('one'))
          .whereRef('imported_contacts.account_id', '=', 'contacts.account_id')
          .where('imported_contacts.import_id', '=', importId)
          .whereRef('imported_contacts.contact_id', '=', 'contacts.id'),
      ),
    );
  }
  if (filter.consent) {
    const { purposeId, state } = filter.consent;
    q = q.where(
      consentStateCondition(
        { accountId: 'contacts.account_id', id: 'contacts.id' },
        purposeId,
        state,
      ),
    );
  }
  return q;
}

/**
 * The ids of the account's contacts matching the list filters (and, with `ids`, among those),
 * in id order after `after`: a walk over a selection in bounded pages, for another module to
 * act on each contact (erased contacts are gone from the table, so never selected).
 */
export async function contactIdsPage(
  db: Kysely<DB>,
  accountId: string,
  filter: ContactListFilter & { ids?: readonly string[] | undefined },
  after: string | undefined,
  limit: number,
): Promise<string[]> {
  let q = contactsQuery(db, accountId, filter).clearSelect().select('contacts.id as id');
  if (filter.ids !== undefined) q = q.where('contacts.id', 'in', [...filter.ids]);
  if (after !== undefined) q = q.where('contacts.id', '>', after);
  const rows = await q.orderBy('contacts.id').limit(limit).execute();
  return rows.map((row) => row.id);
}

/** Where to reach each of the account's contacts `ids` (those that exist). */
export async function contactAddresses(
  db: Kysely<DB>,
  accountId: string,
  ids: readonly string[],
): Promise<
  {
    id: string;
    email: string;
    first_name: string | null;
    last_name: string | null;
    language: string | null;
  }[]
> {
  if (ids.length === 0) return [];
  return db
    .selectFrom('contacts')
    .select(['id', 'email', 'first_name', 'last_name', 'language'])
    .where('account_id', '=', accountId)
    .where('id', 'in', [...ids])
    .execute();
}

/**
 * Remembers an address the contact no longer holds, as its keyed hash only, so that erasure
 * can suppress it too (Art. 17). Holding it again and leaving it again is one row.
 */
export async function rememberEarlierAddress(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
  emailHash: string,
): Promise<void> {
  await trx
    .insertInto('contact_address_history')
    .values({ account_id: accountId, contact_id: contactId, email_hash: emailHash })
    .onConflict((oc) => oc.columns(['account_id', 'contact_id', 'email_hash']).doNothing())
    .execute();
}

/** The keyed hashes of every address the contact held before its current one. */
export async function earlierAddressHashes(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<string[]> {
  const rows = await db
    .selectFrom('contact_address_history')
    .select('email_hash')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .execute();
  return rows.map((row) => row.email_hash);
}

/**
 * The person confirmed a double opt-in: a contact re-admitted at an erased address may receive
 * other grants from now on. Call it in the transaction that records the confirmation.
 */
export async function clearSuppressedUntilConfirmed(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
): Promise<void> {
  await trx
    .updateTable('contacts')
    .set({ suppressed_until_confirmed: false })
    .where('account_id', '=', accountId)
    .where('id', '=', contactId)
    .where('suppressed_until_confirmed', '=', true)
    .execute();
}

/** Of `emails`, those whose contact is marked `suppressed_until_confirmed`. */
export async function markedUntilConfirmed(
  db: Kysely<DB>,
  accountId: string,
  emails: string[],
): Promise<Set<string>> {
  const rows = await db
    .selectFrom('contacts')
    .select('email')
    .where('account_id', '=', accountId)
    .where('email', '=', anyText(emails))
    .where('suppressed_until_confirmed', '=', true)
    .execute();
  return new Set(rows.map((row) => row.email));
}

/**
 * `= any($1::text[])`: a batch's keys as one array parameter. Postgres plans it exactly like an
 * `in (...)` list (an index scan with the array as its condition), but the client sends one
 * value instead of a thousand placeholders to compile and bind.
 */
function anyText(values: string[]) {
  return sql<string>`any(${values}::text[])`;
}

/** Art. 17: records that the contact was erased; only the keyed hash of its address remains. */
export async function insertErasure(
  trx: Transaction<DB>,
  erasure: {
    accountId: string;
    contactId: string;
    emailHash: string;
    requestId: string;
    dataSubjectRequestId?: string | undefined;
  },
): Promise<void> {
  await trx
    .insertInto('erasures')
    .values({
      account_id: erasure.accountId,
      contact_id: erasure.contactId,
      email_hash: erasure.emailHash,
      request_id: erasure.requestId,
      data_subject_request_id: erasure.dataSubjectRequestId ?? null,
    })
    .execute();
}

/**
 * Art. 17: deletes the contact, its address history, its consent ledger and its events, in the
 * erasure's transaction (after its `erasures` row). The service role may delete none of the
 * last three itself: `erase_contact()` runs as the tables' owner and refuses a contact whose
 * erasure is not recorded, and it takes the ledger only together with the contact.
 */
export async function deleteContact(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
): Promise<void> {
  await trx
    .deleteFrom('contact_address_history')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .execute();
  await sql`select erase_contact(${accountId}::uuid, ${contactId}::uuid)`.execute(trx);
}

export interface ExistingContact {
  id: string;
  email: string;
}

export async function findContactsByEmail(
  db: Kysely<DB>,
  accountId: string,
  emails: string[],
): Promise<ExistingContact[]> {
  if (emails.length === 0) return [];
  return db
    .selectFrom('contacts')
    .select(['id', 'email'])
    .where('account_id', '=', accountId)
    .where('email', '=', anyText(emails))
    .execute();
}

/** Which of these addresses belong to restricted contacts (Art. 18), through a small index. */
export async function restrictedEmails(
  db: Kysely<DB>,
  accountId: string,
  emails: string[],
): Promise<Set<string>> {
  if (emails.length === 0) return new Set();
  const rows = await db
    .selectFrom('contacts')
    .select('email')
    .where('account_id', '=', accountId)
    .where('email', '=', anyText(emails))
    .where('restricted_at', 'is not', null)
    .execute();
  return new Set(rows.map((row) => row.email));
}

export interface ContactUpsert {
  email: string;
  first_name: string | null;
  last_name: string | null;
  language: string | null;
  /** Shallow-merged into the stored attributes (`||`); `{}` changes nothing. */
  attributes: Record<string, unknown>;
  /** Set on insertion only (a re-admission at an erased address); absent means false. */
  suppressed_until_confirmed?: true;
}

/**
 * Inserts or updates a batch of contacts in one statement. Absent fields keep their stored
 * value; attributes are merged key by key. A restricted contact is never changed (Art. 18);
 * the caller filters those out before and this guard covers a restriction racing in. Rows
 * whose values would not change are not rewritten (no version bump). Returns the ids of the
 * contacts that were inserted.
 *
 * The rows travel as one JSON parameter expanded by `json_to_recordset`: one round trip, the
 * same on node-postgres and PGlite, and no per-row parameters. `json`, not `jsonb`: the text is
 * read once, as the rows are produced, instead of first being built into a `jsonb` value at
 * bind time (about 6 ms of a 1,000-row batch).
 */
/**
 * Records that the import `importId` wrote or confirmed the contacts `contactIds` (the
 * contact list's `importId` filter). In the batch's transaction; a batch run again after a
 * lost lease finds its rows already there.
 */
export async function recordImportedContacts(
  trx: Transaction<DB>,
  accountId: string,
  importId: string,
  contactIds: readonly string[],
): Promise<void> {
  if (contactIds.length === 0) return;
  await sql`
    insert into imported_contacts (account_id, import_id, contact_id)
    select ${accountId}::uuid, ${importId}::uuid, unnest(${contactIds}::uuid[])
    on conflict do nothing`.execute(trx);
}

export async function upsertContacts(
  trx: Transaction<DB>,
  accountId: string,
  rows: ContactUpsert[],
): Promise<{ id: string; email: string; inserted: boolean }[]> {
  if (rows.length === 0) return [];
  const result = await sql<{ id: string; email: string; inserted: boolean }>`
    insert into contacts (
      account_id, email, first_name, last_name, language, attributes, suppressed_until_confirmed
    )
    select ${accountId}::uuid, u.email, u.first_name, u.last_name, u.language, u.attributes,
      coalesce(u.suppressed_until_confirmed, false)
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as u(email text, first_name text, last_name text, language text, attributes jsonb,
        suppressed_until_confirmed boolean)
    on conflict (account_id, email) do update set
      first_name = coalesce(excluded.first_name, contacts.first_name),
      last_name = coalesce(excluded.last_name, contacts.last_name),
      language = coalesce(excluded.language, contacts.language),
      attributes = contacts.attributes || excluded.attributes,
      updated_at = clock_timestamp(),
      version = contacts.version + 1
    where contacts.restricted_at is null
      and (contacts.first_name, contacts.last_name, contacts.language, contacts.attributes)
        is distinct from (
          coalesce(excluded.first_name, contacts.first_name),
          coalesce(excluded.last_name, contacts.last_name),
          coalesce(excluded.language, contacts.language),
          contacts.attributes || excluded.attributes
        )
    returning id, email, (xmax = 0) as inserted`.execute(trx);
  return result.rows;
}
