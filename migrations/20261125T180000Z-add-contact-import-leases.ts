import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // A running import holds a lease that its process renews while it works. A job still marked
  // `running` whose lease has run out belongs to a process that died: it is `interrupted`, and
  // a retry with the same Idempotency-Key takes it over and resumes after `last_row`.
  await db.schema
    .alterTable('contact_imports')
    .addColumn('lease_expires_at', sql`timestamptz(3)`)
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('idempotency_key', 'text')
    .execute();
  await db.schema
    .alterTable('contact_imports')
    .dropConstraint('contact_imports_status_valid')
    .execute();
  await db.schema
    .alterTable('contact_imports')
    .addCheckConstraint(
      'contact_imports_status_valid',
      sql`status in ('running', 'interrupted', 'completed', 'failed')`,
    )
    .execute();
  await db.schema
    .createIndex('contact_imports_idempotency_key_idx')
    .on('contact_imports')
    .columns(['account_id', 'idempotency_key'])
    .unique()
    .where(sql.ref('idempotency_key'), 'is not', null)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('contact_imports_idempotency_key_idx').execute();
  await db
    .updateTable('contact_imports')
    .set({ status: 'failed', error_code: 'interrupted' })
    .where('status', '=', 'interrupted')
    .execute();
  await db.schema
    .alterTable('contact_imports')
    .dropConstraint('contact_imports_status_valid')
    .execute();
  await db.schema
    .alterTable('contact_imports')
    .addCheckConstraint(
      'contact_imports_status_valid',
      sql`status in ('running', 'completed', 'failed')`,
    )
    .execute();
  await db.schema
    .alterTable('contact_imports')
    .dropColumn('lease_expires_at')
    .dropColumn('attempts')
    .dropColumn('idempotency_key')
    .execute();
}
