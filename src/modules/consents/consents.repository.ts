import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { cursors, type KeysetPage, keysetPage } from '../../db/keyset.js';
import type { ConsentEventKind, ConsentEventRow, DB } from '../../db/schema.js';
import { CONSENT_LINK_PATHS, type ConsentLinkKind, newConsentLinkToken } from './consent-links.js';

/**
 * The consent ledger (Art. 7): an append-only table of events per contact and purpose. The
 * current state is derived from it, never stored apart from it: the newest event for a
 * (contact, purpose), by `recorded_at` then `id`, decides.
 */

export type ConsentState = 'pending' | 'granted' | 'withdrawn';

/** What the newest event of a (contact, purpose) means. */
export function deriveState(event: ConsentEventKind, method: string): ConsentState {
  if (event === 'withdrawn') return 'withdrawn';
  if (event === 'confirmed') return 'granted';
  // A double opt-in grant is only verified by its confirmation (a later `confirmed` event).
  return method === 'double_opt_in' ? 'pending' : 'granted';
}

/** {@link deriveState} as SQL: what the newest event (aliased `newest`) must be for `state`. */
function stateCondition(state: ConsentState) {
  switch (state) {
    case 'withdrawn':
      return sql`newest.event = 'withdrawn'`;
    case 'pending':
      return sql`newest.event = 'granted' and newest.method = 'double_opt_in'`;
    case 'granted':
      return sql`(newest.event = 'confirmed' or (newest.event = 'granted' and newest.method <> 'double_opt_in'))`;
  }
}

/**
 * A condition for a query over contacts (the columns `contact.accountId` and `contact.id` name
 * the outer row): the contact's state for the purpose, derived from its newest event, is
 * `state`. A correlated subquery, so a filtered and paged list of contacts stays one query.
 */
export function consentStateCondition(
  contact: { accountId: string; id: string },
  purposeId: string,
  state: ConsentState,
) {
  return sql<boolean>`exists (
    select 1 from (
      select e.event, e.method from consent_events e
      where e.account_id = ${sql.ref(contact.accountId)} and e.contact_id = ${sql.ref(contact.id)}
        and e.purpose_id = ${purposeId}::uuid
      order by e.recorded_at desc, e.id desc
      limit 1
    ) newest
    where ${stateCondition(state)}
  )`;
}

/** Of `contactIds`, those with a confirmed double opt-in in their ledger (any purpose). */
export async function contactsWithConfirmation(
  db: Kysely<DB>,
  accountId: string,
  contactIds: string[],
): Promise<Set<string>> {
  if (contactIds.length === 0) return new Set();
  const rows = await db
    .selectFrom('consent_events')
    .select('contact_id')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', sql<string>`any(${contactIds}::uuid[])`)
    .where('event', '=', 'confirmed')
    .execute();
  return new Set(rows.map((row) => row.contact_id));
}

export interface NewConsentEvent {
  accountId: string;
  contactId: string;
  purposeId: string;
  noticeVersion: number | null;
  event: ConsentEventKind;
  method: string;
  legalBasis: string;
  occurredAt: Date;
  ip: string | null;
  userAgent: string | null;
  sourceUrl: string | null;
  actorType: string | null;
  actorId: string | null;
}

/**
 * Inserts one event. Call it with the contact locked: `recorded_at` is the clock at insertion
 * (not the transaction's start), so under the lock each event of a contact is recorded strictly
 * after the one before it and the newest event is well defined. The service's
 * `appendConsentEvent` also marks the notice version used: call that.
 */
export async function insertConsentEvent(
  trx: Transaction<DB>,
  event: NewConsentEvent,
): Promise<ConsentEventRow> {
  return trx
    .insertInto('consent_events')
    .values({
      account_id: event.accountId,
      contact_id: event.contactId,
      purpose_id: event.purposeId,
      notice_version: event.noticeVersion,
      event: event.event,
      method: event.method,
      legal_basis: event.legalBasis,
      occurred_at: event.occurredAt,
      recorded_at: sql<Date>`clock_timestamp()`,
      ip: event.ip,
      user_agent: event.userAgent,
      source_url: event.sourceUrl,
      actor_type: event.actorType,
      actor_id: event.actorId,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The newest event of one (contact, purpose), which decides its current state. */
export async function newestConsentEvent(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
  purposeId: string,
): Promise<ConsentEventRow | undefined> {
  return db
    .selectFrom('consent_events')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('purpose_id', '=', purposeId)
    .where('contact_id', '=', contactId)
    .orderBy('recorded_at', 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export type CurrentConsentRow = ConsentEventRow & { purpose_key: string };

/** The newest event of each purpose the contact has events for, in purpose-id order. */
export async function newestEventPerPurpose(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<ConsentEventRow[]> {
  return db
    .selectFrom('consent_events')
    .distinctOn('purpose_id')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .orderBy('purpose_id')
    .orderBy('recorded_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
}

export type RankedConsentEventRow = ConsentEventRow & {
  /** `recorded_at` in microseconds since the epoch: JavaScript dates stop at milliseconds. */
  recorded_us: string;
};

/** For each purpose of the contact, the newest event of each kind (at most three per purpose). */
export async function newestConsentEventsByKind(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<RankedConsentEventRow[]> {
  return db
    .selectFrom('consent_events')
    .distinctOn(['purpose_id', 'event'])
    .selectAll()
    .select(
      sql<string>`(extract(epoch from recorded_at) * 1000000)::bigint::text`.as('recorded_us'),
    )
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .orderBy('purpose_id')
    .orderBy('event')
    .orderBy('recorded_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
}

/**
 * One page of a contact's ledger, newest first. The cursor carries `recorded_at` as Postgres
 * text (microseconds), not as a JavaScript date (milliseconds), so no event is skipped.
 */
export function listConsentEvents(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
  query: { limit: number; cursor?: string | undefined; purposeId?: string },
): Promise<KeysetPage<ConsentEventRow & { recorded_key: string }>> {
  let q = db
    .selectFrom('consent_events')
    .selectAll()
    .select(sql<string>`recorded_at::text`.as('recorded_key'))
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId);
  if (query.purposeId) q = q.where('purpose_id', '=', query.purposeId);
  return keysetPage(q, {
    codec: cursors.consentLedger,
    keys: [
      {
        column: 'recorded_at',
        direction: 'desc',
        cursorValue: (row) => row.recorded_key,
        toSql: (v) => sql`${v}::timestamptz`,
      },
      {
        column: 'id',
        direction: 'desc',
        cursorValue: (row) => row.id,
        toSql: (v) => sql`${v}::uuid`,
      },
    ],
    limit: query.limit,
    cursor: query.cursor,
  });
}

/** The consent link whose token hashes to `tokenHash`, read without a lock (a page that shows it). */
export async function findConsentLink(
  db: Kysely<DB>,
  tokenHash: string,
): Promise<Selectable<DB['consent_tokens']> | undefined> {
  return db
    .selectFrom('consent_tokens')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .executeTakeFirst();
}

/**
 * The consent link whose token hashes to `tokenHash`, locked until the transaction ends, so two
 * clicks on one link cannot both use it.
 */
export async function lockConsentLink(
  trx: Transaction<DB>,
  tokenHash: string,
): Promise<Selectable<DB['consent_tokens']> | undefined> {
  return trx
    .selectFrom('consent_tokens')
    .selectAll()
    .where('token_hash', '=', tokenHash)
    .forUpdate()
    .executeTakeFirst();
}

/** Marks a consent link used: it works once. */
export async function markConsentLinkUsed(trx: Transaction<DB>, tokenHash: string) {
  await trx
    .updateTable('consent_tokens')
    .set({ used_at: new Date() })
    .where('token_hash', '=', tokenHash)
    .execute();
}

export interface AudienceRow {
  contact_id: string;
  email: string;
  language: string | null;
}

/**
 * One page of a purpose's audience: contacts whose newest event for the purpose is a verified
 * grant (a confirmation, or a grant that needed none), who are active and not restricted
 * (Art. 18). One query that walks `consent_events_state_idx` (account, purpose, contact,
 * recorded_at desc, id desc) from the cursor: `DISTINCT ON (contact_id)` keeps each contact's
 * newest event straight off the index, and `LIMIT` stops the walk as soon as the page is full,
 * however many contacts the purpose has.
 *
 * The shape is chosen for the planner:
 * - Postgres plans a subquery for its first rows only when the query around it has no join
 *   and no ORDER BY; otherwise it plans it for all rows and, from about 100,000 events, may
 *   prefer to sort every event of the purpose. So the join to contacts is inside (the contact
 *   filters are per contact, so applying them before DISTINCT ON changes no contact's newest
 *   event), and the outer query has no ORDER BY: its rows come out of the subquery in
 *   contact-id order and Filter and Limit keep that order.
 * - The verified test is one boolean computed inside: the planner has no statistics on a
 *   subquery's output, and the test written out over `event` and `method` got default
 *   selectivities (about 1%), which made it expect to read the whole index for one page.
 * - The cursor bounds both tables, so a merge join starts at the cursor on both sides.
 */
export async function audiencePage(
  db: Kysely<DB>,
  accountId: string,
  purposeId: string,
  query: { limit: number; afterContactId?: string | undefined },
): Promise<AudienceRow[]> {
  const after = query.afterContactId
    ? sql`and e.contact_id > ${query.afterContactId}::uuid and c.id > ${query.afterContactId}::uuid`
    : sql``;
  return db.transaction().execute(async (trx) => {
    // Near the end of a large audience the planner misjudges how many distinct contacts are
    // left and switches to reading and sorting every remaining event (about 1 s at 1,000,000
    // contacts). The walk down the two indexes is right at every depth: rule the others out.
    await sql`select set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true)`.execute(
      trx,
    );
    const result = await sql<AudienceRow>`
    select contact_id, email, language
    from (
      select distinct on (e.contact_id)
        e.contact_id,
        c.email,
        c.language,
        (e.event = 'confirmed' or (e.event = 'granted' and e.method <> 'double_opt_in')) as verified
      from consent_events e
      join contacts c on c.account_id = e.account_id and c.id = e.contact_id
      where e.account_id = ${accountId}::uuid and e.purpose_id = ${purposeId}::uuid ${after}
        and c.restricted_at is null
        and c.status = 'active'
      order by e.contact_id, e.recorded_at desc, e.id desc
    ) newest
    where verified
    limit ${query.limit}`.execute(trx);
    return result.rows;
  });
}

export interface ConsentLink {
  token: string;
  expiresAt: string;
  url: string;
}

/**
 * Issues one single-use link of `kind` per consent event, storing only the tokens' hashes.
 * The links (tokens in clear) are returned in the events' order and exist nowhere else.
 */
export async function issueConsentLinks(
  trx: Transaction<DB>,
  kind: ConsentLinkKind,
  events: Pick<ConsentEventRow, 'account_id' | 'contact_id' | 'purpose_id'>[],
  expiresAt: Date,
): Promise<ConsentLink[]> {
  if (events.length === 0) return [];
  const tokens = events.map(() => newConsentLinkToken());
  await trx
    .insertInto('consent_tokens')
    .values(
      events.map((event, i) => ({
        token_hash: tokens[i]!.hash,
        account_id: event.account_id,
        contact_id: event.contact_id,
        purpose_id: event.purpose_id,
        kind,
        expires_at: expiresAt,
      })),
    )
    .execute();
  return tokens.map(({ token }) => ({
    token,
    expiresAt: expiresAt.toISOString(),
    url: CONSENT_LINK_PATHS[kind] + token,
  }));
}

/**
 * Art. 17: forgets a contact's consent links, in the erasure's transaction. The ledger itself
 * goes with the contact row, in `erase_contact()` (the service role cannot delete from it).
 */
export async function forgetContactConsents(
  trx: Transaction<DB>,
  accountId: string,
  contactId: string,
): Promise<void> {
  await trx
    .deleteFrom('consent_tokens')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .execute();
}

/** Art. 15: a contact's whole consent ledger, oldest first (for its data export). */
export async function contactConsentLedger(
  db: Kysely<DB>,
  accountId: string,
  contactId: string,
): Promise<ConsentEventRow[]> {
  return db
    .selectFrom('consent_events')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .orderBy('recorded_at')
    .orderBy('id')
    .execute();
}

export interface ConsentAppend {
  contact_id: string;
  purpose_id: string;
  notice_version: number | null;
  method: string;
  occurred_at: string;
  ip: string | null;
  user_agent: string | null;
  source_url: string | null;
  /** A double opt-in pending grant made by the import: only when the purpose has no event. */
  pending_only_if_none: boolean;
}

/**
 * Inserts the batch's consent grants into the ledger, in file order (`recorded_at` is the clock
 * at each insertion). Skipped, so re-running a file adds nothing:
 * - an identical event (contact, purpose, notice version, time, method) already recorded;
 * - evidence older than a withdrawal recorded for the purpose (an old grant must not undo a
 *   later withdrawal);
 * - the import's own pending grant when the contact already has any event for the purpose.
 * The caller leaves out restricted contacts (Art. 18); the service's `appendImportedConsents`
 * also marks the notice versions used. Returns the grants it inserted.
 */
export async function insertImportedConsents(
  trx: Transaction<DB>,
  accountId: string,
  actor: { type: string; id: string | null },
  events: ConsentAppend[],
): Promise<AppendedConsent[]> {
  if (events.length === 0) return [];
  const result = await appendConsentsStatement(accountId, actor, events).execute(trx);
  return result.rows;
}

/**
 * The statement behind {@link insertImportedConsents} (exported so a test can EXPLAIN it). It
 * returns the grants it appended, and only those: each is announced on the feed (a pending
 * double opt-in with its confirmation link, any other as `consent.granted`), while re-runs
 * and skipped rows send nothing back.
 */
export function appendConsentsStatement(
  accountId: string,
  actor: { type: string; id: string | null },
  events: ConsentAppend[],
) {
  const ordered = events.map((event, ord) => ({ ...event, ord }));
  // Keyed by contact id, not by email: the plan is index lookups whatever the table's
  // statistics say (a join on email planned without statistics compares every pair).
  // `offset 0` keeps the NOT EXISTS a per-row subplan (an index probe on contact and purpose):
  // turned into an anti join, a table that grew since it was last analysed is planned as tiny,
  // and every row of the batch was compared with all of the account's events (1,000 x n).
  return sql<AppendedConsent>`
    with appended as (
      insert into consent_events (
        account_id, contact_id, purpose_id, notice_version, event, method, legal_basis,
        occurred_at, recorded_at, ip, user_agent, source_url, actor_type, actor_id
      )
      select ${accountId}::uuid, u.contact_id, u.purpose_id, u.notice_version, 'granted', u.method,
        'consent', u.occurred_at, clock_timestamp(), u.ip, u.user_agent, u.source_url,
        ${actor.type}, ${actor.id}
      from json_to_recordset(${JSON.stringify(ordered)}::json) as u(
        ord int, contact_id uuid, purpose_id uuid, notice_version int, method text,
        occurred_at timestamptz, ip text, user_agent text, source_url text,
        pending_only_if_none boolean
      )
      where not exists (
          select 1 from consent_events e
          where e.account_id = ${accountId}::uuid and e.contact_id = u.contact_id
            and e.purpose_id = u.purpose_id
            and (
              (u.pending_only_if_none)
              or (e.event = 'granted' and e.method = u.method and e.occurred_at = u.occurred_at
                  and e.notice_version is not distinct from u.notice_version)
              or (e.event = 'withdrawn' and e.occurred_at >= u.occurred_at)
            )
          offset 0
        )
      order by u.ord
      returning id, contact_id, purpose_id, notice_version, event, method
    )
    select * from appended`;
}

export type AppendedConsent = Pick<
  ConsentEventRow,
  'id' | 'contact_id' | 'purpose_id' | 'notice_version' | 'event' | 'method'
>;
