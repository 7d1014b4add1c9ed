import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Which formula an entry's hash was computed with. Rows written before this column exist keep
  // version 1 (a hash that does not cover the entry's id) and still verify with it; the service
  // writes version 2 (which does) from now on. The default stays 1 because a process of the
  // previous release, still running during a deployment, writes version-1 hashes. Adding a
  // column with a constant default rewrites no row, so the append-only triggers do not fire.
  await db.schema
    .alterTable('audit_events')
    .addColumn('hash_version', 'smallint', (c) =>
      c.notNull().defaultTo(1).check(sql`hash_version in (1, 2)`),
    )
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('audit_events').dropColumn('hash_version').execute();
}
