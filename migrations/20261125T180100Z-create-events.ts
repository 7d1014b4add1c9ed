import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The outbox: what happened that the customer's systems act on (a double opt-in to send, a
  // confirmation, a withdrawal), written in the transaction of the change itself and read as a
  // feed in `seq` order. Payloads name contacts by id, never by address; they are deleted with
  // the contact on erasure.
  await db.schema
    .createTable('events')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('seq', 'bigint', (c) => c.notNull().generatedAlwaysAsIdentity())
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('contact_id', 'uuid')
    .addColumn('data', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('events_pkey', ['account_id', 'seq'])
    .execute();
  await db.schema
    .createIndex('events_contact_idx')
    .on('events')
    .columns(['account_id', 'contact_id'])
    .where(sql.ref('contact_id'), 'is not', null)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('events').execute();
}
