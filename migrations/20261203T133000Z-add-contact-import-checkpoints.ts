import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // `consumed_bytes` / `consumed_sha256`: how many bytes of the body the last committed batch
  // had read, and their SHA-256. A resumed upload must begin with exactly those bytes before
  // it may write anything, so a retry with another file cannot be passed off as the same one.
  // `error_count` counts every row error found; only the first `stored_error_count` of them
  // are kept (the report is capped so a file of garbage cannot grow it without bound).
  await db.schema
    .alterTable('contact_imports')
    .addColumn('consumed_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('consumed_sha256', 'text')
    .addColumn('error_count', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('stored_error_count', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  // Jobs from before this migration: every error they found was stored.
  await sql`update contact_imports i set error_count = e.n, stored_error_count = e.n
    from (select import_id, count(*)::int as n from contact_import_errors group by import_id) e
    where e.import_id = i.id`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('contact_imports')
    .dropColumn('consumed_bytes')
    .dropColumn('consumed_sha256')
    .dropColumn('error_count')
    .dropColumn('stored_error_count')
    .execute();
}
