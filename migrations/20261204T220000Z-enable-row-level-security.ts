import { type Kysely, sql } from 'kysely';

/**
 * Row-level security on every tenant table: whoever connects sees and writes only the rows of
 * the account bound to the transaction (`custodian.account_id`, set by the service per unit of
 * work, see src/db/tenant.ts); with none bound, nothing. FORCE makes it hold for the tables'
 * owner too, who gets a policy of its own instead: migrations, cascades and the narrow
 * SECURITY DEFINER functions act as the owner across accounts. A superuser bypasses RLS, as
 * always in Postgres. A new tenant table must do the same in its own migration (a test reads
 * pg_class and pg_policies for every table with an `account_id`).
 */
const TENANT = sql`nullif(current_setting('custodian.account_id', true), '')::uuid`;

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ table: string }>`
    select c.table_name as table from information_schema.columns c
    join information_schema.tables t
      on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = current_schema() and c.column_name = 'account_id'
      and t.table_type = 'BASE TABLE'
    order by 1`.execute(db);
  for (const { table } of rows) {
    await protect(db, table, sql.ref('account_id'));
  }
  // The account itself: its key is `id`.
  await protect(db, 'accounts', sql.ref('id'));
  // Users without an account (operators) are no tenant's data: work with no account bound
  // sees them, and only them.
  await sql`drop policy tenant_isolation on users`.execute(db);
  await sql`
    create policy tenant_isolation on users for all to public
    using (account_id = ${TENANT} or (account_id is null and ${TENANT} is null))
    with check (account_id = ${TENANT} or (account_id is null and ${TENANT} is null))`.execute(db);

  const { rows: here } = await sql<{ schema: string }>`select current_schema() as schema`.execute(
    db,
  );
  const schema = sql.id(here[0]!.schema);
  // The questions that cross accounts, each answered by the owner (SECURITY DEFINER) with the
  // least it can: which account a credential or a link belongs to. The service then binds that
  // account and reads the rest under row-level security.
  const lookups: [name: string, argument: string, query: string][] = [
    ['account_of_user', 'uuid', 'select account_id from users where id = $1'],
    ['account_of_user_email', 'text', 'select account_id from users where email = $1'],
    ['account_of_api_key', 'text', 'select account_id from api_keys where prefix = $1'],
    [
      'account_of_refresh_token',
      'text',
      `select u.account_id from refresh_tokens r join sessions s on s.id = r.session_id
       join users u on u.id = s.user_id where r.token_hash = $1`,
    ],
    [
      'account_of_consent_token',
      'text',
      'select account_id from consent_tokens where token_hash = $1',
    ],
    [
      'account_of_request_token',
      'text',
      'select account_id from data_subject_request_tokens where token_hash = $1',
    ],
    [
      'account_of_password_setup',
      'text',
      'select account_id from password_setups where token_hash = $1',
    ],
  ];
  for (const [name, argument, query] of lookups) {
    await sql`
      create function ${sql.raw(name)}(${sql.raw(argument)}) returns uuid
      language sql stable security definer set search_path = ${schema}, pg_temp
      as ${sql.lit(query)}`.execute(db);
    await sql`revoke execute on function ${sql.raw(name)}(${sql.raw(argument)}) from public`.execute(
      db,
    );
  }
  // The sweeps' one cross-account question each: which accounts have work.
  await sql`
    create function accounts_with_uncheckpointed_entries() returns setof uuid
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
  await sql`revoke execute on function accounts_with_uncheckpointed_entries() from public`.execute(
    db,
  );
  await sql`
    create function accounts_with_expired_exports(p_now timestamptz) returns setof uuid
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
      select distinct account_id from data_subject_requests
      where export_ciphertext is not null and export_expires_at <= p_now
    $$`.execute(db);
  await sql`revoke execute on function accounts_with_expired_exports(timestamptz) from public`.execute(
    db,
  );
  // The operators' list of accounts (GET /v1/ops/accounts): names and settings, no tenant data.
  await sql`
    create function all_accounts() returns setof accounts
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
      select * from accounts
    $$`.execute(db);
  await sql`revoke execute on function all_accounts() from public`.execute(db);
}

/** The functions above, for down(). */
const DEFINER_FUNCTIONS = [
  'account_of_user(uuid)',
  'account_of_user_email(text)',
  'account_of_api_key(text)',
  'account_of_refresh_token(text)',
  'account_of_consent_token(text)',
  'account_of_request_token(text)',
  'account_of_password_setup(text)',
  'accounts_with_uncheckpointed_entries()',
  'accounts_with_expired_exports(timestamp with time zone)',
  'all_accounts()',
];

// biome-ignore lint/suspicious/noExplicitAny: see up()
async function protect(db: Kysely<any>, table: string, key: ReturnType<typeof sql.ref>) {
  const t = sql.table(table);
  await sql`alter table ${t} enable row level security`.execute(db);
  await sql`alter table ${t} force row level security`.execute(db);
  await sql`
    create policy tenant_isolation on ${t} for all to public
    using (${key} = ${TENANT}) with check (${key} = ${TENANT})`.execute(db);
  await sql`
    create policy owner_access on ${t} for all to current_user
    using (true) with check (true)`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const signature of DEFINER_FUNCTIONS) {
    await sql`drop function if exists ${sql.raw(signature)}`.execute(db);
  }
  const { rows } = await sql<{ table: string }>`
    select distinct tablename as table from pg_policies
    where schemaname = current_schema() and policyname in ('tenant_isolation', 'owner_access')`.execute(
    db,
  );
  for (const { table } of rows) {
    const t = sql.table(table);
    await sql`drop policy if exists tenant_isolation on ${t}`.execute(db);
    await sql`drop policy if exists owner_access on ${t}`.execute(db);
    await sql`alter table ${t} no force row level security`.execute(db);
    await sql`alter table ${t} disable row level security`.execute(db);
  }
}
