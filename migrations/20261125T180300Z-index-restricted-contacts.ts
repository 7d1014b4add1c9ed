import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Restricted contacts (Art. 18) are few: every import batch asks which of its addresses are
  // restricted, and this index answers without touching the other contacts.
  await db.schema
    .createIndex('contacts_restricted_email_idx')
    .on('contacts')
    .columns(['account_id', 'email'])
    .where(sql.ref('restricted_at'), 'is not', null)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('contacts_restricted_email_idx').execute();
}
