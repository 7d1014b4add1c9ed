import { createHash } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, keysetPage, walkInPages } from '../../db/keyset.js';
import type { AuditCheckpointRow, AuditEventRow, DB } from '../../db/schema.js';
import { uuidV7 } from '../../lib/uuid-v7.js';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEntry {
  accountId: string;
  actorType: string;
  actorId: string | null;
  action: string;
  entityType: string;
  entityId: string | null;
  requestId: string | null;
  ip: string | null;
  changedFields: string[];
}

/** The formula new entries are hashed with (see {@link entryHash}). */
export const CURRENT_HASH_VERSION = 2;

type HashedFields = Omit<AuditEventRow, 'hash' | 'hash_version'>;

/**
 * The hash of one entry: SHA-256 over a JSON array of its fields in a fixed order, ending with
 * the previous entry's hash. Changing any stored field, or removing or reordering entries,
 * changes every hash after it. Each row says which formula it was hashed with (`hash_version`):
 * - 1: the fields from `account_id` to `prev_hash` below, without the id (rows written before
 *   the column existed keep it, and are verified with it);
 * - 2: the version itself, then the entry's `id`, then the same fields: the id is bound to its
 *   position, so an entry cannot be swapped for another with the same content.
 * Versions never go down along a chain: a version-1 entry after a version-2 one is a break
 * (`hash_version_downgrade`), since relabelling rewritten entries as version 1 would otherwise
 * drop their ids from the hashes. Returns null for a version this code does not know.
 */
export function entryHash(row: HashedFields, version: number): string | null {
  const fields = [
    row.account_id,
    row.seq,
    new Date(row.occurred_at).toISOString(),
    row.actor_type,
    row.actor_id,
    row.action,
    row.entity_type,
    row.entity_id,
    row.request_id,
    row.ip,
    row.changed_fields,
    row.prev_hash,
  ];
  let material: unknown[];
  if (version === 1) material = fields;
  else if (version === 2) material = [2, row.id, ...fields];
  else return null;
  return createHash('sha256').update(JSON.stringify(material)).digest('hex');
}

/**
 * Takes the account's journal lock until the transaction ends. The audit chain and the event
 * feed both take it, one lock for both so that no two transactions can take them in opposite
 * orders: per account, entries are numbered in the order their transactions commit.
 */
export async function lockAccountJournal(trx: Transaction<DB>, accountId: string): Promise<void> {
  const held = journals(trx);
  if (held.has(accountId)) return;
  await sql`select pg_advisory_xact_lock(hashtextextended(${`audit:${accountId}`}, 0))`.execute(
    trx,
  );
  held.set(accountId, null);
}

/**
 * What a transaction knows of the journals it has locked: per account, the chain's head as its
 * own last append left it (null until it appended or read it). A transaction that appends
 * several entries, or entries and feed events (an erasure through a data-subject request),
 * takes the lock and reads the head once. The lock is held until the transaction ends, so no
 * one else can move the head meanwhile; keyed by the transaction object, the memory goes with it.
 */
const heldJournals = new WeakMap<object, Map<string, { seq: number; hash: string } | null>>();

function journals(trx: Transaction<DB>) {
  let held = heldJournals.get(trx);
  if (!held) {
    held = new Map();
    heldJournals.set(trx, held);
  }
  return held;
}

/**
 * Appends an entry to the account's chain. Must run inside the transaction that makes the
 * change. A transaction-scoped advisory lock per account serialises writers, so concurrent
 * changes extend the chain one after another instead of forking it; the primary key
 * (account_id, seq) would reject a fork anyway.
 */
export async function appendAuditEvent(
  trx: Transaction<DB>,
  entry: AuditEntry,
): Promise<AuditEventRow> {
  await lockAccountJournal(trx, entry.accountId);
  const held = journals(trx);
  const last =
    held.get(entry.accountId) ??
    (await trx
      .selectFrom('audit_events')
      .select(['seq', 'hash'])
      .where('account_id', '=', entry.accountId)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst());
  const occurredAt = new Date();
  const base = {
    // Made here, not by the column default: the hash covers it.
    id: uuidV7(occurredAt),
    account_id: entry.accountId,
    seq: (last?.seq ?? 0) + 1,
    occurred_at: occurredAt,
    actor_type: entry.actorType,
    actor_id: entry.actorId,
    action: entry.action,
    entity_type: entry.entityType,
    entity_id: entry.entityId,
    request_id: entry.requestId,
    ip: entry.ip,
    changed_fields: [...entry.changedFields].sort(),
    prev_hash: last?.hash ?? GENESIS_HASH,
  };
  const row = await trx
    .insertInto('audit_events')
    .values({
      ...base,
      hash: entryHash(base, CURRENT_HASH_VERSION)!,
      hash_version: CURRENT_HASH_VERSION,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  held.set(entry.accountId, { seq: row.seq, hash: row.hash });
  return row;
}

export interface AuditFilter {
  action?: string | undefined;
  entityType?: string | undefined;
  entityId?: string | undefined;
  actorId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  limit: number;
  /** The previous page's `nextCursor`: the trail is newest first. */
  cursor?: string | undefined;
}

export function listAuditEvents(db: Kysely<DB>, accountId: string, filter: AuditFilter) {
  let query = db.selectFrom('audit_events').selectAll().where('account_id', '=', accountId);
  if (filter.action) query = query.where('action', '=', filter.action);
  if (filter.entityType) query = query.where('entity_type', '=', filter.entityType);
  if (filter.entityId) query = query.where('entity_id', '=', filter.entityId);
  if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
  if (filter.since) query = query.where('occurred_at', '>=', filter.since);
  if (filter.until) query = query.where('occurred_at', '<', filter.until);
  return keysetPage(query, {
    codec: cursors.auditSeq,
    keys: [{ column: 'seq', direction: 'desc', cursorValue: (row) => row.seq }],
    limit: filter.limit,
    cursor: filter.cursor,
  });
}

/** Reads the chain in order, a page at a time, so verification runs in bounded memory. */
export function walkChain(db: Kysely<DB>, accountId: string, pageSize = 1000) {
  return walkInPages(
    (after: number, size) =>
      db
        .selectFrom('audit_events')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('seq', '>', after)
        .orderBy('seq', 'asc')
        .limit(size)
        .execute(),
    { start: 0, keyOf: (row) => row.seq, pageSize },
  );
}

/** The account's entries about one entity, oldest first (a data export lists them). */
export async function entityAuditTrail(
  db: Kysely<DB>,
  accountId: string,
  entity: { type: string; id: string },
) {
  return db
    .selectFrom('audit_events')
    .select(['id', 'occurred_at', 'actor_type', 'actor_id', 'action', 'changed_fields'])
    .where('account_id', '=', accountId)
    .where('entity_type', '=', entity.type)
    .where('entity_id', '=', entity.id)
    .orderBy('seq')
    .execute();
}

/** The last entry of the account's chain, or undefined for an empty chain. */
export async function chainHead(db: Kysely<DB>, accountId: string) {
  return db
    .selectFrom('audit_events')
    .select(['seq', 'hash'])
    .where('account_id', '=', accountId)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function insertCheckpoint(
  trx: Transaction<DB>,
  checkpoint: AuditCheckpointRow,
): Promise<AuditCheckpointRow> {
  return trx
    .insertInto('audit_checkpoints')
    .values(checkpoint)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findCheckpoint(db: Kysely<DB>, accountId: string, seq: number) {
  return db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('seq', '=', seq)
    .executeTakeFirst();
}

/** The account's newest checkpoint (highest seq), or undefined. */
export async function latestCheckpoint(db: Kysely<DB>, accountId: string) {
  return db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('account_id', '=', accountId)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** One page of the account's checkpoints, newest first. */
export function listCheckpoints(
  db: Kysely<DB>,
  accountId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  return keysetPage(
    db.selectFrom('audit_checkpoints').selectAll().where('account_id', '=', accountId),
    {
      codec: cursors.auditSeq,
      keys: [{ column: 'seq', direction: 'desc', cursorValue: (row) => row.seq }],
      limit: page.limit,
      cursor: page.cursor,
    },
  );
}

/** The account's checkpoints up to `untilSeq`, oldest first, a page at a time. */
export function walkCheckpoints(
  db: Kysely<DB>,
  accountId: string,
  untilSeq: number,
  pageSize = 1000,
) {
  return walkInPages(
    (after: number, size) =>
      db
        .selectFrom('audit_checkpoints')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('seq', '>', after)
        .where('seq', '<=', untilSeq)
        .orderBy('seq', 'asc')
        .limit(size)
        .execute(),
    { start: 0, keyOf: (row) => row.seq, pageSize },
  );
}

/**
 * Accounts whose chain has entries past their newest checkpoint (or no checkpoint at all).
 * A skip scan over the primary keys: the recursive part jumps from one account to the next
 * with one index probe each, and head and checkpoint are each one more probe, so the cost
 * grows with the number of accounts, not of entries.
 */
export async function accountsWithUncheckpointedEntries(db: Kysely<DB>): Promise<string[]> {
  // Across accounts: an owner-defined function (row-level security shows a connection one
  // account), answering account ids only, each then checkpointed bound to its account.
  const result = await sql<{ account_id: string }>`
    select account_id from accounts_with_uncheckpointed_entries() as account_id`.execute(db);
  return result.rows.map((row) => row.account_id);
}
