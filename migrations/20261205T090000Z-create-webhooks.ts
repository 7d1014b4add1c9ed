import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Where an account wants its events pushed. The outbox stays `events`: an endpoint only keeps
  // how far its fan-out has read the account's feed (`cursor_seq`). The signing secret is kept
  // encrypted (AES-256-GCM under WEBHOOK_SECRET_KEY), and during a rotation the previous one
  // too, until `previous_secret_expires_at`.
  await db.schema
    .createTable('webhook_endpoints')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('event_types', 'jsonb', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('active').check(sql`status in ('active', 'disabled')`),
    )
    .addColumn('secret_ciphertext', 'text', (c) => c.notNull())
    .addColumn('previous_secret_ciphertext', 'text')
    .addColumn('previous_secret_expires_at', sql`timestamptz(3)`)
    .addColumn('cursor_seq', 'bigint', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('webhook_endpoints_pkey', ['account_id', 'id'])
    .execute();
  // The worker's fan-out looks at active endpoints only.
  await sql`
    create index webhook_endpoints_active_idx
    on webhook_endpoints (account_id, id) where status = 'active'`.execute(db);

  // One row per (endpoint, event): the delivery's state and its last attempt's outcome (status
  // code, error code, duration), never a body. The body is read from `events` at send time, so
  // an event erased with its contact cannot be sent afterwards.
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`uuid_v7()`))
    .addColumn('endpoint_id', 'uuid', (c) => c.notNull())
    .addColumn('event_id', 'uuid', (c) => c.notNull())
    .addColumn('event_seq', 'bigint', (c) => c.notNull())
    .addColumn('event_type', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('pending')
        .check(sql`status in ('pending', 'sending', 'delivered', 'failed', 'cancelled')`),
    )
    // Every claim adds one, also a claim of an expired lease: the number fences the claim's
    // writes, so a worker that lost its lease cannot record an outcome over a newer attempt.
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    // `attempts` when the current round began (0, or the count at the last redelivery): the
    // back-off starts over with each round.
    .addColumn('round_started_after', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('give_up_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('lease_expires_at', sql`timestamptz(3)`)
    .addColumn('last_attempt_at', sql`timestamptz(3)`)
    .addColumn('last_status_code', 'integer')
    .addColumn('last_error_code', 'text')
    .addColumn('last_duration_ms', 'integer')
    .addColumn('delivered_at', sql`timestamptz(3)`)
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('webhook_deliveries_pkey', ['account_id', 'id'])
    .addUniqueConstraint('webhook_deliveries_endpoint_event_key', [
      'account_id',
      'endpoint_id',
      'event_id',
    ])
    .addForeignKeyConstraint(
      'webhook_deliveries_endpoint_fkey',
      ['account_id', 'endpoint_id'],
      'webhook_endpoints',
      ['account_id', 'id'],
      (fk) => fk.onDelete('cascade'),
    )
    .execute();
  // An endpoint's delivery log, newest first (the foreign key's index is the unique key's prefix).
  await db.schema
    .createIndex('webhook_deliveries_endpoint_idx')
    .on('webhook_deliveries')
    .columns(['account_id', 'endpoint_id', 'id'])
    .execute();
  // What the worker claims: due pending deliveries, and sending ones whose lease ran out.
  await sql`
    create index webhook_deliveries_due_idx
    on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(db);
  await sql`
    create index webhook_deliveries_lease_idx
    on webhook_deliveries (lease_expires_at) where status = 'sending'`.execute(db);
  // An erasure cancels the deliveries of the contact's events, found by their seq.
  await db.schema
    .createIndex('webhook_deliveries_event_idx')
    .on('webhook_deliveries')
    .columns(['account_id', 'event_seq'])
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute();
  await db.schema.dropTable('webhook_endpoints').execute();
}
