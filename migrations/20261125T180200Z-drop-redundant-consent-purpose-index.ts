import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // consent_events_state_idx (account_id, purpose_id, contact_id, ...) serves every lookup this
  // one did. Worse, without fresh statistics the planner picked it for "this contact's events
  // for this purpose" and read every event of the purpose per imported row.
  await db.schema.dropIndex('consent_events_purpose_idx').execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema
    .createIndex('consent_events_purpose_idx')
    .on('consent_events')
    .columns(['account_id', 'purpose_id'])
    .execute();
}
