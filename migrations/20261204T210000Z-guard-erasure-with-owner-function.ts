import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The ledger's DELETE guard used to be a transaction setting (`custodian.erasure`), and any
  // session may set any setting. Now only the tables' owner deletes from the ledger: the
  // service role has no DELETE on it (see src/db/grants.ts), and its one way to erase is
  // `erase_contact()` below, which runs as the owner and checks what it is asked to do. A
  // superuser and cascades from the owner's own deletes (an account's removal) also act as
  // the owner.
  await sql`
    create or replace function consent_events_append_only() returns trigger
    language plpgsql as $$
    begin
      if tg_op = 'DELETE'
        and pg_has_role(current_user, (select relowner from pg_class where oid = tg_relid), 'USAGE')
      then
        return old;
      end if;
      raise exception 'consent_events is append-only (% refused)', tg_op using errcode = 'P0001';
    end
    $$`.execute(db);
  await sql`
    create or replace function notice_versions_immutable() returns trigger
    language plpgsql as $$
    begin
      if tg_op = 'UPDATE' then
        if new.account_id = old.account_id and new.purpose_id = old.purpose_id
          and new.version = old.version and new.text = old.text
          and new.text_sha256 = old.text_sha256
          and new.language is not distinct from old.language
          and new.created_at = old.created_at
          and (old.first_used_at is null or new.first_used_at = old.first_used_at) then
          return new;
        end if;
        raise exception 'notice version % is immutable (UPDATE refused)', old.version
          using errcode = 'P0001';
      end if;
      if old.first_used_at is null
        or pg_has_role(current_user, (select relowner from pg_class where oid = tg_relid), 'USAGE')
      then
        return old;
      end if;
      raise exception 'notice version % is in use by consent events (DELETE refused)', old.version
        using errcode = 'P0001';
    end
    $$`.execute(db);

  // Art. 17: the one way the service deletes a person's ledger, their events and their contact
  // row, all three at once (so a ledger never goes while its contact stays), and only for a
  // contact whose erasure is recorded (the `erasures` row the same transaction inserted).
  // `security definer`: it runs as its owner, who may delete; `search_path` is pinned to the
  // schema it was created in, so a caller cannot point it at tables of their own.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  await sql`
    create function erase_contact(p_account_id uuid, p_contact_id uuid) returns void
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    begin
      if p_account_id is null or p_contact_id is null then
        raise exception 'erase_contact needs an account and a contact' using errcode = '22004';
      end if;
      if not exists (
        select 1 from erasures where account_id = p_account_id and contact_id = p_contact_id
      ) then
        raise exception 'no erasure is recorded for contact % of account %',
          p_contact_id, p_account_id using errcode = 'P0001';
      end if;
      delete from consent_events where account_id = p_account_id and contact_id = p_contact_id;
      delete from events where account_id = p_account_id and contact_id = p_contact_id;
      delete from contacts where account_id = p_account_id and id = p_contact_id;
    end
    $$`.execute(db);
  // Functions are executable by everyone unless revoked; the grants give it to the service.
  await sql`revoke execute on function erase_contact(uuid, uuid) from public`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists erase_contact(uuid, uuid)`.execute(db);
  await sql`
    create or replace function consent_events_append_only() returns trigger
    language plpgsql as $$
    begin
      if tg_op = 'DELETE' and current_setting('custodian.erasure', true) = 'on' then
        return old;
      end if;
      raise exception 'consent_events is append-only (% refused)', tg_op using errcode = 'P0001';
    end
    $$`.execute(db);
  await sql`
    create or replace function notice_versions_immutable() returns trigger
    language plpgsql as $$
    begin
      if tg_op = 'UPDATE' then
        if new.account_id = old.account_id and new.purpose_id = old.purpose_id
          and new.version = old.version and new.text = old.text
          and new.text_sha256 = old.text_sha256
          and new.language is not distinct from old.language
          and new.created_at = old.created_at
          and (old.first_used_at is null or new.first_used_at = old.first_used_at) then
          return new;
        end if;
        raise exception 'notice version % is immutable (UPDATE refused)', old.version
          using errcode = 'P0001';
      end if;
      if old.first_used_at is null or current_setting('custodian.erasure', true) = 'on' then
        return old;
      end if;
      raise exception 'notice version % is in use by consent events (DELETE refused)', old.version
        using errcode = 'P0001';
    end
    $$`.execute(db);
}
