import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The token that replaced this one, encrypted (AES-256-GCM), kept only for the short grace
  // window in which a concurrent refresh with the same token gets the same successor.
  await db.schema.alterTable('refresh_tokens').addColumn('successor_ciphertext', 'text').execute();
  // Finds the successors whose grace window has passed, to clear them.
  await db.schema
    .createIndex('refresh_tokens_successor_used_at_idx')
    .on('refresh_tokens')
    .column('used_at')
    .where(sql.ref('successor_ciphertext'), 'is not', null)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('refresh_tokens_successor_used_at_idx').execute();
  await db.schema.alterTable('refresh_tokens').dropColumn('successor_ciphertext').execute();
}
