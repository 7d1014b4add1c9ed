import type { KeyObject } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Kysely, Transaction } from 'kysely';
import type { AuditCheckpointRow, AuditEventRow, DB } from '../../db/schema.js';
import { withTenant } from '../../db/tenant.js';
import type { RequestContext } from '../identity/actor.js';
import {
  type AuditFilter,
  accountsWithUncheckpointedEntries,
  appendAuditEvent,
  chainHead,
  entryHash,
  findCheckpoint,
  GENESIS_HASH,
  insertCheckpoint,
  latestCheckpoint,
  listAuditEvents,
  listCheckpoints,
  lockAccountJournal,
  walkChain,
  walkCheckpoints,
} from './audit.repository.js';
import {
  type CheckpointSigner,
  checkpointSignatureValid,
  checkpointSigner,
} from './checkpoint-signing.js';

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
export async function recordAudit(trx: Transaction<DB>, ctx: RequestContext, change: AuditChange) {
  const accountId = change.accountId ?? ctx.actor.accountId;
  if (!accountId) throw new Error(`audit entry ${change.action} has no account`);
  return checkpointIfDue(trx, {
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
  return checkpointIfDue(trx, {
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

/**
 * Checkpointing inside the appending transaction, for the whole process: every module appends
 * through recordAudit(trx, …) with no handle on the app, so the running app installs its signer
 * here (see `startCheckpointing`). One app runs per process; tests build several, one after
 * another, and the newest started one signs. Appends made with none installed (scripts) are
 * checkpointed by the next sweep, or on demand.
 */
let inTransaction: { signer: CheckpointSigner; every: number } | undefined;

/**
 * Appends the entry and, when its seq is a multiple of AUDIT_CHECKPOINT_EVERY, signs a
 * checkpoint of it in the same transaction: a few dozen microseconds of Ed25519, and no query
 * to find the last checkpoint. Checkpoints made on demand or by the sweep in between do not
 * shift this schedule.
 */
async function checkpointIfDue(
  trx: Transaction<DB>,
  entry: Parameters<typeof appendAuditEvent>[1],
): Promise<AuditEventRow> {
  const row = await appendAuditEvent(trx, entry);
  const due = inTransaction;
  if (due && due.every > 0 && row.seq % due.every === 0) {
    await insertCheckpoint(trx, signedCheckpoint(due.signer, row));
  }
  return row;
}

function signedCheckpoint(
  signer: CheckpointSigner,
  head: { account_id: string; seq: number; hash: string },
): AuditCheckpointRow {
  const signedAt = new Date();
  const claim = {
    accountId: head.account_id,
    seq: head.seq,
    hash: head.hash,
    at: signedAt.toISOString(),
  };
  return {
    account_id: head.account_id,
    seq: head.seq,
    hash: head.hash,
    signed_at: signedAt,
    key_id: signer.keyId,
    public_key: signer.publicKey,
    signature: signer.sign(claim),
  };
}

/**
 * Signs a checkpoint of the account's current head, unless it has one already. Under the
 * account's journal lock, so no entry is appended meanwhile and two instances cannot sign the
 * same head twice. Not itself an audit entry: that would move the head past the checkpoint it
 * made, and a sweep would never find a chain at rest. Null for an empty chain.
 */
export async function checkpointHead(
  db: Kysely<DB>,
  signer: CheckpointSigner,
  accountId: string,
): Promise<{ row: AuditCheckpointRow; created: boolean } | null> {
  return db.transaction().execute(async (trx) => {
    await lockAccountJournal(trx, accountId);
    const head = await chainHead(trx, accountId);
    if (!head) return null;
    const existing = await findCheckpoint(trx, accountId, head.seq);
    if (existing) return { row: existing, created: false };
    const row = await insertCheckpoint(
      trx,
      signedCheckpoint(signer, { account_id: accountId, ...head }),
    );
    return { row, created: true };
  });
}

/** One page of the account's checkpoints, newest first (cursor: the audit trail's seq shape). */
export type ChainBreak =
  | 'hash_mismatch'
  | 'broken_link'
  | 'gap'
  | 'hash_version_downgrade'
  | 'checkpoint_signature'
  | 'checkpoint_mismatch'
  | 'truncated';

export interface ChainVerification {
  valid: boolean;
  checked: number;
  lastSeq: number | null;
  lastHash: string | null;
  /** `id` is null where the entry is missing (`truncated`). */
  firstBroken: { seq: number; id: string | null; reason: ChainBreak } | null;
  /** The newest checkpoint, the one the chain was anchored to. */
  checkpoint: {
    seq: number;
    hash: string;
    at: string;
    keyId: string;
    signedWithCurrentKey: boolean;
  } | null;
}

function signatureValid(row: AuditCheckpointRow): boolean {
  return checkpointSignatureValid({
    accountId: row.account_id,
    seq: row.seq,
    hash: row.hash,
    at: row.signed_at.toISOString(),
    keyId: row.key_id,
    publicKey: row.public_key,
    signature: row.signature,
  });
}

/**
 * Walks the account's chain from the first entry, recomputing each hash with the formula of
 * its `hash_version`. Reports the first entry whose content no longer matches its hash, whose
 * link to its predecessor is broken, whose sequence number skips (an entry was removed), or
 * whose hash version goes down.
 *
 * A chain can also be cut short, or have an entry removed and every later one renumbered and
 * re-hashed, and still link up. The signed checkpoints catch both: each one up to the newest
 * must carry a valid signature, and the entry at its seq must exist and have its hash. So a
 * re-hashed chain breaks at the first checkpoint after the change (`checkpoint_mismatch`; the
 * change lies between the previous checkpoint and this one), and a chain ending before the
 * newest checkpoint breaks at its first missing entry (`truncated`, with no id).
 *
 * The newest checkpoint is read before the walk: its entry committed with or before it, so
 * entries appended while the walk runs cannot make it look truncated.
 */
export async function verifyAuditChain(
  db: Kysely<DB>,
  accountId: string,
  currentPublicKey?: string,
): Promise<ChainVerification> {
  const newest = await latestCheckpoint(db, accountId);
  const checkpoint = newest
    ? {
        seq: newest.seq,
        hash: newest.hash,
        at: newest.signed_at.toISOString(),
        keyId: newest.key_id,
        signedWithCurrentKey: newest.public_key === currentPublicKey,
      }
    : null;
  const checkpoints = newest ? walkCheckpoints(db, accountId, newest.seq) : undefined;
  const nextCheckpoint = async () => {
    const next = await checkpoints?.next();
    return next && !next.done ? next.value : undefined;
  };
  let pending = await nextCheckpoint();

  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let highestVersion = 1;
  let checked = 0;
  let lastSeq: number | null = null;
  const broken = (seq: number, id: string | null, reason: ChainBreak): ChainVerification => ({
    valid: false,
    checked,
    lastSeq,
    lastHash: prevHash,
    firstBroken: { seq, id, reason },
    checkpoint,
  });
  for await (const row of walkChain(db, accountId)) {
    checked++;
    if (row.seq !== expectedSeq) return broken(row.seq, row.id, 'gap');
    if (row.prev_hash !== prevHash) return broken(row.seq, row.id, 'broken_link');
    if (row.hash_version < highestVersion) {
      return broken(row.seq, row.id, 'hash_version_downgrade');
    }
    if (entryHash(row, row.hash_version) !== row.hash) {
      return broken(row.seq, row.id, 'hash_mismatch');
    }
    if (pending?.seq === row.seq) {
      if (!signatureValid(pending)) return broken(row.seq, row.id, 'checkpoint_signature');
      if (pending.hash !== row.hash) return broken(row.seq, row.id, 'checkpoint_mismatch');
      pending = await nextCheckpoint();
    }
    highestVersion = row.hash_version;
    prevHash = row.hash;
    lastSeq = row.seq;
    expectedSeq++;
  }
  if (pending) {
    if (!signatureValid(pending)) return broken(pending.seq, null, 'checkpoint_signature');
    return broken(expectedSeq, null, 'truncated');
  }
  return {
    valid: true,
    checked,
    lastSeq,
    lastHash: checked ? prevHash : null,
    firstBroken: null,
    checkpoint,
  };
}

/**
 * The audit trail as the API serves it: pages of entries, the chain's verification, and the
 * signed checkpoints, made on demand, every `checkpointEvery` entries (inside the appending
 * transaction) and every `checkpointIntervalMs` for the chains that grew (a sweep), between
 * `startCheckpointing` and `stopCheckpointing` (the app's lifetime). 0 turns either off.
 */
export function createAuditService(deps: {
  db: Kysely<DB>;
  signingKey: KeyObject;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  log?: FastifyBaseLogger;
}) {
  const { db, checkpointEvery, checkpointIntervalMs, log } = deps;
  const signer = checkpointSigner(deps.signingKey);
  const mine = { signer, every: checkpointEvery };
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> | undefined;
  let stopped = true;

  async function sweep() {
    let signed = 0;
    for (const accountId of await accountsWithUncheckpointedEntries(db)) {
      if (stopped) break;
      const made = await withTenant(accountId, () => checkpointHead(db, signer, accountId));
      if (made?.created) signed++;
    }
    if (signed > 0) log?.info({ accounts: signed }, 'signed audit checkpoints');
  }

  function schedule() {
    timer = setTimeout(() => {
      timer = undefined;
      sweeping = sweep()
        .catch((err: unknown) => {
          log?.error({ err }, 'audit checkpoint sweep failed; the next one tries again');
        })
        .finally(() => {
          sweeping = undefined;
          if (!stopped) schedule();
        });
    }, checkpointIntervalMs);
    timer.unref();
  }

  return {
    list: (accountId: string, query: AuditFilter) => listAuditEvents(db, accountId, query),
    verify: (accountId: string) => verifyAuditChain(db, accountId, signer.publicKey),
    /** The key new checkpoints are signed with. */
    currentKey: { keyId: signer.keyId, publicKey: signer.publicKey },
    checkpoints: (accountId: string, page: { limit: number; cursor?: string | undefined }) =>
      listCheckpoints(db, accountId, page),
    checkpoint: (accountId: string) => checkpointHead(db, signer, accountId),
    startCheckpointing() {
      inTransaction = mine;
      stopped = false;
      if (checkpointIntervalMs > 0 && !timer && !sweeping) schedule();
    },
    /** Stops the sweep (waiting for a running one) and the in-transaction checkpoints. */
    async stopCheckpointing() {
      stopped = true;
      if (inTransaction === mine) inTransaction = undefined;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await sweeping;
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself.
 */
export { entityAuditTrail, lockAccountJournal } from './audit.repository.js';
