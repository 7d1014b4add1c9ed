import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 7(1): the controller must be able to demonstrate consent, so the ledger is append-only
  // whoever connects: no UPDATE, no TRUNCATE. DELETE is refused too, except inside a
  // transaction that declared an erasure (Art. 17) with
  // `select set_config('custodian.erasure', 'on', true)`: erasing a contact cascades to its
  // events, and that must work. The setting is transaction-local, so it dies with the erasure.
  await sql`
    create function consent_events_append_only() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' and current_setting('custodian.erasure', true) = 'on' then
        return old;
      end if;
      raise exception 'consent_events is append-only (% refused)', tg_op using errcode = 'P0001';
    end
    $$`.execute(db);
  await sql`
    create trigger consent_events_no_update_delete
    before update or delete on consent_events
    for each row execute function consent_events_append_only()`.execute(db);
  await sql`
    create trigger consent_events_no_truncate
    before truncate on consent_events
    for each statement execute function consent_events_append_only()`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists consent_events_no_truncate on consent_events`.execute(db);
  await sql`drop trigger if exists consent_events_no_update_delete on consent_events`.execute(db);
  await sql`drop function if exists consent_events_append_only()`.execute(db);
}
