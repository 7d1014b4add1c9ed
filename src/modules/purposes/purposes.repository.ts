import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, keysetPage } from '../../db/keyset.js';
import type { DB, NoticeVersionRow, PurposeRow } from '../../db/schema.js';

/** The only SQL on `purposes` and `notice_versions`. */

type Db = Kysely<DB> | Transaction<DB>;

export type PurposeWithLatest = PurposeRow & { latest_notice_version: number | null };

/** A purpose row with the number of its newest notice version. */
function purposes(db: Db, accountId: string) {
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

export async function findPurpose(db: Db, accountId: string, id: string) {
  return purposes(db, accountId).where('purposes.id', '=', id).executeTakeFirst();
}

/** A purpose by its key (keys never change, and are unique in the account). */
export async function findPurposeByKey(db: Db, accountId: string, key: string) {
  return purposes(db, accountId).where('purposes.key', '=', key).executeTakeFirst();
}

/** Just the purpose's id and key: what a consent check needs, without the notice subquery. */
export async function findPurposeRef(db: Db, accountId: string, id: string) {
  return db
    .selectFrom('purposes')
    .select(['id', 'key'])
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** One page of the account's purposes, by key. */
export function listPurposes(
  db: Db,
  accountId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  return keysetPage(purposes(db, accountId), {
    codec: cursors.purposeKey,
    keys: [{ column: 'purposes.key', cursorValue: (row) => row.key }],
    limit: page.limit,
    cursor: page.cursor,
  });
}

export async function purposeIdByKey(trx: Transaction<DB>, accountId: string, key: string) {
  return trx
    .selectFrom('purposes')
    .select('id')
    .where('account_id', '=', accountId)
    .where('key', '=', key)
    .executeTakeFirst();
}

export async function insertPurpose(
  trx: Transaction<DB>,
  values: {
    account_id: string;
    key: string;
    name: string;
    description: string | null;
    category?: string;
  },
): Promise<PurposeRow> {
  return trx.insertInto('purposes').values(values).returningAll().executeTakeFirstOrThrow();
}

/** Locks the purpose row until the transaction ends. */
export async function lockPurpose(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<PurposeRow | undefined> {
  return trx
    .selectFrom('purposes')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export async function updatePurpose(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  values: { name?: string; description?: string | null; category?: string },
): Promise<void> {
  await trx
    .updateTable('purposes')
    .set({ ...values, updated_at: new Date() })
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .execute();
}

/** Id, key, name and category of the given purposes (for receipts and consent checks). */
export async function purposeSummaries(db: Db, accountId: string, ids: string[]) {
  if (ids.length === 0) return [];
  return db
    .selectFrom('purposes')
    .select(['id', 'key', 'name', 'category'])
    .where('account_id', '=', accountId)
    .where('id', 'in', ids)
    .execute();
}

/** Every purpose of the account, summarised (an account has tens of purposes, not thousands). */
export async function allPurposeSummaries(db: Db, accountId: string) {
  return db
    .selectFrom('purposes')
    .select(['id', 'key', 'name', 'category', 'description'])
    .where('account_id', '=', accountId)
    .orderBy('key')
    .execute();
}

/** One page of a purpose's notice versions (without their text), oldest first. */
export function listNoticeVersions(
  db: Db,
  accountId: string,
  purposeId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const q = db
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
  return keysetPage(q, {
    codec: cursors.noticeVersion,
    keys: [{ column: 'version', cursorValue: (row) => row.version }],
    limit: page.limit,
    cursor: page.cursor,
  });
}

export async function findNoticeVersion(
  db: Db,
  accountId: string,
  purposeId: string,
  version: number,
): Promise<NoticeVersionRow | undefined> {
  return db
    .selectFrom('notice_versions')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('purpose_id', '=', purposeId)
    .where('version', '=', version)
    .executeTakeFirst();
}

/** Whether the purpose has notice version `version`. */
export async function noticeVersionExists(
  db: Db,
  accountId: string,
  purposeId: string,
  version: number,
): Promise<boolean> {
  const row = await db
    .selectFrom('notice_versions')
    .select('version')
    .where('account_id', '=', accountId)
    .where('purpose_id', '=', purposeId)
    .where('version', '=', version)
    .executeTakeFirst();
  return row !== undefined;
}

/** SHA-256 and language of the given (purpose, version) pairs, for consent receipts. */
export async function noticeDigests(
  db: Db,
  accountId: string,
  versions: { purposeId: string; version: number }[],
) {
  if (versions.length === 0) return [];
  return db
    .selectFrom('notice_versions')
    .select(['purpose_id', 'version', 'text_sha256', 'language'])
    .where('account_id', '=', accountId)
    .where((eb) =>
      eb.or(
        versions.map((v) =>
          eb.and([eb('purpose_id', '=', v.purposeId), eb('version', '=', v.version)]),
        ),
      ),
    )
    .execute();
}

/** The newest version number of a purpose's notice, null before the first. */
export async function latestNoticeVersion(
  trx: Transaction<DB>,
  accountId: string,
  purposeId: string,
): Promise<number | null> {
  const latest = await trx
    .selectFrom('notice_versions')
    .select(sql<number | null>`max(version)`.as('v'))
    .where('account_id', '=', accountId)
    .where('purpose_id', '=', purposeId)
    .executeTakeFirst();
  return latest?.v ?? null;
}

export async function insertNoticeVersion(
  trx: Transaction<DB>,
  values: {
    account_id: string;
    purpose_id: string;
    version: number;
    text: string;
    text_sha256: string;
    language: string;
  },
): Promise<NoticeVersionRow> {
  return trx.insertInto('notice_versions').values(values).returningAll().executeTakeFirstOrThrow();
}

/** The ids of the purposes with these keys, by key; keys without a purpose are left out. */
export async function purposeIdsByKey(
  db: Db,
  accountId: string,
  keys: string[],
): Promise<Map<string, string>> {
  if (keys.length === 0) return new Map();
  const rows = await db
    .selectFrom('purposes')
    .select(['id', 'key'])
    .where('account_id', '=', accountId)
    .where('key', 'in', keys)
    .execute();
  return new Map(rows.map((row) => [row.key, row.id]));
}

/**
 * Records the first use of each (purpose, version) that has none yet, at `usedAt` or else the
 * transaction's start; a version already in use keeps its first time.
 */
export async function markNoticeVersionsUsed(
  trx: Transaction<DB>,
  accountId: string,
  versions: { purposeId: string; version: number }[],
  usedAt?: Date,
): Promise<void> {
  const distinct = new Map(versions.map((v) => [`${v.purposeId}:${v.version}`, v]));
  for (const { purposeId, version } of distinct.values()) {
    await trx
      .updateTable('notice_versions')
      .set({ first_used_at: usedAt ?? sql<Date>`now()` })
      .where('account_id', '=', accountId)
      .where('purpose_id', '=', purposeId)
      .where('version', '=', version)
      .where('first_used_at', 'is', null)
      .execute();
  }
}
