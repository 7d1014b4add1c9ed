import { type Kysely, sql } from 'kysely';

// The bound account, as the row-level security migration's policies read it.
const TENANT = sql.raw(`nullif(current_setting('custodian.account_id', true), '')::uuid`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 34(3): the ground on which the people need not be told (data unintelligible, risk
  // removed, or disproportionate effort with a public communication in their place).
  await db.schema
    .alterTable('breach_incidents')
    .addColumn('subject_notice_exemption', 'jsonb')
    .execute();

  // Art. 34(1), (2): one batch of notices to the people, its text kept once with its SHA-256
  // (what every notice of the batch says), and what selected them. Written once, never changed.
  await db.schema
    .createTable('breach_subject_notice_batches')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('incident_id', 'uuid', (c) => c.notNull())
    .addColumn('selection', 'jsonb', (c) => c.notNull())
    .addColumn('nature', 'text', (c) => c.notNull())
    .addColumn('contact_point', 'text', (c) => c.notNull())
    .addColumn('consequences', 'text', (c) => c.notNull())
    .addColumn('measures', 'text', (c) => c.notNull())
    .addColumn('text_sha256', 'text', (c) => c.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_subject_notice_batches_pkey', ['account_id', 'id'])
    .addForeignKeyConstraint(
      'breach_subject_notice_batches_incident_fkey',
      ['account_id', 'incident_id'],
      'breach_incidents',
      ['account_id', 'id'],
    )
    .execute();
  await db.schema
    .createIndex('breach_subject_notice_batches_incident_idx')
    .on('breach_subject_notice_batches')
    .columns(['account_id', 'incident_id', 'created_at', 'id'])
    .execute();

  // One notice per person and batch, `breach_notice`: a legal duty, sent whatever the person's
  // consents or unsubscription (no audience applies). Deleted with the person (erase_contact).
  await db.schema
    .createTable('breach_subject_notices')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('incident_id', 'uuid', (c) => c.notNull())
    .addColumn('batch_id', 'uuid', (c) => c.notNull())
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    .addColumn('kind', 'text', (c) =>
      c.notNull().defaultTo('breach_notice').check(sql`kind = 'breach_notice'`),
    )
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('pending').check(sql`status in ('pending', 'delivered', 'failed')`),
    )
    .addColumn('reported_at', sql`timestamptz(3)`)
    .addColumn('failure_reason', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_subject_notices_pkey', ['account_id', 'id'])
    .addUniqueConstraint('breach_subject_notices_batch_contact_key', [
      'account_id',
      'batch_id',
      'contact_id',
    ])
    .addForeignKeyConstraint(
      'breach_subject_notices_batch_fkey',
      ['account_id', 'batch_id'],
      'breach_subject_notice_batches',
      ['account_id', 'id'],
    )
    .addForeignKeyConstraint(
      'breach_subject_notices_incident_fkey',
      ['account_id', 'incident_id'],
      'breach_incidents',
      ['account_id', 'id'],
    )
    .addForeignKeyConstraint(
      'breach_subject_notices_contact_fkey',
      ['account_id', 'contact_id'],
      'contacts',
      ['account_id', 'id'],
    )
    .execute();
  // The sender's list: an incident's notices by status, in id (creation) order.
  await db.schema
    .createIndex('breach_subject_notices_incident_status_idx')
    .on('breach_subject_notices')
    .columns(['account_id', 'incident_id', 'status', 'id'])
    .execute();
  // Erasure deletes a person's notices; the contact foreign key needs its index too.
  await db.schema
    .createIndex('breach_subject_notices_contact_idx')
    .on('breach_subject_notices')
    .columns(['account_id', 'contact_id'])
    .execute();

  for (const table of ['breach_subject_notice_batches', 'breach_subject_notices']) {
    const t = sql.id(table);
    await sql`alter table ${t} enable row level security`.execute(db);
    await sql`alter table ${t} force row level security`.execute(db);
    await sql`create policy tenant_isolation on ${t}
      using (account_id = ${TENANT}) with check (account_id = ${TENANT})`.execute(db);
    await sql`create policy owner_access on ${t} to current_user using (true) with check (true)`.execute(
      db,
    );
  }

  // Art. 17: erasure now also deletes the person's breach notices. The checks are those of the
  // row-level security migration, unchanged.
  await eraseContact(db, true);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
async function eraseContact(db: Kysely<any>, withNotices: boolean): Promise<void> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  const notices = withNotices
    ? sql`delete from breach_subject_notices
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
      ${notices}
      delete from consent_events where account_id = p_account_id and contact_id = p_contact_id;
      delete from events where account_id = p_account_id and contact_id = p_contact_id;
      delete from contacts where account_id = p_account_id and id = p_contact_id;
    end
    $$`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await eraseContact(db, false);
  await db.schema.dropTable('breach_subject_notices').execute();
  await db.schema.dropTable('breach_subject_notice_batches').execute();
  await db.schema.alterTable('breach_incidents').dropColumn('subject_notice_exemption').execute();
}
