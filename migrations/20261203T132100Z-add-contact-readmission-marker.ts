import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 17 with Art. 7(1): a contact created at an erased (suppressed) address came back only
  // through double opt-in; until the person confirms one, no other grant may be recorded —
  // whatever its address becomes meanwhile, so the mark is on the contact, not the address.
  await db.schema
    .alterTable('contacts')
    .addColumn('suppressed_until_confirmed', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  // Few contacts carry the mark: every import batch asks which of its addresses do.
  await db.schema
    .createIndex('contacts_suppressed_until_confirmed_idx')
    .on('contacts')
    .columns(['account_id', 'email'])
    .where(sql.ref('suppressed_until_confirmed'), '=', true)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('contacts_suppressed_until_confirmed_idx').execute();
  await db.schema.alterTable('contacts').dropColumn('suppressed_until_confirmed').execute();
}
