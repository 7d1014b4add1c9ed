import { createHash } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { cursors } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import { ConflictError, NotFoundError, UnprocessableError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';
import {
  allPurposeSummaries,
  findNoticeVersion,
  findPurpose,
  findPurposeByKey,
  findPurposeRef,
  insertNoticeVersion,
  insertPurpose,
  latestNoticeVersion,
  listNoticeVersions,
  listPurposes,
  lockPurpose as lockPurposeRow,
  noticeDigests,
  noticeVersionExists,
  purposeIdByKey,
  purposeIdsByKey,
  purposeSummaries,
  updatePurpose,
} from './purposes.repository.js';
import { looksLikeUuid } from './purposes.schemas.js';

export interface PurposeInput {
  key: string;
  name: string;
  description?: string | null | undefined;
  category?: string | undefined;
}

export interface PurposePatch {
  name?: string | undefined;
  description?: string | null | undefined;
  category?: string | undefined;
}

const PURPOSE_KEY_INDEX = 'purposes_key_key';

/** SHA-256 of a notice text as UTF-8, lower-case hex: what a receipt quotes as its proof. */
export function noticeTextSha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  return e.code === '23505' && (e.constraint === constraint || !!e.message?.includes(constraint));
}

/** Locks the purpose row, so notice versions of one purpose are numbered one at a time. */
async function lockPurpose(trx: Transaction<DB>, accountId: string, id: string) {
  const row = await lockPurposeRow(trx, accountId, id);
  if (!row) throw new NotFoundError('The purpose does not exist.');
  return row;
}

/**
 * What the consent ledger needs to know about purposes, for other modules: each takes the
 * caller's connection or transaction, so a consent is checked against the purpose in the
 * transaction that records it.
 */
export const purposeLookups = {
  /** The purpose's id and key; 404 when the account has no such purpose. */
  async require(db: Kysely<DB> | Transaction<DB>, accountId: string, purposeId: string) {
    const row = await findPurposeRef(db, accountId, purposeId);
    if (!row) throw new NotFoundError('The purpose does not exist.');
    return row;
  },

  /** The ids of the purposes with these keys, by key (an import names purposes by key). */
  idsByKey: purposeIdsByKey,

  /** Whether the purpose has notice version `version`: the one test of a consent's notice. */
  noticeVersionExists,

  /**
   * Art. 7(1): a consent names the notice the person saw; 422 `unknown_notice_version` when the
   * purpose has no such version.
   */
  async requireNoticeVersion(
    db: Kysely<DB> | Transaction<DB>,
    accountId: string,
    purposeId: string,
    version: number,
  ): Promise<void> {
    if (!(await noticeVersionExists(db, accountId, purposeId, version))) {
      throw new UnprocessableError(
        'unknown_notice_version',
        `The purpose has no notice version ${version}.`,
      );
    }
  },

  summaries: purposeSummaries,
  /** Every purpose of the account (objections to all, the facts of an access answer). */
  all: allPurposeSummaries,
  noticeDigests,

  /**
   * What a consent link's page shows of a purpose: its name and, when `version` is given, that
   * notice version's text and language. Undefined when the purpose is gone.
   */
  async forLinkPage(db: Kysely<DB>, accountId: string, purposeId: string, version: number | null) {
    const purpose = await findPurpose(db, accountId, purposeId);
    if (!purpose) return undefined;
    const notice =
      version === null ? undefined : await findNoticeVersion(db, accountId, purposeId, version);
    return {
      name: purpose.name,
      notice: notice ? { text: notice.text, language: notice.language } : null,
    };
  },
};

/**
 * Purposes of processing (Art. 6(1)(a), 7) and their notice texts. A notice is versioned and
 * never edited: a new wording is a new version, so every consent keeps pointing at the exact
 * text the person saw.
 */
export function createPurposesService(deps: { db: Kysely<DB> }) {
  const { db } = deps;

  /** A purpose by its id or its key (see `PurposeRef`). */
  async function get(accountId: string, ref: string) {
    const row = looksLikeUuid(ref)
      ? await findPurpose(db, accountId, ref)
      : await findPurposeByKey(db, accountId, ref);
    if (!row) throw new NotFoundError('The purpose does not exist.');
    return row;
  }

  /** The id of the purpose a path names by id or key; 404 for an unknown key. */
  async function resolveId(accountId: string, ref: string): Promise<string> {
    return looksLikeUuid(ref) ? ref : (await get(accountId, ref)).id;
  }

  /** Creates a purpose in the caller's transaction; 409 `purpose_key_taken` for a used key. */
  async function createIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    input: PurposeInput,
  ) {
    if (await purposeIdByKey(trx, accountId, input.key)) throw keyTaken(input.key);
    const row = await insertPurpose(trx, {
      account_id: accountId,
      key: input.key,
      name: input.name,
      description: input.description ?? null,
      ...(input.category ? { category: input.category } : {}),
    });
    await recordAudit(trx, ctx, {
      accountId,
      action: 'purpose.created',
      entityType: 'purpose',
      entityId: row.id,
      changedFields: ['key', 'name', 'description', 'category'],
    });
    return { ...row, latest_notice_version: null };
  }

  async function updateIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    id: string,
    patch: PurposePatch,
  ) {
    const current = await lockPurpose(trx, accountId, id);
    const values: { name?: string; description?: string | null; category?: string } = {};
    if (patch.name !== undefined && patch.name !== current.name) values.name = patch.name;
    if (patch.description !== undefined && patch.description !== current.description) {
      values.description = patch.description;
    }
    if (patch.category !== undefined && patch.category !== current.category) {
      values.category = patch.category;
    }
    const changed = Object.keys(values);
    if (changed.length > 0) {
      await updatePurpose(trx, accountId, id, values);
      await recordAudit(trx, ctx, {
        accountId,
        action: 'purpose.updated',
        entityType: 'purpose',
        entityId: id,
        changedFields: changed,
      });
    }
    const row = await findPurpose(trx, accountId, id);
    if (!row) throw new NotFoundError('The purpose does not exist.');
    return row;
  }

  /** Writes version n+1 of the purpose's notice, with the SHA-256 of its text. */
  async function createNoticeIn(
    trx: Transaction<DB>,
    ctx: RequestContext,
    accountId: string,
    purposeId: string,
    input: { text: string; language: string },
  ) {
    await lockPurpose(trx, accountId, purposeId);
    const latest = await latestNoticeVersion(trx, accountId, purposeId);
    const row = await insertNoticeVersion(trx, {
      account_id: accountId,
      purpose_id: purposeId,
      version: (latest ?? 0) + 1,
      text: input.text,
      text_sha256: noticeTextSha256(input.text),
      language: input.language,
    });
    await recordAudit(trx, ctx, {
      accountId,
      action: 'notice_version.created',
      entityType: 'purpose',
      entityId: purposeId,
      changedFields: ['notice.text', 'notice.language'],
    });
    return row;
  }

  return {
    get,
    resolveId,
    createIn,
    updateIn,
    createNoticeIn,

    async list(accountId: string, query: { limit: number; cursor?: string | undefined }) {
      return listPurposes(db, accountId, query);
    },

    async create(ctx: RequestContext, accountId: string, input: PurposeInput) {
      try {
        return await db.transaction().execute((trx) => createIn(trx, ctx, accountId, input));
      } catch (err) {
        // Two concurrent creations with one key: the unique index decides, same answer.
        if (isUniqueViolation(err, PURPOSE_KEY_INDEX)) throw keyTaken(input.key);
        throw err;
      }
    },

    async update(ctx: RequestContext, accountId: string, ref: string, patch: PurposePatch) {
      const id = await resolveId(accountId, ref);
      return db.transaction().execute((trx) => updateIn(trx, ctx, accountId, id, patch));
    },

    async listNotices(
      accountId: string,
      purposeRef: string,
      query: { limit: number; cursor?: string | undefined },
    ) {
      // A forged cursor is a 400 even for a purpose that does not exist.
      cursors.noticeVersion.decode(query.cursor);
      const { id } = await get(accountId, purposeRef);
      return listNoticeVersions(db, accountId, id, query);
    },

    async getNotice(accountId: string, purposeRef: string, version: number) {
      const { id } = await get(accountId, purposeRef);
      const row = await findNoticeVersion(db, accountId, id, version);
      if (!row) throw new NotFoundError(`The purpose has no notice version ${version}.`);
      return row;
    },

    async createNotice(
      ctx: RequestContext,
      accountId: string,
      purposeRef: string,
      input: { text: string; language: string },
    ) {
      const purposeId = await resolveId(accountId, purposeRef);
      return db
        .transaction()
        .execute((trx) => createNoticeIn(trx, ctx, accountId, purposeId, input));
    },
  };
}

function keyTaken(key: string) {
  return new ConflictError('purpose_key_taken', `A purpose with the key ${key} already exists.`);
}

export type PurposesService = ReturnType<typeof createPurposesService>;

/**
 * The module's transaction-bound functions for other modules: the consent ledger marks the
 * notice versions its events refer to as used, in the transaction that appends them (from then
 * on a version cannot be deleted).
 */
export { markNoticeVersionsUsed } from './purposes.repository.js';
