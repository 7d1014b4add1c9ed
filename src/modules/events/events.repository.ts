import type { Transaction } from 'kysely';
import { type Kysely, sql } from 'kysely';
import { cursors, keysetFeed } from '../../db/keyset.js';
import type { DB, EventRow } from '../../db/schema.js';
import type { LinkSealer } from '../../lib/link-sealing.js';
import { lockAccountJournal } from '../audit/audit.service.js';

/** What the customer's systems are told about (the outbox feed at `GET /v1/events`). */
export const EVENT_TYPES = [
  'contact.created',
  'contact.rectified',
  'contact.restricted',
  'contact.restriction_lifted',
  'contact.erased',
  'consent.granted',
  'consent.confirmation_requested',
  'consent.confirmed',
  'consent.withdrawn',
  'data_subject_request.received',
  'data_subject_request.identity_verification_requested',
  'data_subject_request.identity_verified',
  'data_subject_request.extended',
  'data_subject_request.completed',
  'data_subject_request.rejected',
  'data_subject_request.cancelled',
  'data_subject_request.due_soon',
  'data_subject_request.overdue',
  'breach_incident.created',
  'breach_incident.assessed',
  'breach_incident.notified',
  'breach_incident.closed',
  'breach_incident.deadline_approaching',
  'breach_incident.deadline_passed',
  'breach_incident.subject_notice_exemption_recorded',
  'breach_incident.subject_notices_ready',
  'breach_incident.reported_by_processor',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface NewEvent {
  type: EventType;
  /**
   * The contact the event is about; its events are deleted when it is erased (all but
   * `contact.erased` itself, appended after the deletion).
   */
  contactId: string | null;
  /** Ids, codes and links only: never an address or a name. */
  data: Record<string, unknown>;
}

/** A link as `events.data` stores it: encrypted, opened only when the feed is served. */
export interface StoredLink {
  sealedUrl: string;
  expiresAt: string;
}

function linkContext(accountId: string, consentEventId: string): string {
  return `events/${accountId}/${consentEventId}`;
}

function requestLinkContext(accountId: string, requestId: string): string {
  return `events/${accountId}/data-subject-requests/${requestId}`;
}

/** A data-subject request's identity-verification link for `events.data`, sealed likewise. */
export function storedRequestLink(
  sealer: LinkSealer,
  accountId: string,
  requestId: string,
  link: { url: string; expiresAt: string },
): StoredLink {
  return {
    sealedUrl: sealer.seal(link.url, requestLinkContext(accountId, requestId)),
    expiresAt: link.expiresAt,
  };
}

/**
 * A consent event's link (a double opt-in confirmation) for `events.data`. The link acts for
 * the contact, so it is stored sealed (see `lib/link-sealing.ts`), never in clear.
 */
export function storedLink(
  sealer: LinkSealer,
  accountId: string,
  consentEventId: string,
  link: { url: string; expiresAt: string },
): StoredLink {
  return {
    sealedUrl: sealer.seal(link.url, linkContext(accountId, consentEventId)),
    expiresAt: link.expiresAt,
  };
}

/**
 * An event's data as the feed serves it: a sealed `confirmation` opened back into its `url`
 * (null when it cannot be opened, e.g. after HASH_SECRET was changed). Events written before
 * links were sealed hold `url` in clear and are served as they are; those links expire within
 * CONSENT_TOKEN_TTL_HOURS of being written.
 */
export function servedEventData(sealer: LinkSealer, row: EventRow): Record<string, unknown> {
  const verification = row.data.verification as Partial<StoredLink> | undefined;
  if (typeof verification?.sealedUrl === 'string') {
    const { sealedUrl, ...rest } = verification;
    const context = requestLinkContext(row.account_id, String(row.data.requestId));
    return { ...row.data, verification: { url: sealer.open(sealedUrl, context), ...rest } };
  }
  const confirmation = row.data.confirmation as Partial<StoredLink> | undefined;
  if (typeof confirmation?.sealedUrl !== 'string') return row.data;
  const { sealedUrl, ...rest } = confirmation;
  const url = sealer.open(sealedUrl, linkContext(row.account_id, String(row.data.consentEventId)));
  return { ...row.data, confirmation: { url, ...rest } };
}

/**
 * Appends events in the caller's transaction, so they exist exactly when the change does. The
 * account's journal lock makes `seq` follow commit order within the account: a reader that
 * saw `seq` N never later finds a newly committed event below N. `seq` is a position within
 * the account (1, 2, 3, …, from the account's counter, never reused even when an erasure
 * deletes the newest events), so the feed tells nothing of other accounts' volume. One
 * statement whatever the number of events: the counter moves by all of them at once.
 */
export async function appendEvents(
  trx: Transaction<DB>,
  accountId: string,
  events: NewEvent[],
): Promise<void> {
  if (events.length === 0) return;
  await lockAccountJournal(trx, accountId);
  const rows = events.map((event, i) => ({
    ord: i + 1,
    type: event.type,
    contact_id: event.contactId,
    data: event.data,
  }));
  await sql`
    with counter as (
      insert into event_counters as c (account_id, last_seq)
      values (${accountId}::uuid, ${rows.length}::bigint)
      on conflict (account_id) do update set last_seq = c.last_seq + excluded.last_seq
      returning last_seq - ${rows.length}::bigint as first_before
    )
    insert into events (account_id, seq, type, contact_id, data)
    select ${accountId}::uuid, counter.first_before + u.ord, u.type, u.contact_id, u.data
    from counter, json_to_recordset(${JSON.stringify(rows)}::json)
      as u(ord int, type text, contact_id uuid, data jsonb)
    order by u.ord`.execute(trx);
}

/** One read of the account's feed in seq order, after the reader's cursor. */
export function listEvents(
  db: Kysely<DB>,
  accountId: string,
  query: { cursor?: string | undefined; limit: number; types?: EventType[] | undefined },
): Promise<{ rows: EventRow[]; nextCursor: string }> {
  let q = db.selectFrom('events').selectAll().where('account_id', '=', accountId);
  if (query.types?.length) q = q.where('type', 'in', query.types);
  return keysetFeed(q, {
    codec: cursors.eventSeq,
    keys: [
      { column: 'seq', cursorValue: (row) => Number(row.seq), toSql: (v) => sql`${v}::bigint` },
    ],
    limit: query.limit,
    cursor: query.cursor,
    start: [0],
  });
}

/** Art. 15: the events that concern a contact, in feed order (for its data export). */
export async function contactEvents(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<Pick<EventRow, 'type' | 'created_at' | 'data'>[]> {
  return db
    .selectFrom('events')
    .select(['type', 'created_at', 'data'])
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .orderBy('seq')
    .execute();
}

type Db = Kysely<DB> | Transaction<DB>;

/** The newest seq of the account's feed, 0 before its first event. */
export async function latestEventSeq(db: Db, accountId: string): Promise<number> {
  const row = await db
    .selectFrom('events')
    .select(sql<string | number | null>`max(seq)`.as('seq'))
    .where('account_id', '=', accountId)
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/** One event by its seq; undefined once it is gone (erased with its contact). */
export async function findEventBySeq(
  db: Db,
  accountId: string,
  seq: number,
): Promise<EventRow | undefined> {
  return db
    .selectFrom('events')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('seq', '=', sql<number>`${seq}::bigint`)
    .executeTakeFirst();
}

/**
 * The account's events with the given seqs, by seq; an erased one is missing. Seqs close
 * together (a worker's claim of a fan-out, typically consecutive) are read as one range of the
 * key, one index descent instead of one per seq.
 */
export async function findEventsBySeqs(
  db: Db,
  accountId: string,
  seqs: number[],
): Promise<Map<number, EventRow>> {
  if (seqs.length === 0) return new Map();
  let min = seqs[0]!;
  let max = min;
  for (const seq of seqs) {
    if (seq < min) min = seq;
    if (seq > max) max = seq;
  }
  const q = db.selectFrom('events').selectAll().where('account_id', '=', accountId);
  if (max - min < 2 * seqs.length) {
    const wanted = new Set(seqs);
    const rows = await q
      .where('seq', '>=', sql<number>`${min}::bigint`)
      .where('seq', '<=', sql<number>`${max}::bigint`)
      .execute();
    const found = new Map<number, EventRow>();
    for (const row of rows) {
      const seq = Number(row.seq);
      if (wanted.has(seq)) found.set(seq, row);
    }
    return found;
  }
  const rows = await q.where('seq', '=', sql<number>`any(${seqs.map(String)}::bigint[])`).execute();
  return new Map(rows.map((row) => [Number(row.seq), row]));
}

/** The seqs of the events about a contact (an erasure cancels what is still to be sent). */
export async function contactEventSeqs(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
): Promise<number[]> {
  const rows = await trx
    .selectFrom('events')
    .select('seq')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .execute();
  return rows.map((row) => Number(row.seq));
}
