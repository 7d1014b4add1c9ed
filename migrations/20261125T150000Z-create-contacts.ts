import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('contacts')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    // Normalised (trimmed, lower-cased): unique per account, case-insensitively.
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('first_name', 'text')
    .addColumn('last_name', 'text')
    .addColumn('language', 'text')
    .addColumn('attributes', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('active'))
    // Art. 18: while restricted, the data is only stored.
    .addColumn('restricted_at', sql`timestamptz(3)`)
    .addColumn('restriction_reason', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addCheckConstraint(
      'contacts_status_valid',
      sql`status in ('active', 'unsubscribed', 'bounced')`,
    )
    .addPrimaryKeyConstraint('contacts_pkey', ['account_id', 'id'])
    .execute();
  await db.schema
    .createIndex('contacts_email_key')
    .on('contacts')
    .columns(['account_id', 'email'])
    .unique()
    .execute();
  await db.schema
    .createIndex('contacts_updated_idx')
    .on('contacts')
    .columns(['account_id', 'updated_at', 'id'])
    .execute();
  await db.schema
    .createIndex('contacts_created_idx')
    .on('contacts')
    .columns(['account_id', 'created_at', 'id'])
    .execute();

  // Art. 17: an erased address survives only as a keyed hash (HMAC-SHA256, server secret), so
  // it cannot be re-imported by accident.
  await db.schema
    .createTable('suppressions')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('email_hash', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('suppressions_pkey', ['account_id', 'email_hash'])
    .execute();

  // What accountability needs after an erasure: that it happened, when, and for which hash.
  await db.schema
    .createTable('erasures')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    .addColumn('email_hash', 'text', (c) => c.notNull())
    .addColumn('erased_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('request_id', 'text')
    .addPrimaryKeyConstraint('erasures_pkey', ['account_id', 'contact_id'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('erasures').execute();
  await db.schema.dropTable('suppressions').execute();
  await db.schema.dropTable('contacts').execute();
}
