import { type Kysely, sql } from 'kysely';

// The bound account, as the row-level security migration's policies read it.
const TENANT = sql.raw(`nullif(current_setting('custodian.account_id', true), '')::uuid`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 33(1): the authority a notification goes to unless the caller names another.
  await db.schema.alterTable('accounts').addColumn('supervisory_authority', 'text').execute();

  // Art. 33(5): every personal-data breach, notified or not. `authority_deadline_at` is
  // `aware_at` + 72 h on the instant, computed once and stored; only a correction of
  // `aware_at` (with its reason, in `aware_at_corrections`) moves it. `source` and
  // `processor_incident_id` say whether the account found the breach itself or was told of it
  // by the provider as its processor (Art. 33(2)); `first_notified_at` and `notified_late`
  // repeat the first authority notification, so lists and the overdue filter need no join.
  await db.schema
    .createTable('breach_incidents')
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id'))
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('source', 'text', (c) =>
      c.notNull().defaultTo('account').check(sql`source in ('account', 'processor')`),
    )
    .addColumn('processor_incident_id', 'uuid')
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('open', 'assessed', 'notified', 'closed')`),
    )
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('kinds', 'jsonb', (c) => c.notNull())
    .addColumn('occurred_at', sql`timestamptz(3)`)
    .addColumn('aware_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('authority_deadline_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('aware_at_corrections', 'jsonb')
    .addColumn('risk', 'text', (c) =>
      c.notNull().check(sql`risk in ('unassessed', 'none', 'risk', 'high')`),
    )
    .addColumn('risk_reason', 'text')
    .addColumn('assessed_at', sql`timestamptz(3)`)
    .addColumn('data_categories', 'jsonb')
    .addColumn('subject_categories', 'jsonb')
    .addColumn('approximate_subjects', 'integer', (c) => c.check(sql`approximate_subjects >= 0`))
    .addColumn('approximate_records', 'integer', (c) => c.check(sql`approximate_records >= 0`))
    .addColumn('likely_consequences', 'text')
    .addColumn('measures_taken', 'text')
    .addColumn('contact_point', 'jsonb', (c) => c.notNull())
    .addColumn('first_notified_at', sql`timestamptz(3)`)
    .addColumn('notified_late', 'boolean')
    .addColumn('notification_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('no_notification_reason', 'text')
    .addColumn('closing_summary', 'text')
    .addColumn('closed_at', sql`timestamptz(3)`)
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_incidents_pkey', ['account_id', 'id'])
    .addCheckConstraint(
      'breach_incidents_occurred_before_aware',
      sql`occurred_at is null or occurred_at <= aware_at`,
    )
    .execute();
  await db.schema
    .createIndex('breach_incidents_created_idx')
    .on('breach_incidents')
    .columns(['account_id', 'created_at', 'id'])
    .execute();
  // Reminders look for unnotified incidents by deadline, across accounts.
  await sql`
    create index breach_incidents_unnotified_deadline_idx
    on breach_incidents (authority_deadline_at)
    where first_notified_at is null and status <> 'closed'`.execute(db);
  // One incident per account and processor incident (the fan-out is resumable).
  await sql`
    create unique index breach_incidents_processor_incident_key
    on breach_incidents (account_id, processor_incident_id)
    where processor_incident_id is not null`.execute(db);

  // Art. 33(4): the notification to the authority, in phases, each kept as sent. Append-only:
  // a trigger refuses UPDATE and TRUNCATE from anyone, and DELETE from all but the tables'
  // owner (the cascade of an account's removal runs as the owner).
  await db.schema
    .createTable('breach_authority_notifications')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('incident_id', 'uuid', (c) => c.notNull())
    .addColumn('phase', 'integer', (c) => c.notNull().check(sql`phase >= 1`))
    .addColumn('notified_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('authority', 'text', (c) => c.notNull())
    .addColumn('reference', 'text')
    .addColumn('channel', 'text')
    .addColumn('content', 'jsonb', (c) => c.notNull())
    .addColumn('delay_reason', 'text')
    .addColumn('late', 'boolean', (c) => c.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_authority_notifications_pkey', ['account_id', 'id'])
    .addUniqueConstraint('breach_authority_notifications_phase_key', [
      'account_id',
      'incident_id',
      'phase',
    ])
    .addForeignKeyConstraint(
      'breach_authority_notifications_incident_fkey',
      ['account_id', 'incident_id'],
      'breach_incidents',
      ['account_id', 'id'],
    )
    .execute();
  await sql`
    create function breach_authority_notifications_append_only() returns trigger
    language plpgsql as $$
    begin
      if tg_op = 'DELETE'
        and pg_has_role(current_user, (select relowner from pg_class where oid = tg_relid), 'USAGE')
      then
        return old;
      end if;
      raise exception 'breach_authority_notifications is append-only (% refused)', tg_op
        using errcode = 'P0001';
    end
    $$`.execute(db);
  await sql`
    create trigger breach_authority_notifications_no_update_delete
    before update or delete on breach_authority_notifications
    for each row execute function breach_authority_notifications_append_only()`.execute(db);
  await sql`
    create trigger breach_authority_notifications_no_truncate
    before truncate on breach_authority_notifications
    for each statement execute function breach_authority_notifications_append_only()`.execute(db);

  // Tenant tables: row-level security as on every other one (migration
  // enable-row-level-security), the bound account's rows only, the owner past it.
  for (const table of ['breach_incidents', 'breach_authority_notifications']) {
    const t = sql.id(table);
    await sql`alter table ${t} enable row level security`.execute(db);
    await sql`alter table ${t} force row level security`.execute(db);
    await sql`create policy tenant_isolation on ${t}
      using (account_id = ${TENANT}) with check (account_id = ${TENANT})`.execute(db);
    await sql`create policy owner_access on ${t} to current_user using (true) with check (true)`.execute(
      db,
    );
  }
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('breach_authority_notifications').execute();
  await sql`drop function if exists breach_authority_notifications_append_only()`.execute(db);
  await db.schema.dropTable('breach_incidents').execute();
  await db.schema.alterTable('accounts').dropColumn('supervisory_authority').execute();
}
