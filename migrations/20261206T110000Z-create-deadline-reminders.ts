import { type Kysely, sql } from 'kysely';

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
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists data_subject_requests_open_due_idx`.execute(db);
  await db.schema.dropTable('data_subject_request_reminders').execute();
  await db.schema.dropTable('breach_incident_reminders').execute();
}
