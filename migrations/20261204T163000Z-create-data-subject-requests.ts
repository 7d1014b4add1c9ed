import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Data-subject requests (Art. 15–18, 20, 21) and the controller's answer to each (Art. 12).
  // The subject's address, customer id, notes and identity evidence are kept in clear only
  // while the request needs them; `subject_email_hash` (the keyed fingerprint the suppression
  // list uses) stays, so an erased person's requests can still be found and shown as facts.
  // `contact_id` has no foreign key: the request must outlive the contact it erases.
  await db.schema
    .createTable('data_subject_requests')
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id'))
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('type', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`type in ('access', 'portability', 'rectification', 'erasure', 'restriction', 'objection')`,
        ),
    )
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`status in ('received', 'identity_verified', 'completed', 'rejected', 'cancelled')`,
        ),
    )
    .addColumn('external_id', 'text')
    .addColumn('channel', 'text')
    .addColumn('contact_id', 'uuid')
    .addColumn('subject_email', 'text')
    .addColumn('subject_email_hash', 'text', (c) => c.notNull())
    .addColumn('subject_customer_id', 'text')
    .addColumn('notes', 'text')
    .addColumn('purpose_ids', 'jsonb')
    .addColumn('corrections', 'jsonb')
    .addColumn('received_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('time_zone', 'text', (c) => c.notNull())
    .addColumn('holiday_country', 'text')
    .addColumn('calendar', 'text', (c) => c.notNull())
    .addColumn('due_date', 'text', (c) =>
      c.notNull().check(sql`due_date ~ '^\\d{4}-\\d{2}-\\d{2}$'`),
    )
    .addColumn('due_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('original_due_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('extension_months', 'integer', (c) => c.check(sql`extension_months in (1, 2)`))
    .addColumn('extension_reason', 'text')
    .addColumn('extended_at', sql`timestamptz(3)`)
    .addColumn('subject_informed_at', sql`timestamptz(3)`)
    .addColumn('identity_verified_at', sql`timestamptz(3)`)
    .addColumn('identity_method', 'text', (c) =>
      c.check(sql`identity_method in ('manual', 'link')`),
    )
    .addColumn('identity_evidence', 'text')
    .addColumn('verification_requested_at', sql`timestamptz(3)`)
    .addColumn('decided_at', sql`timestamptz(3)`)
    .addColumn('decided_late', 'boolean')
    .addColumn('decision_reason', 'text')
    .addColumn('rejection_basis', 'text', (c) =>
      c.check(
        sql`rejection_basis in ('identity_not_verified', 'manifestly_unfounded_or_excessive', 'erasure_exception', 'other')`,
      ),
    )
    .addColumn('complaint_information_given', 'boolean')
    .addColumn('recipients_informed', 'jsonb')
    .addColumn('recipients_not_informed_reason', 'text')
    .addColumn('outcome', 'jsonb')
    .addColumn('export_ciphertext', 'text')
    .addColumn('export_expires_at', sql`timestamptz(3)`)
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addPrimaryKeyConstraint('data_subject_requests_pkey', ['account_id', 'id'])
    .execute();
  // The controller's own id for the request is unique in the account (a retry finds it).
  await sql`
    create unique index data_subject_requests_external_id_key
    on data_subject_requests (account_id, external_id) where external_id is not null`.execute(db);
  await db.schema
    .createIndex('data_subject_requests_created_idx')
    .on('data_subject_requests')
    .columns(['account_id', 'created_at', 'id'])
    .execute();
  await db.schema
    .createIndex('data_subject_requests_due_idx')
    .on('data_subject_requests')
    .columns(['account_id', 'status', 'due_at'])
    .execute();
  // An erasure finds the person's other requests by fingerprint or contact id (Art. 17).
  await db.schema
    .createIndex('data_subject_requests_subject_idx')
    .on('data_subject_requests')
    .columns(['account_id', 'subject_email_hash'])
    .execute();
  await db.schema
    .createIndex('data_subject_requests_contact_idx')
    .on('data_subject_requests')
    .columns(['account_id', 'contact_id'])
    .execute();

  // The sweep that drops stored exports past their time looks only at rows that hold one.
  await sql`
    create index data_subject_requests_export_expiry_idx
    on data_subject_requests (export_expires_at)
    where export_ciphertext is not null`.execute(db);

  // Single-use identity-verification links (only the token's SHA-256 is stored).
  await db.schema
    .createTable('data_subject_request_tokens')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('request_id', 'uuid', (c) => c.notNull())
    .addColumn('expires_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('used_at', sql`timestamptz(3)`)
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addForeignKeyConstraint(
      'data_subject_request_tokens_request_fkey',
      ['account_id', 'request_id'],
      'data_subject_requests',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();

  await db.schema
    .createIndex('data_subject_request_tokens_request_idx')
    .on('data_subject_request_tokens')
    .columns(['account_id', 'request_id'])
    .execute();

  // Which request an erasure answered (its `request_id` is the HTTP request's id).
  await db.schema.alterTable('erasures').addColumn('data_subject_request_id', 'uuid').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('erasures').dropColumn('data_subject_request_id').execute();
  await db.schema.dropTable('data_subject_request_tokens').execute();
  await db.schema.dropTable('data_subject_requests').execute();
}
