import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('purposes')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('purposes_pkey', ['account_id', 'id'])
    .execute();
  await db.schema
    .createIndex('purposes_key_key')
    .on('purposes')
    .columns(['account_id', 'key'])
    .unique()
    .execute();

  // Art. 7(1): the controller must show what the person agreed to. A version's text is kept
  // with its hash and never changes once a consent refers to it.
  await db.schema
    .createTable('notice_versions')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('purpose_id', 'uuid', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('text_sha256', 'text', (c) => c.notNull())
    .addColumn('language', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('first_used_at', 'timestamptz')
    .addPrimaryKeyConstraint('notice_versions_pkey', ['account_id', 'purpose_id', 'version'])
    .addForeignKeyConstraint(
      'notice_versions_purpose_fk',
      ['account_id', 'purpose_id'],
      'purposes',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();

  // Append-only ledger of consent events; the current state is derived from it.
  await db.schema
    .createTable('consent_events')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    .addColumn('purpose_id', 'uuid', (c) => c.notNull())
    .addColumn('notice_version', 'integer')
    // granted | withdrawn | confirmed (double opt-in verified)
    .addColumn('event', 'text', (c) => c.notNull())
    // form | import | api | double_opt_in | withdrawal_link
    .addColumn('method', 'text', (c) => c.notNull())
    .addColumn('legal_basis', 'text', (c) => c.notNull().defaultTo('consent'))
    .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
    .addColumn('recorded_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('ip', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('source_url', 'text')
    .addColumn('actor_type', 'text')
    .addColumn('actor_id', 'text')
    .addCheckConstraint(
      'consent_events_event_valid',
      sql`event in ('granted', 'withdrawn', 'confirmed')`,
    )
    .addPrimaryKeyConstraint('consent_events_pkey', ['account_id', 'id'])
    .addForeignKeyConstraint(
      'consent_events_contact_fk',
      ['account_id', 'contact_id'],
      'contacts',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .addForeignKeyConstraint(
      'consent_events_purpose_fk',
      ['account_id', 'purpose_id'],
      'purposes',
      ['account_id', 'id'],
    )
    .execute();
  await db.schema
    .createIndex('consent_events_contact_idx')
    .on('consent_events')
    .columns(['account_id', 'contact_id', 'purpose_id', 'recorded_at'])
    .execute();
  await db.schema
    .createIndex('consent_events_purpose_idx')
    .on('consent_events')
    .columns(['account_id', 'purpose_id'])
    .execute();

  // The current state per (contact, purpose) is derived from the ledger, never stored apart
  // from it: the newest event wins. This index makes that derivation (and the audience, which
  // walks one purpose's contacts in id order) an index scan.
  await db.schema
    .createIndex('consent_events_state_idx')
    .on('consent_events')
    .columns(['account_id', 'purpose_id', 'contact_id', 'recorded_at desc', 'id desc'])
    .execute();

  // Double opt-in confirmations and withdrawal links: single-use, expiring, stored as hashes.
  await db.schema
    .createTable('consent_tokens')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('contact_id', 'uuid', (c) => c.notNull())
    .addColumn('purpose_id', 'uuid', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addForeignKeyConstraint(
      'consent_tokens_contact_fk',
      ['account_id', 'contact_id'],
      'contacts',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
  await db.schema
    .createIndex('consent_tokens_contact_idx')
    .on('consent_tokens')
    .columns(['account_id', 'contact_id'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('consent_tokens').execute();
  await db.schema.dropTable('consent_events').execute();
  await db.schema.dropTable('notice_versions').execute();
  await db.schema.dropTable('purposes').execute();
}
