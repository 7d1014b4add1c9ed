import { type Kysely, sql } from 'kysely';

// The bound account, as the row-level security migration's policies read it.
const TENANT = sql.raw(`(select nullif(current_setting('custodian.account_id', true), '')::uuid)`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Which contacts each import wrote or confirmed (created, updated, or found unchanged), so a
  // selection can name "the people in that file": the contact list's `importId` filter, and a
  // breach notice to everyone a leaked import file held (Art. 34). Ids only, no personal data;
  // the rows go with the contact (erasure deletes the contact, the key cascades).
  await db.schema
    .createTable('imported_contacts')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('import_id', 'uuid', (c) => c.notNull())
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    // In contact id order within an import: the keyset walk of a selection reads it in order.
    .addPrimaryKeyConstraint('imported_contacts_pkey', ['account_id', 'import_id', 'contact_id'])
    .addForeignKeyConstraint(
      'imported_contacts_contact_fkey',
      ['account_id', 'contact_id'],
      'contacts',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
  // The cascade from a deleted contact finds its rows by this index.
  await db.schema
    .createIndex('imported_contacts_contact_idx')
    .on('imported_contacts')
    .columns(['account_id', 'contact_id'])
    .execute();

  // A tenant table like every other (see the row-level security migration).
  await sql`alter table imported_contacts enable row level security`.execute(db);
  await sql`alter table imported_contacts force row level security`.execute(db);
  await sql`create policy tenant_isolation on imported_contacts
    using (account_id = ${TENANT}) with check (account_id = ${TENANT})`.execute(db);
  await sql`create policy owner_access on imported_contacts to current_user
    using (true) with check (true)`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('imported_contacts').execute();
}
