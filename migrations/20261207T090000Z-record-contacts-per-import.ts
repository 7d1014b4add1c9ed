import { type Kysely, sql } from 'kysely';

// The bound account, as the row-level security migration's policies read it.
const TENANT = sql.raw(`(select nullif(current_setting('custodian.account_id', true), '')::uuid)`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Which contacts each import wrote or confirmed (created, updated, or found unchanged), so a
  // selection can name "the people in that file": the contact list's `importId` filter, and a
  // breach notice to everyone a leaked import file held (Art. 34). Ids only, no personal data;
  // the rows go with the contact (erase_contact() deletes them). No foreign key: its check
  // would lock every imported contact's row once more (FOR KEY SHARE) in the batch that has
  // just written it; the batch writer takes the ids from that very upsert.
  await db.schema
    .createTable('imported_contacts')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('import_id', 'uuid', (c) => c.notNull())
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    // In contact id order within an import: the keyset walk of a selection reads it in order.
    .addPrimaryKeyConstraint('imported_contacts_pkey', ['account_id', 'import_id', 'contact_id'])
    .execute();
  // An erasure finds the person's rows by this index.
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

  // Art. 17: erasure now also deletes the person's import records. Otherwise the function of
  // the subject-notices migration, unchanged.
  await eraseContact(db, true);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
async function eraseContact(db: Kysely<any>, withImports: boolean): Promise<void> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  const imports = withImports
    ? sql`delete from imported_contacts
        where account_id = p_account_id and contact_id = p_contact_id;`
    : sql``;
  await sql`
    create or replace function erase_contact(p_account_id uuid, p_contact_id uuid) returns void
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    begin
      if p_account_id is null or p_contact_id is null then
        raise exception 'erase_contact needs an account and a contact' using errcode = '22004';
      end if;
      if p_account_id is distinct from ${TENANT} then
        raise exception 'erase_contact acts only for the bound account' using errcode = '42501';
      end if;
      if not exists (
        select 1 from erasures where account_id = p_account_id and contact_id = p_contact_id
      ) then
        raise exception 'no erasure is recorded for contact % of account %',
          p_contact_id, p_account_id using errcode = 'P0001';
      end if;
      ${imports}
      delete from breach_subject_notices
        where account_id = p_account_id and contact_id = p_contact_id;
      delete from consent_events where account_id = p_account_id and contact_id = p_contact_id;
      delete from events where account_id = p_account_id and contact_id = p_contact_id;
      delete from contacts where account_id = p_account_id and id = p_contact_id;
    end
    $$`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await eraseContact(db, false);
  await db.schema.dropTable('imported_contacts').execute();
}
