import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { cursors } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import { recordAudit } from '../audit/audit.service.js';
import type { RequestContext } from '../identity/actor.js';

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

/** A purpose row with the number of its newest notice version. */
function purposes(db: Kysely<DB>, accountId: string) {
  return db
    .selectFrom('purposes')
    .selectAll('purposes')
    .select((eb) =>
      eb
        .selectFrom('notice_versions')
        .select((nv) => nv.fn.max('notice_versions.version').as('v'))
        .whereRef('notice_versions.account_id', '=', 'purposes.account_id')
        .whereRef('notice_versions.purpose_id', '=', 'purposes.id')
        .as('latest_notice_version'),
    )
    .where('purposes.account_id', '=', accountId);
}

/**
 * Purposes of processing (Art. 6(1)(a), 7) and their notice texts. A notice is versioned and
 * never edited: a new wording is a new version, so every consent keeps pointing at the exact
 * text the person saw.
 */
export function createPurposesService(db: Kysely<DB>) {
  async function get(accountId: string, id: string) {
    const row = await purposes(db, accountId).where('purposes.id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('The purpose does not exist.');
    return row;
  }

  /** Locks the purpose row, so notice versions of one purpose are numbered one at a time. */
  async function lockPurpose(trx: Kysely<DB>, accountId: string, id: string) {
    const row = await trx
      .selectFrom('purposes')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw new NotFoundError('The purpose does not exist.');
    return row;
  }

  return {
    get,

    async list(accountId: string, query: { limit: number; cursor?: string | undefined }) {
      const after = cursors.purposeKey.decode(query.cursor);
      let q = purposes(db, accountId);
      if (after) q = q.where('purposes.key', '>', after[0]);
      const rows = await q
        .orderBy('purposes.key')
        .limit(query.limit + 1)
        .execute();
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        rows: page,
        nextCursor:
          rows.length > query.limit && last ? cursors.purposeKey.encode([last.key]) : null,
      };
    },

    async create(ctx: RequestContext, accountId: string, input: PurposeInput) {
      const taken = new ConflictError(
        'purpose_key_taken',
        `A purpose with the key ${input.key} already exists.`,
      );
      try {
        return await db.transaction().execute(async (trx) => {
          const existing = await trx
            .selectFrom('purposes')
            .select('id')
            .where('account_id', '=', accountId)
            .where('key', '=', input.key)
            .executeTakeFirst();
          if (existing) throw taken;
          const row = await trx
            .insertInto('purposes')
            .values({
              account_id: accountId,
              key: input.key,
              name: input.name,
              description: input.description ?? null,
              ...(input.category ? { category: input.category } : {}),
            })
            .returningAll()
            .executeTakeFirstOrThrow();
          await recordAudit(trx, ctx, {
            accountId,
            action: 'purpose.created',
            entityType: 'purpose',
            entityId: row.id,
            changedFields: ['key', 'name', 'description', 'category'],
          });
          return { ...row, latest_notice_version: null };
        });
      } catch (err) {
        // Two concurrent creations with one key: the unique index decides, same answer.
        if (isUniqueViolation(err, PURPOSE_KEY_INDEX)) throw taken;
        throw err;
      }
    },

    async update(ctx: RequestContext, accountId: string, id: string, patch: PurposePatch) {
      return db.transaction().execute(async (trx) => {
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
          await trx
            .updateTable('purposes')
            .set({ ...values, updated_at: new Date() })
            .where('account_id', '=', accountId)
            .where('id', '=', id)
            .execute();
          await recordAudit(trx, ctx, {
            accountId,
            action: 'purpose.updated',
            entityType: 'purpose',
            entityId: id,
            changedFields: changed,
          });
        }
        const row = await purposes(trx, accountId)
          .where('purposes.id', '=', id)
          .executeTakeFirstOrThrow();
        return row;
      });
    },

    async listNotices(
      accountId: string,
      purposeId: string,
      query: { limit: number; cursor?: string | undefined },
    ) {
      const after = cursors.noticeVersion.decode(query.cursor);
      await get(accountId, purposeId);
      let q = db
        .selectFrom('notice_versions')
        .select([
          'account_id',
          'purpose_id',
          'version',
          'language',
          'text_sha256',
          'created_at',
          'first_used_at',
        ])
        .where('account_id', '=', accountId)
        .where('purpose_id', '=', purposeId);
      if (after) q = q.where('version', '>', after[0]);
      const rows = await q
        .orderBy('version')
        .limit(query.limit + 1)
        .execute();
      const page = rows.slice(0, query.limit);
      const last = page[page.length - 1];
      return {
        rows: page,
        nextCursor:
          rows.length > query.limit && last ? cursors.noticeVersion.encode([last.version]) : null,
      };
    },

    async getNotice(accountId: string, purposeId: string, version: number) {
      await get(accountId, purposeId);
      const row = await db
        .selectFrom('notice_versions')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('purpose_id', '=', purposeId)
        .where('version', '=', version)
        .executeTakeFirst();
      if (!row) throw new NotFoundError(`The purpose has no notice version ${version}.`);
      return row;
    },

    /** Writes version n+1 of the purpose's notice, with the SHA-256 of its text. */
    async createNotice(
      ctx: RequestContext,
      accountId: string,
      purposeId: string,
      input: { text: string; language: string },
    ) {
      return db.transaction().execute(async (trx) => {
        await lockPurpose(trx, accountId, purposeId);
        const latest = await trx
          .selectFrom('notice_versions')
          .select(sql<number | null>`max(version)`.as('v'))
          .where('account_id', '=', accountId)
          .where('purpose_id', '=', purposeId)
          .executeTakeFirst();
        const row = await trx
          .insertInto('notice_versions')
          .values({
            account_id: accountId,
            purpose_id: purposeId,
            version: (latest?.v ?? 0) + 1,
            text: input.text,
            text_sha256: noticeTextSha256(input.text),
            language: input.language,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await recordAudit(trx, ctx, {
          accountId,
          action: 'notice_version.created',
          entityType: 'purpose',
          entityId: purposeId,
          changedFields: ['notice.text', 'notice.language'],
        });
        return row;
      });
    },
  };
}

export type PurposesService = ReturnType<typeof createPurposesService>;
