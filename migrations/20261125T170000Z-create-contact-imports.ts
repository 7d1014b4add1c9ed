import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Bulk contact imports (issue 4 item 9): one row per import job. Counters and the `last_row`
  // checkpoint advance in the same transaction as each batch they describe, so after a crash
  // the job says exactly which whole batches were written.
  await db.schema
    .createTable('contact_imports')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('running'))
    .addColumn('format', 'text', (c) => c.notNull())
    .addColumn('missing_consent', 'text', (c) => c.notNull())
    // SHA-256 of the body as received, known once the stream is consumed.
    .addColumn('content_sha256', 'text')
    // Rows in the file: unknown (null) until the end of the stream.
    .addColumn('total_rows', 'integer')
    .addColumn('processed_rows', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('rejected_count', 'integer', (c) => c.notNull().defaultTo(0))
    // Line number of the last row of the last committed batch (0: none yet).
    .addColumn('last_row', 'integer', (c) => c.notNull().defaultTo(0))
    // Why a failed import stopped: a stable code only, never file content.
    .addColumn('error_code', 'text')
    .addColumn('error_line', 'integer')
    .addColumn('created_by_type', 'text')
    .addColumn('created_by_id', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('finished_at', sql`timestamptz(3)`)
    .addCheckConstraint(
      'contact_imports_status_valid',
      sql`status in ('running', 'completed', 'failed')`,
    )
    .addCheckConstraint('contact_imports_format_valid', sql`format in ('ndjson', 'csv')`)
    .addPrimaryKeyConstraint('contact_imports_pkey', ['account_id', 'id'])
    .execute();
  await db.schema
    .createIndex('contact_imports_created_idx')
    .on('contact_imports')
    .columns(['account_id', 'created_at', 'id'])
    .execute();

  // Per-row problems: where (line, field) and what (a stable code and our own message), never
  // the offending value, so the report holds no personal data that could outlive an erasure.
  await db.schema
    .createTable('contact_import_errors')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('import_id', 'uuid', (c) => c.notNull())
    .addColumn('row_number', 'integer', (c) => c.notNull())
    // Position of the error among the row's errors.
    .addColumn('ordinal', 'integer', (c) => c.notNull())
    .addColumn('field', 'text')
    .addColumn('code', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('contact_import_errors_pkey', [
      'account_id',
      'import_id',
      'row_number',
      'ordinal',
    ])
    .addForeignKeyConstraint(
      'contact_import_errors_import_fk',
      ['account_id', 'import_id'],
      'contact_imports',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('contact_import_errors').execute();
  await db.schema.dropTable('contact_imports').execute();
}
