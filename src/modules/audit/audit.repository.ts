import { createHash } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, keysetPage } from '../../db/keyset.js';
import type { AuditEventRow, DB } from '../../db/schema.js';

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

/**
 * The hash of one entry: SHA-256 over a JSON array of its fields in a fixed order, ending with
 * the previous entry's hash. Changing any stored field, or removing or reordering entries,
 * changes every hash after it.
 */
export function entryHash(row: Omit<AuditEventRow, 'id' | 'hash'>): string {
  const material = JSON.stringify([
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
  ]);
  return createHash('sha256').update(material).digest('hex');
}

/**
 * Takes the account's journal lock until the transaction ends. The audit chain and the event
 * feed both take it, one lock for both so that no two transactions can take them in opposite
 * orders: per account, entries are numbered in the order their transactions commit.
 */
export async function lockAccountJournal(trx: Transaction<DB>, accountId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`audit:${accountId}`}, 0))`.execute(
    trx,
  );
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
  const last = await trx
    .selectFrom('audit_events')
    .select(['seq', 'hash'])
    .where('account_id', '=', entry.accountId)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  const base = {
    account_id: entry.accountId,
    seq: (last?.seq ?? 0) + 1,
    occurred_at: new Date(),
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
  return trx
    .insertInto('audit_events')
    .values({ ...base, hash: entryHash(base) })
    .returningAll()
    .executeTakeFirstOrThrow();
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
export async function* walkChain(db: Kysely<DB>, accountId: string, pageSize = 1000) {
  let after = 0;
  for (;;) {
    const rows = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('seq', '>', after)
      .orderBy('seq', 'asc')
      .limit(pageSize)
      .execute();
    if (rows.length === 0) return;
    yield* rows;
    after = rows[rows.length - 1]!.seq;
  }
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
