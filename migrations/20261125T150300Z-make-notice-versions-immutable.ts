import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 7(1): a consent is proof only together with the exact text the person was shown. A
  // notice version's text, hash and language never change; the only update allowed is
  // recording its first use (null -> a time, once). A version a consent event refers to
  // (first_used_at set) cannot be deleted either, except by an erasure-scoped transaction
  // (`custodian.erasure` = 'on', see the consent-ledger trigger), e.g. when an account closes.
  await sql`
    create function notice_versions_immutable() returns trigger language plpgsql as $$
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
  await sql`
    create trigger notice_versions_immutable
    before update or delete on notice_versions
    for each row execute function notice_versions_immutable()`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists notice_versions_immutable on notice_versions`.execute(db);
  await sql`drop function if exists notice_versions_immutable()`.execute(db);
}
