import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Failed-login counters, keyed by keyed hashes (HMAC) of the address alone and of the address
  // with the client's network: never the address itself, and the same rows whether or not an
  // account has that address, so counting failures reveals nothing about who is a user.
  await db.schema
    .createTable('login_throttles')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('failures', 'integer', (c) => c.notNull())
    // End of the counting window (per-client rows); null for the per-address row, whose
    // failures are consecutive until a successful login.
    .addColumn('resets_at', sql`timestamptz(3)`)
    .addColumn('last_failure_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('locked_until', sql`timestamptz(3)`)
    .execute();
  // Finds stale rows to forget.
  await db.schema
    .createIndex('login_throttles_last_failure_at_idx')
    .on('login_throttles')
    .column('last_failure_at')
    .execute();
  // The counters moved out of users: there they existed only for known addresses.
  await db.schema.alterTable('users').dropColumn('failed_login_count').execute();
  await db.schema.alterTable('users').dropColumn('locked_until').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('failed_login_count', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('users').addColumn('locked_until', sql`timestamptz(3)`).execute();
  await db.schema.dropTable('login_throttles').execute();
}
