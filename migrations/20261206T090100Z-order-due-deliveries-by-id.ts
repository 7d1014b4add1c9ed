import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The worker claims due deliveries in (next_attempt_at, id) order. A fan-out makes a whole
  // batch due at the same instant, and with `next_attempt_at` alone in the index every claim
  // sorted all of them by id to take the first few: with both, it reads just those.
  await sql`drop index webhook_deliveries_due_idx`.execute(db);
  await sql`
    create index webhook_deliveries_due_idx
    on webhook_deliveries (next_attempt_at, id) where status = 'pending'`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index webhook_deliveries_due_idx`.execute(db);
  await sql`
    create index webhook_deliveries_due_idx
    on webhook_deliveries (next_attempt_at) where status = 'pending'`.execute(db);
}
