import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The consent receipt (Kantara CR v1.1 / ISO/IEC 27560) states each purpose's category; an
  // email-marketing purpose is "Marketing" unless the controller says otherwise.
  await db.schema
    .alterTable('purposes')
    .addColumn('category', 'text', (c) => c.notNull().defaultTo('Marketing'))
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('purposes').dropColumn('category').execute();
}
