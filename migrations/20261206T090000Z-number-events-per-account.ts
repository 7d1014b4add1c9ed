import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // `events.seq` was one identity across all accounts, so a tenant reading its feed saw how
  // many events every other tenant had. It becomes a position within the account: 1, 2, 3, …
  // taken from a counter per account. A counter, not `max(seq) + 1`: an erasure deletes the
  // newest events of a contact, and a number handed out again would sit below a cursor that
  // already went past it (a reader, or a webhook endpoint's fan-out, would never see it).
  await db.schema
    .createTable('event_counters')
    .addColumn('account_id', 'uuid', (c) =>
      c.notNull().primaryKey().references('accounts.id').onDelete('cascade'),
    )
    .addColumn('last_seq', 'bigint', (c) => c.notNull())
    .execute();
  // A tenant table like every other (see the row-level security migration).
  await sql`alter table event_counters enable row level security`.execute(db);
  await sql`alter table event_counters force row level security`.execute(db);
  await sql`create policy tenant_isolation on event_counters
    using (account_id = (select nullif(current_setting('custodian.account_id', true), '')::uuid))
    with check (account_id = (select nullif(current_setting('custodian.account_id', true), '')::uuid))`.execute(
    db,
  );
  await sql`create policy owner_access on event_counters to current_user using (true) with check (true)`.execute(
    db,
  );

  // An endpoint's cursor becomes the new number of the last event it had fanned out: the
  // count of its account's events up to it.
  await sql`update webhook_endpoints w
    set cursor_seq = (select count(*) from events e
      where e.account_id = w.account_id and e.seq <= w.cursor_seq)`.execute(db);

  // The events, renumbered within their account in their old order. The key is dropped
  // meanwhile: an update moving one row onto another's number would collide with it.
  await sql`alter table events drop constraint events_pkey`.execute(db);
  await sql`alter table events alter column seq drop identity`.execute(db);
  await sql`update events e set seq = r.new_seq
    from (
      select account_id, seq, row_number() over (partition by account_id order by seq) as new_seq
      from events
    ) r
    where r.account_id = e.account_id and r.seq = e.seq`.execute(db);
  await sql`alter table events add constraint events_pkey primary key (account_id, seq)`.execute(
    db,
  );
  await sql`insert into event_counters (account_id, last_seq)
    select account_id, max(seq) from events group by account_id`.execute(db);

  // A delivery names its event by id too, so its number follows. One whose event is gone
  // (erased) gets 0, which no event has: it can never be taken for the event that now bears
  // its old number.
  await sql`update webhook_deliveries d
    set event_seq = coalesce(
      (select e.seq from events e where e.account_id = d.account_id and e.id = d.event_id), 0)`.execute(
    db,
  );
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  // Back to one identity across accounts, starting above every number in use: each account's
  // events keep their numbers, and the next ones are larger than any handed out, so every cursor stays valid.
  const { rows } = await sql<{ next: string | number }>`
    select greatest(
      (select coalesce(max(seq), 0) from events),
      (select coalesce(max(last_seq), 0) from event_counters)) + 1 as next`.execute(db);
  const next = sql.raw(String(Number(rows[0]!.next)));
  await sql`alter table events alter column seq add generated always as identity (start with ${next})`.execute(
    db,
  );
  await db.schema.dropTable('event_counters').execute();
}
