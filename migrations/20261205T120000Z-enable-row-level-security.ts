import { type Kysely, sql } from 'kysely';

// The tenant the connection acts for: set by the service's database handle on every checkout
// (src/db/tenant.ts), '' when no account is bound, which the policies read as "no account".
const TENANT = sql.raw(`nullif(current_setting('custodian.account_id', true), '')::uuid`);

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schemaName = rows[0]!.schema;
  const schema = sql.id(schemaName);

  // Row-level security on every table with an account_id, enabled and forced: a forgotten
  // `WHERE account_id = …` in a repository then sees the bound account's rows only, and none
  // when no account is bound. `tenant_isolation` applies to every role; `owner_access` lets
  // the owner (migrations, maintenance, and the owner-defined functions below) see everything,
  // which FORCE would otherwise deny it too.
  const tables = await sql<{ name: string }>`
    select c.table_name as name from information_schema.columns c
    join information_schema.tables t
      on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = ${schemaName} and c.column_name = 'account_id'
      and t.table_type = 'BASE TABLE' and c.table_name <> 'users'
    order by 1`.execute(db);
  for (const { name } of tables.rows) {
    const t = sql.id(name);
    await sql`alter table ${t} enable row level security`.execute(db);
    await sql`alter table ${t} force row level security`.execute(db);
    await sql`create policy tenant_isolation on ${t}
      using (account_id = ${TENANT}) with check (account_id = ${TENANT})`.execute(db);
    await sql`create policy owner_access on ${t} to current_user using (true) with check (true)`.execute(
      db,
    );
  }
  // An account sees its own row. Operators (users without an account) are visible only while
  // no account is bound: a request of an account never reads them.
  await sql`alter table accounts enable row level security`.execute(db);
  await sql`alter table accounts force row level security`.execute(db);
  await sql`create policy tenant_isolation on accounts
    using (id = ${TENANT}) with check (id = ${TENANT})`.execute(db);
  await sql`create policy owner_access on accounts to current_user using (true) with check (true)`.execute(
    db,
  );
  await sql`alter table users enable row level security`.execute(db);
  await sql`alter table users force row level security`.execute(db);
  await sql`create policy tenant_isolation on users
    using (account_id = ${TENANT} or (account_id is null and ${TENANT} is null))
    with check (account_id = ${TENANT} or (account_id is null and ${TENANT} is null))`.execute(db);
  await sql`create policy owner_access on users to current_user using (true) with check (true)`.execute(
    db,
  );

  // The lookups that come before an account is known, each a narrow owner-defined function
  // that answers one account id (or nothing) for one secret, never rows: a login's email, an
  // API key's prefix, a session, a refresh token's hash, the links' tokens. And the workers'
  // and operators' questions across accounts, answered as account ids to bind one by one.
  const definer = (name: string, args: string, returns: string, body: string) =>
    sql`create function ${sql.raw(name)}(${sql.raw(args)}) returns ${sql.raw(returns)}
      language sql stable security definer set search_path = ${schema}, pg_temp
      as ${sql.lit(body)}`.execute(db);
  await definer(
    'account_of_user',
    'p_user_id uuid',
    'uuid',
    'select account_id from users where id = p_user_id',
  );
  await definer(
    'account_of_user_email',
    'p_email text',
    'uuid',
    'select account_id from users where email = p_email',
  );
  await definer(
    'account_of_refresh_token',
    'p_token_hash text',
    'uuid',
    `select u.account_id from refresh_tokens r
       join sessions s on s.id = r.session_id join users u on u.id = s.user_id
     where r.token_hash = p_token_hash`,
  );
  await definer(
    'account_of_api_key',
    'p_prefix text',
    'uuid',
    'select account_id from api_keys where prefix = p_prefix limit 1',
  );
  await definer(
    'account_of_consent_token',
    'p_token_hash text',
    'uuid',
    'select account_id from consent_tokens where token_hash = p_token_hash limit 1',
  );
  await definer(
    'account_of_request_token',
    'p_token_hash text',
    'uuid',
    'select account_id from data_subject_request_tokens where token_hash = p_token_hash limit 1',
  );
  await definer(
    'account_of_password_setup',
    'p_token_hash text',
    'uuid',
    'select account_id from password_setups where token_hash = p_token_hash limit 1',
  );
  // The operators' directory of customer accounts (and the workers' list of accounts to
  // visit): the accounts' own rows, nothing held for them.
  await definer('account_directory', '', 'setof accounts', 'select * from accounts');

  // The checkpoint sweep's question: which accounts' audit chains run past their last
  // checkpoint (a skip scan over the chains' heads).
  await sql`create function accounts_with_uncheckpointed_entries() returns setof uuid
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
    with recursive chains(account_id) as (
      (select account_id from audit_events order by account_id limit 1)
      union all
      select (
        select e.account_id from audit_events e
        where e.account_id > chains.account_id order by e.account_id limit 1
      )
      from chains where chains.account_id is not null
    )
    select account_id from chains
    where account_id is not null
      and (select e.seq from audit_events e where e.account_id = chains.account_id
           order by e.seq desc limit 1)
        > coalesce((select c.seq from audit_checkpoints c where c.account_id = chains.account_id
           order by c.seq desc limit 1), 0)
    $$`.execute(db);

  // The webhook worker's two questions across accounts: which endpoints are behind their
  // account's feed (ids to fan out, each bound to its account after), and which deliveries are
  // due (claimed, leased, and handed back to attempt, each bound to its account).
  await sql`create function webhook_endpoints_behind_their_feed(p_limit integer)
    returns table (account_id uuid, id uuid)
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
    select e.account_id, e.id
    from webhook_endpoints e
    where e.status = 'active'
      and exists (
        select 1 from events v where v.account_id = e.account_id and v.seq > e.cursor_seq
      )
    order by e.cursor_seq, e.account_id, e.id
    limit p_limit
    $$`.execute(db);
  await sql`create function claim_due_webhook_deliveries(
      p_now timestamptz, p_lease_until timestamptz, p_limit integer, p_per_endpoint integer)
    returns setof webhook_deliveries
    language sql volatile security definer set search_path = ${schema}, pg_temp as $$
    with due as (
      select d.account_id, d.id, d.endpoint_id, d.next_attempt_at
      from webhook_deliveries d
      join webhook_endpoints e
        on e.account_id = d.account_id and e.id = d.endpoint_id and e.status = 'active'
      where (d.status = 'pending' and d.next_attempt_at <= p_now)
         or (d.status = 'sending' and d.lease_expires_at <= p_now)
      order by d.next_attempt_at, d.id
      limit p_limit
      for update of d skip locked
    ),
    ranked as (
      select due.account_id, due.id,
        row_number() over (
          partition by due.account_id, due.endpoint_id order by due.next_attempt_at, due.id
        ) as rank,
        (select count(*) from webhook_deliveries f
          where f.account_id = due.account_id and f.endpoint_id = due.endpoint_id
            and f.status = 'sending' and f.lease_expires_at > p_now) as in_flight
      from due
    )
    update webhook_deliveries w
    set status = 'sending', attempts = w.attempts + 1, lease_expires_at = p_lease_until,
      updated_at = p_now
    from ranked
    where w.account_id = ranked.account_id and w.id = ranked.id
      and ranked.rank + ranked.in_flight <= p_per_endpoint
    returning w.*
    $$`.execute(db);

  // erase_contact() runs as the owner, past the policies: it now also refuses an account other
  // than the one the connection is bound to.
  await sql`
    create or replace function erase_contact(p_account_id uuid, p_contact_id uuid) returns void
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    begin
      if p_account_id is null or p_contact_id is null then
        raise exception 'erase_contact needs an account and a contact' using errcode = '22004';
      end if;
      if p_account_id is distinct from ${TENANT} then
        raise exception 'erase_contact acts only for the bound account' using errcode = '42501';
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
  for (const fn of DEFINERS) {
    await sql`revoke execute on function ${sql.raw(fn)} from public`.execute(db);
  }
}

const DEFINERS = [
  'account_of_user(uuid)',
  'account_of_user_email(text)',
  'account_of_refresh_token(text)',
  'account_of_api_key(text)',
  'account_of_consent_token(text)',
  'account_of_request_token(text)',
  'account_of_password_setup(text)',
  'account_directory()',
  'accounts_with_uncheckpointed_entries()',
  'webhook_endpoints_behind_their_feed(integer)',
  'claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer)',
];

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const fn of DEFINERS) await sql`drop function if exists ${sql.raw(fn)}`.execute(db);
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  await sql`
    create or replace function erase_contact(p_account_id uuid, p_contact_id uuid) returns void
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
  const policies = await sql<{ table: string; policy: string }>`
    select tablename as table, policyname as policy from pg_policies
    where schemaname = current_schema() and policyname in ('tenant_isolation', 'owner_access')`.execute(
    db,
  );
  for (const { table, policy } of policies.rows) {
    await sql`drop policy ${sql.id(policy)} on ${sql.id(table)}`.execute(db);
  }
  const tables = new Set(policies.rows.map((r) => r.table));
  for (const table of tables) {
    await sql`alter table ${sql.id(table)} no force row level security`.execute(db);
    await sql`alter table ${sql.id(table)} disable row level security`.execute(db);
  }
}
