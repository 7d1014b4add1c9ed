import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // A delivery's claim and its outcome each write a new version of the row (status is in the
  // queue indexes' predicates, so neither update is HOT), and every full index takes a new entry
  // each time. There were four full indexes; one serves what three did:
  // - uniqueness per endpoint and event: `event_seq` names an event within its account as
  //   `event_id` does;
  // - the endpoint foreign key's cascade: (account_id, endpoint_id) is its prefix;
  // - an endpoint's delivery log, newest first: an endpoint's deliveries are made in its feed's
  //   order, so `event_seq` orders them as their time-ordered ids did;
  // - an erasure's cancel: it names the account's endpoints and the events' seqs.
  await sql`
    alter table webhook_deliveries
    add constraint webhook_deliveries_endpoint_event_seq_key
    unique (account_id, endpoint_id, event_seq)`.execute(db);
  await sql`
    alter table webhook_deliveries drop constraint webhook_deliveries_endpoint_event_key`.execute(
    db,
  );
  await sql`drop index webhook_deliveries_endpoint_idx`.execute(db);
  await sql`drop index webhook_deliveries_event_idx`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    create index webhook_deliveries_event_idx
    on webhook_deliveries (account_id, event_seq)`.execute(db);
  await sql`
    create index webhook_deliveries_endpoint_idx
    on webhook_deliveries (account_id, endpoint_id, id)`.execute(db);
  await sql`
    alter table webhook_deliveries
    add constraint webhook_deliveries_endpoint_event_key
    unique (account_id, endpoint_id, event_id)`.execute(db);
  await sql`
    alter table webhook_deliveries
    drop constraint webhook_deliveries_endpoint_event_seq_key`.execute(db);
}
