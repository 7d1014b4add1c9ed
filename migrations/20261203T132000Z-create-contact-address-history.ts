import type { Kysely } from 'kysely';
import { sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 17: erasure must suppress every address the contact ever held, not only its current
  // one, or an earlier address can be re-created (by a replayed request, an old import file).
  // While the contact lives, its earlier addresses are kept only as keyed hashes (HMAC-SHA256
  // under the server secret), never in plaintext; the rows go with the contact.
  await db.schema
    .createTable('contact_address_history')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    .addColumn('email_hash', 'text', (c) => c.notNull())
    .addColumn('replaced_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('contact_address_history_pkey', [
      'account_id',
      'contact_id',
      'email_hash',
    ])
    .addForeignKeyConstraint(
      'contact_address_history_contact_fkey',
      ['account_id', 'contact_id'],
      'contacts',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('contact_address_history').execute();
}
