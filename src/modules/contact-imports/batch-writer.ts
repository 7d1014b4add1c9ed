import { type Kysely, sql, type Transaction } from 'kysely';
import type { DB } from '../../db/schema.js';
import type { LinkSealer } from '../../lib/link-sealing.js';
import {
  type AppendedConsent,
  appendImportedConsents,
  type ConsentAppend,
  consentEvent,
  issueConsentLinks,
} from '../consents/consents.service.js';
import {
  type ContactUpsert,
  findContactsByEmail,
  recordImportedContacts,
  restrictedEmails,
  upsertContacts,
} from '../contacts/contacts.service.js';
import { appendEvents, type NewEvent, storedLink } from '../events/events.service.js';
import { purposeLookups } from '../purposes/purposes.service.js';
import {
  grantAllowed,
  MUST_CONFIRM_FIRST,
  mustConfirmFirst,
  suppressedFingerprints,
} from '../suppressions/suppressions.service.js';
import {
  advanceImportJob,
  type BatchProgress,
  insertRowErrors,
  type NewRowError,
} from './contact-imports.repository.js';
import type { BodyCheckpoint } from './import-body.js';
import type { ImportBatch, ImportFormat, ImportRow, ParsedImportRow } from './parser/index.js';

/**
 * The set-based write of one import batch, in one transaction: the rules a row must meet
 * (purpose, notice version, suppression, restriction) checked for the whole batch at once, then
 * the contacts upserted and the consents appended through their owners' set-form functions,
 * with the batch's row errors and the job's counters and checkpoint.
 */

/** A batch with each distinct address's keyed hash (for the suppression check). */
export type PreparedBatch = ImportBatch & {
  fingerprints: Map<string, string>;
  checkpoint: BodyCheckpoint;
};

export interface PurposeRef {
  id: string;
  key: string;
}

/** A consent event of the batch before its contact has an id. */
type ConsentDraft = Omit<ConsentAppend, 'contact_id'> & { email: string };

/** The row errors of one batch, and which rows they rejected. */
interface RowReport {
  errors: NewRowError[];
  rejectedRows: Set<number>;
  refuse(rowNumber: number, field: string | null, code: string, message: string): void;
}

export interface WriterDeps {
  db: Kysely<DB>;
  asyncCommit: boolean;
  accountId: string;
  importId: string;
  attempt: number;
  format: ImportFormat;
  actor: { type: string; id: string | null };
  pendingPurpose: (PurposeRef & { noticeVersion: number | null }) | null;
  consentTokenTtlHours: number;
  /** Seals the confirmation links written to the event feed. */
  sealer: LinkSealer;
  maxStoredErrors: number;
}

/**
 * Double opt-in for imported rows: each new pending consent gets a single-use confirmation
 * link, announced on the event feed (`consent.confirmation_requested`) for the customer's mail
 * system to send. The events are returned for the caller to append in the batch's transaction,
 * so a link exists exactly when its consent does.
 */
async function confirmationRequests(
  trx: Transaction<DB>,
  accountId: string,
  pending: AppendedConsent[],
  ttlHours: number,
  sealer: LinkSealer,
): Promise<NewEvent[]> {
  if (pending.length === 0) return [];
  const expiresAt = new Date(Date.now() + ttlHours * 3_600_000);
  const links = await issueConsentLinks(
    trx,
    'confirm',
    pending.map((event) => ({ ...event, account_id: accountId })),
    expiresAt,
  );
  return pending.map((event, i) =>
    consentEvent(event, storedLink(sealer, accountId, event.id, links[i]!)),
  );
}

/**
 * Every statement of a batch looks up at most a batch's worth of keys in tables that may hold
 * millions of rows: index lookups are right whatever the statistics say. Without this, a table
 * that grew since it was last analysed (a first big import, before autovacuum gets to it) is
 * planned as small, and hashing or scanning all of it makes each batch slower than the last.
 * JIT compiling pays off only for long queries, never for these.
 *
 * On a Postgres server, a batch's commit does not wait for its WAL to reach the disk
 * (`asyncCommit`, `synchronous_commit = off`): waiting for one flush per 1,000 rows made
 * imports crawl whenever the disk was busy. It is safe there: the server outlives a crash of
 * this process, and only a crash of Postgres itself may lose the last batches (under a second
 * of work), always whole and together with the job's counters and checkpoint, so the job says
 * exactly what is there and a retry with the same Idempotency-Key redoes the rest. The embedded
 * engine runs inside this process, so a crash of the process is a crash of the database: there
 * commits stay synchronous, and a batch reported done stays done.
 */
export async function tuneBatchTransaction(trx: Transaction<DB>, asyncCommit: boolean) {
  await sql`select set_config('enable_hashjoin', 'off', true),
    set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true),
    set_config('jit', 'off', true),
    set_config('synchronous_commit', ${asyncCommit ? 'off' : 'on'}, true)`.execute(trx);
}

/** Writes batches of one import, with caches of the purposes and notice versions it saw. */
export function batchWriter(deps: WriterDeps) {
  const { db, accountId, importId, format } = deps;
  const purposeIds = new Map<string, string | null>();
  const notices = new Map<string, boolean>();
  const fieldName = (ndjson: string) =>
    format === 'csv'
      ? `consent_${ndjson.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`
      : `consent.${ndjson}`;

  async function resolve(trx: Transaction<DB>, rows: ImportRow[]) {
    const missing = [
      ...new Set(rows.flatMap((row) => (row.consent ? [row.consent.purpose] : []))),
    ].filter((key) => !purposeIds.has(key));
    const found = await purposeLookups.idsByKey(trx, accountId, missing);
    for (const key of missing) purposeIds.set(key, found.get(key) ?? null);
    for (const row of rows) {
      if (!row.consent) continue;
      const id = purposeIds.get(row.consent.purpose);
      if (!id) continue;
      const noticeKey = `${id}:${row.consent.noticeVersion}`;
      if (!notices.has(noticeKey)) {
        notices.set(
          noticeKey,
          await purposeLookups.noticeVersionExists(trx, accountId, id, row.consent.noticeVersion),
        );
      }
    }
  }

  /** The batch's row errors so far: the parser's, then those found against the database. */
  function rowReport(batch: PreparedBatch): RowReport {
    const report: RowReport = {
      errors: [],
      rejectedRows: new Set(),
      refuse(rowNumber, field, code, message) {
        report.errors.push({ rowNumber, field, code, message });
        report.rejectedRows.add(rowNumber);
      },
    };
    for (const rejected of batch.rejected) {
      for (const error of rejected.errors) {
        report.refuse(rejected.rowNumber, error.field, error.code, error.message);
      }
    }
    return report;
  }

  /**
   * Row-level checks that need the database: a known purpose and notice version, a purpose for
   * rows without consent, and the suppression rule. A row with any problem is skipped whole.
   */
  async function admissibleRows(trx: Transaction<DB>, batch: PreparedBatch, report: RowReport) {
    const { fingerprints } = batch;
    const suppressed = await suppressedFingerprints(trx, accountId, [
      ...new Set(fingerprints.values()),
    ]);
    const isSuppressed = (email: string) => suppressed.has(fingerprints.get(email)!);
    const emails = [...fingerprints.keys()];
    const mustConfirm = await mustConfirmFirst(trx, accountId, emails, emails.filter(isSuppressed));
    const refuse = report.refuse;
    const candidates = batch.rows.filter(({ rowNumber, row }) => {
      let ok = true;
      if (row.consent) {
        const purposeId = purposeIds.get(row.consent.purpose);
        if (!purposeId) {
          refuse(rowNumber, fieldName('purpose'), 'unknown_purpose', 'no purpose has this key');
          ok = false;
        } else if (!notices.get(`${purposeId}:${row.consent.noticeVersion}`)) {
          refuse(
            rowNumber,
            fieldName('noticeVersion'),
            'unknown_notice_version',
            'the purpose has no notice version with this number',
          );
          ok = false;
        }
      } else if (!deps.pendingPurpose) {
        refuse(
          rowNumber,
          'consent',
          'pending_purpose_missing',
          'rows without consent need the query parameter purpose (the double opt-in purpose)',
        );
        ok = false;
      }
      // Art. 17: an erased address comes back only through a fresh double opt-in.
      const doubleOptIn = row.pendingDoubleOptIn || row.consent?.method === 'double_opt_in';
      const method = doubleOptIn ? 'double_opt_in' : (row.consent?.method ?? '');
      if (!grantAllowed(method, mustConfirm.has(row.email))) {
        refuse(rowNumber, 'email', 'suppressed', MUST_CONFIRM_FIRST);
        ok = false;
      }
      return ok;
    });
    return { candidates, isSuppressed };
  }

  /** Art. 18: a restricted contact's data is only stored; an import must not change it. */
  async function withoutRestricted(
    trx: Transaction<DB>,
    candidates: ParsedImportRow[],
    report: RowReport,
  ): Promise<ParsedImportRow[]> {
    const restricted = await restrictedEmails(trx, accountId, [
      ...new Set(candidates.map(({ row }) => row.email)),
    ]);
    return candidates.filter(({ rowNumber, row }) => {
      if (!restricted.has(row.email)) return true;
      report.refuse(
        rowNumber,
        null,
        'restricted',
        'the contact is restricted (Art. 18) and was left unchanged',
      );
      return false;
    });
  }

  /**
   * Duplicates within the batch merge in file order: a later row's given fields win, absent
   * fields keep the earlier value, attributes merge key by key — the same result as writing the
   * rows one after the other. Identical consent events are kept once.
   */
  function mergeRows(accepted: ParsedImportRow[], isSuppressed: (email: string) => boolean) {
    const contacts = new Map<string, ContactUpsert>();
    const consents = new Map<string, ConsentDraft>();
    for (const { row } of accepted) {
      const previous = contacts.get(row.email);
      contacts.set(row.email, {
        email: row.email,
        first_name: row.firstName ?? previous?.first_name ?? null,
        last_name: row.lastName ?? previous?.last_name ?? null,
        language: row.language ?? previous?.language ?? null,
        attributes: { ...previous?.attributes, ...(row.attributes as Record<string, unknown>) },
        // A new contact at an erased address is re-admitted: see mustConfirmFirst.
        ...(isSuppressed(row.email) ? { suppressed_until_confirmed: true } : {}),
      });
      const event = consentDraft(row);
      if (event) {
        const key = event.pending_only_if_none
          ? `${event.email}|${event.purpose_id}|pending`
          : `${event.email}|${event.purpose_id}|${event.notice_version}|${event.occurred_at}|${event.method}`;
        if (!consents.has(key)) consents.set(key, event);
      }
    }
    return { contacts, consents };
  }

  /** The row's consent evidence, or the import's pending double opt-in grant, or nothing. */
  function consentDraft(row: ImportRow): ConsentDraft | null {
    if (row.consent) {
      return {
        email: row.email,
        purpose_id: purposeIds.get(row.consent.purpose)!,
        notice_version: row.consent.noticeVersion,
        method: row.consent.method,
        occurred_at: row.consent.grantedAt,
        ip: row.consent.ip ?? null,
        user_agent: row.consent.userAgent ?? null,
        source_url: row.consent.sourceUrl ?? null,
        pending_only_if_none: false,
      };
    }
    if (!deps.pendingPurpose) return null;
    return {
      email: row.email,
      purpose_id: deps.pendingPurpose.id,
      notice_version: deps.pendingPurpose.noticeVersion,
      method: 'double_opt_in',
      occurred_at: new Date().toISOString(),
      ip: null,
      user_agent: null,
      source_url: null,
      pending_only_if_none: true,
    };
  }

  /**
   * Upserts the contacts and appends their consents through the owners' set-form functions,
   * then requests confirmations for the new pending grants. Returns how many were inserted.
   */
  async function writeContactsAndConsents(
    trx: Transaction<DB>,
    contacts: Map<string, ContactUpsert>,
    consents: Map<string, ConsentDraft>,
  ): Promise<number> {
    const upserted = await upsertContacts(trx, accountId, [...contacts.values()]);
    const inserted = upserted.filter((contact) => contact.inserted).length;
    // Contacts the upsert left unchanged are not returned (none in a first import, all in
    // a re-run): look those up by email.
    const ids = new Map(upserted.map((contact) => [contact.email, contact.id]));
    const unchanged = [...contacts.keys()].filter((email) => !ids.has(email));
    for (const contact of await findContactsByEmail(trx, accountId, unchanged)) {
      ids.set(contact.email, contact.id);
    }
    // Which people the file held, for selections by import (a breach notice, the list filter).
    await recordImportedContacts(trx, accountId, importId, [...ids.values()]);
    const appended = await appendImportedConsents(
      trx,
      accountId,
      deps.actor,
      [...consents.values()].map(({ email, ...event }) => ({
        ...event,
        contact_id: ids.get(email)!,
      })),
    );
    // Pending double opt-in grants (as deriveState defines them) each need a confirmation link.
    const confirmations = await confirmationRequests(
      trx,
      accountId,
      appended.filter((event) => event.method === 'double_opt_in'),
      deps.consentTokenTtlHours,
      deps.sealer,
    );
    // The feed, in the batch's transaction: a `contact.created` per new contact, then the
    // confirmation requests and a `consent.granted` per grant imported with its evidence. One
    // event per grant, not one per batch listing ids: it has the shape of a grant recorded
    // through the API (consumers handle one type one way), a webhook delivers and retries it
    // per contact, and an erasure takes it with its contact, where a batch event would keep
    // naming erased contacts. The cost is more rows in the one insert of the batch's events.
    await appendEvents(trx, accountId, [
      ...upserted
        .filter((contact) => contact.inserted)
        .map(
          (contact): NewEvent => ({
            type: 'contact.created',
            contactId: contact.id,
            data: { contactId: contact.id, source: 'import', importId },
          }),
        ),
      ...confirmations,
      ...appended
        .filter((event) => event.method !== 'double_opt_in')
        .map((event) => consentEvent(event)),
    ]);
    return inserted;
  }

  return {
    /** Writes one batch; `storedErrors`: the job's row errors stored so far (for the cap). */
    async write(batch: PreparedBatch, storedErrors: number): Promise<BatchProgress> {
      return db.transaction().execute(async (trx) => {
        await tuneBatchTransaction(trx, deps.asyncCommit);
        const report = rowReport(batch);
        await resolve(
          trx,
          batch.rows.map((parsed) => parsed.row),
        );
        const { candidates, isSuppressed } = await admissibleRows(trx, batch, report);
        const accepted = await withoutRestricted(trx, candidates, report);
        const { contacts, consents } = mergeRows(accepted, isSuppressed);
        const inserted = await writeContactsAndConsents(trx, contacts, consents);
        // The report keeps the first errors only: past the cap a file of garbage would store
        // many times its own size. The job still counts them all.
        const { errors } = report;
        const stored = errors.slice(0, Math.max(0, deps.maxStoredErrors - storedErrors));
        await insertRowErrors(trx, accountId, importId, stored);
        const progress: BatchProgress = {
          rows: batch.rows.length + batch.rejected.length,
          created: inserted,
          updated: accepted.length - inserted,
          rejected: report.rejectedRows.size,
          lastRow: batch.lastRowNumber,
          errors: errors.length,
          storedErrors: stored.length,
          checkpoint: batch.checkpoint,
        };
        await advanceImportJob(trx, accountId, importId, deps.attempt, progress);
        return progress;
      });
    },
  };
}
