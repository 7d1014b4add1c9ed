import type { Kysely, Transaction } from 'kysely';
import { cursors } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import type { RequestContext } from '../identity/actor.js';
import {
  type AuditFilter,
  appendAuditEvent,
  entryHash,
  GENESIS_HASH,
  listAuditEvents,
  walkChain,
} from './audit.repository.js';

export interface AuditChange {
  action: string;
  entityType: string;
  entityId: string | null;
  /** Names of the fields that changed; never their values. */
  changedFields?: string[];
  /** The chain to write to; defaults to the actor's account (operators must name one). */
  accountId?: string;
}

/**
 * Records a change in the audit trail of the account it concerns. Call it with the transaction
 * that makes the change, so the change and its record commit or roll back together.
 */
export async function recordAudit(trx: Kysely<DB>, ctx: RequestContext, change: AuditChange) {
  const accountId = change.accountId ?? ctx.actor.accountId;
  if (!accountId) throw new Error(`audit entry ${change.action} has no account`);
  return appendAuditEvent(trx, {
    accountId,
    actorType: ctx.actor.type,
    actorId: ctx.actor.id,
    action: change.action,
    entityType: change.entityType,
    entityId: change.entityId,
    requestId: ctx.requestId,
    ip: ctx.ip,
    changedFields: change.changedFields ?? [],
  });
}

/**
 * Records what a data subject did through a public link (no account, no user): the actor has
 * no id and the entry no IP, because the trail is kept forever and an IP is personal data.
 */
export async function recordSubjectAudit(
  trx: Transaction<DB>,
  entry: { accountId: string; requestId: string } & Required<Omit<AuditChange, 'accountId'>>,
) {
  return appendAuditEvent(trx, {
    accountId: entry.accountId,
    actorType: 'data_subject',
    actorId: null,
    action: entry.action,
    entityType: entry.entityType,
    entityId: entry.entityId,
    requestId: entry.requestId,
    ip: null,
    changedFields: entry.changedFields,
  });
}

export async function listAudit(
  db: Kysely<DB>,
  accountId: string,
  query: Omit<AuditFilter, 'beforeSeq'> & { cursor?: string | undefined },
) {
  const cursor = cursors.auditSeq.decode(query.cursor);
  const rows = await listAuditEvents(db, accountId, {
    ...query,
    beforeSeq: cursor?.[0],
    limit: query.limit + 1,
  });
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    rows: page,
    nextCursor: rows.length > query.limit && last ? cursors.auditSeq.encode([last.seq]) : null,
  };
}

export type ChainBreak = 'hash_mismatch' | 'broken_link' | 'gap' | 'hash_version_downgrade';

export interface ChainVerification {
  valid: boolean;
  checked: number;
  lastSeq: number | null;
  lastHash: string | null;
  firstBroken: { seq: number; id: string; reason: ChainBreak } | null;
}

/**
 * Walks the account's chain from the first entry, recomputing each hash with the formula of
 * its `hash_version`. Reports the first entry whose content no longer matches its hash, whose
 * link to its predecessor is broken, whose sequence number skips (an entry was removed), or
 * whose hash version goes down.
 */
export async function verifyAuditChain(
  db: Kysely<DB>,
  accountId: string,
): Promise<ChainVerification> {
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let highestVersion = 1;
  let checked = 0;
  let lastSeq: number | null = null;
  for await (const row of walkChain(db, accountId)) {
    checked++;
    const broken = (reason: ChainBreak) => ({
      valid: false,
      checked,
      lastSeq,
      lastHash: prevHash,
      firstBroken: { seq: row.seq, id: row.id, reason },
    });
    if (row.seq !== expectedSeq) return broken('gap');
    if (row.prev_hash !== prevHash) return broken('broken_link');
    if (row.hash_version < highestVersion) return broken('hash_version_downgrade');
    if (entryHash(row, row.hash_version) !== row.hash) return broken('hash_mismatch');
    highestVersion = row.hash_version;
    prevHash = row.hash;
    lastSeq = row.seq;
    expectedSeq++;
  }
  return { valid: true, checked, lastSeq, lastHash: checked ? prevHash : null, firstBroken: null };
}

/** The audit trail as the API serves it: one page of entries, and the chain's verification. */
export function createAuditService(deps: { db: Kysely<DB> }) {
  const { db } = deps;
  return {
    list: (
      accountId: string,
      query: Omit<AuditFilter, 'beforeSeq'> & { cursor?: string | undefined },
    ) => listAudit(db, accountId, query),
    verify: (accountId: string) => verifyAuditChain(db, accountId),
  };
}

export type AuditService = ReturnType<typeof createAuditService>;

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself.
 */
export { lockAccountJournal } from './audit.repository.js';
