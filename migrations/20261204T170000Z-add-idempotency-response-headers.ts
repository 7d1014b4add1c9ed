import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // A replayed answer carries the headers of the first one that say where the created resource
  // is and which version it has: without them a retried create loses its Location and ETag.
  await db.schema
    .alterTable('idempotency_keys')
    .addColumn('response_location', 'text')
    .addColumn('response_etag', 'text')
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('idempotency_keys')
    .dropColumn('response_location')
    .dropColumn('response_etag')
    .execute();
}
