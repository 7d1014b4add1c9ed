import { type SelectQueryBuilder, sql } from 'kysely';
import { decodeCursor, encodeCursor } from '../http/schemas.js';

/**
 * One page of rows in (created_at, id) order, with an opaque cursor for the next page. Keyset
 * pagination: stable under inserts, no OFFSET. `created_at` columns hold milliseconds
 * (timestamptz(3)), so the cursor round-trips through a JavaScript Date exactly.
 */
export async function pageByCreatedAt<Row extends { created_at: Date; id: string }>(
  // biome-ignore lint/suspicious/noExplicitAny: works for any table with created_at and id
  query: SelectQueryBuilder<any, any, Row>,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ rows: Row[]; nextCursor: string | null }> {
  const after = decodeCursor(page.cursor, 2) as [string, string] | undefined;
  let q = query;
  if (after) q = q.where(sql<boolean>`(created_at, id) > (${new Date(after[0])}, ${after[1]})`);
  const rows = await q
    .orderBy('created_at')
    .orderBy('id')
    .limit(page.limit + 1)
    .execute();
  const pageRows = rows.slice(0, page.limit);
  const last = pageRows[pageRows.length - 1];
  return {
    rows: pageRows,
    nextCursor:
      rows.length > page.limit && last
        ? encodeCursor([last.created_at.toISOString(), last.id])
        : null,
  };
}
