import { type Kysely, sql } from 'kysely';

// The bound account, as the row-level security migration's policies read it.
const TENANT = sql.raw(`nullif(current_setting('custodian.account_id', true), '')::uuid`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The reminders the worker put on the feed, one row per subject and threshold: the primary
  // key makes each reminder once-only, also with several workers at once.
  await db.schema
    .createTable('breach_incident_reminders')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('incident_id', 'uuid', (c) => c.notNull())
    .addColumn('threshold', 'text', (c) =>
      c.notNull().check(sql`threshold in ('24h', '6h', 'passed')`),
    )
    .addColumn('sent_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('breach_incident_reminders_pkey', [
      'account_id',
      'incident_id',
      'threshold',
    ])
    .addForeignKeyConstraint(
      'breach_incident_reminders_incident_fkey',
      ['account_id', 'incident_id'],
      'breach_incidents',
      ['account_id', 'id'],
    )
    .execute();
  await db.schema
    .createTable('data_subject_request_reminders')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('request_id', 'uuid', (c) => c.notNull())
    .addColumn('threshold', 'text', (c) => c.notNull().check(sql`threshold in ('7d', 'overdue')`))
    .addColumn('sent_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('data_subject_request_reminders_pkey', [
      'account_id',
      'request_id',
      'threshold',
    ])
    .addForeignKeyConstraint(
      'data_subject_request_reminders_request_fkey',
      ['account_id', 'request_id'],
      'data_subject_requests',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
  // The reminder sweep looks at open requests by due time, across accounts.
  await sql`
    create index data_subject_requests_open_due_idx
    on data_subject_requests (due_at)
    where status in ('received', 'identity_verified')`.execute(db);

  for (const table of ['breach_incident_reminders', 'data_subject_request_reminders']) {
    const t = sql.id(table);
    await sql`alter table ${t} enable row level security`.execute(db);
    await sql`alter table ${t} force row level security`.execute(db);
    await sql`create policy tenant_isolation on ${t}
      using (account_id = ${TENANT}) with check (account_id = ${TENANT})`.execute(db);
    await sql`create policy owner_access on ${t} to current_user using (true) with check (true)`.execute(
      db,
    );
  }

  // The reminder sweeps' questions across accounts, answered as ids only: the worker then binds
  // each account and reads, records and announces its reminders there. A threshold is the
  // current one (`passed` / `overdue` past the deadline, then the nearest); one already sent is
  // not asked again. Hours are added on the instant (an interval of hours, not days).
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  await sql`create function breach_incidents_due_for_reminder(p_now timestamptz, p_limit integer)
    returns table (account_id uuid, id uuid)
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
    select b.account_id, b.id
    from breach_incidents b
    where b.first_notified_at is null and b.status <> 'closed' and b.risk <> 'none'
      and b.authority_deadline_at <= p_now + interval '24 hours'
      and not exists (
        select 1 from breach_incident_reminders r
        where r.account_id = b.account_id and r.incident_id = b.id
          and r.threshold = case
            when b.authority_deadline_at < p_now then 'passed'
            when b.authority_deadline_at <= p_now + interval '6 hours' then '6h'
            else '24h' end
      )
    order by b.authority_deadline_at, b.account_id, b.id
    limit p_limit
    $$`.execute(db);
  await sql`create function data_subject_requests_due_for_reminder(
      p_now timestamptz, p_limit integer)
    returns table (account_id uuid, id uuid)
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
    select d.account_id, d.id
    from data_subject_requests d
    where d.status in ('received', 'identity_verified')
      and d.due_at <= p_now + interval '168 hours'
      and not exists (
        select 1 from data_subject_request_reminders r
        where r.account_id = d.account_id and r.request_id = d.id
          and r.threshold = case when d.due_at < p_now then 'overdue' else '7d' end
      )
    order by d.due_at, d.account_id, d.id
    limit p_limit
    $$`.execute(db);
  for (const fn of DEFINERS) {
    await sql`revoke execute on function ${sql.raw(fn)} from public`.execute(db);
  }
}

const DEFINERS = [
  'breach_incidents_due_for_reminder(timestamptz, integer)',
  'data_subject_requests_due_for_reminder(timestamptz, integer)',
];

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const fn of DEFINERS) await sql`drop function if exists ${sql.raw(fn)}`.execute(db);
  await sql`drop index if exists data_subject_requests_open_due_idx`.execute(db);
  await db.schema.dropTable('data_subject_request_reminders').execute();
  await db.schema.dropTable('breach_incident_reminders').execute();
}
