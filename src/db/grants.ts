import { type Kysely, sql } from 'kysely';

type Privilege = 'select' | 'insert' | 'update' | 'delete';

/**
 * What the service role may do to each table: the least the code needs. No table grants
 * TRUNCATE, REFERENCES or TRIGGER, and the role owns nothing, so it can neither disable a
 * trigger nor change a table. Append-only tables (the consent ledger, the audit chain and its
 * checkpoints, the event feed, the record of erasures) get no UPDATE or DELETE; contacts get no
 * DELETE: an erasure goes through `erase_contact()`, which runs as the owner and checks its
 * arguments. A table missing here gets nothing (a test makes every table appear here).
 */
export const SERVICE_GRANTS: Readonly<Record<string, readonly Privilege[]>> = {
  accounts: ['select', 'insert', 'update'],
  users: ['select', 'insert', 'update', 'delete'],
  sessions: ['select', 'insert', 'update'],
  refresh_tokens: ['select', 'insert', 'update'],
  login_throttles: ['select', 'insert', 'update', 'delete'],
  api_keys: ['select', 'insert', 'update'],
  audit_events: ['select', 'insert'],
  audit_checkpoints: ['select', 'insert'],
  contacts: ['select', 'insert', 'update'],
  contact_address_history: ['select', 'insert', 'delete'],
  // Deleted only with their contact, by erase_contact() (as the owner).
  imported_contacts: ['select', 'insert'],
  suppressions: ['select', 'insert', 'update'],
  erasures: ['select', 'insert'],
  purposes: ['select', 'insert', 'update'],
  notice_versions: ['select', 'insert', 'update'],
  consent_events: ['select', 'insert'],
  consent_tokens: ['select', 'insert', 'update', 'delete'],
  password_setups: ['select', 'insert', 'update', 'delete'],
  events: ['select', 'insert'],
  event_counters: ['select', 'insert', 'update'],
  idempotency_keys: ['select', 'insert', 'update', 'delete'],
  contact_imports: ['select', 'insert', 'update'],
  contact_import_errors: ['select', 'insert'],
  data_subject_requests: ['select', 'insert', 'update'],
  data_subject_request_tokens: ['select', 'insert', 'update', 'delete'],
  webhook_endpoints: ['select', 'insert', 'update', 'delete'],
  // Deleted only with their endpoint, by the foreign key's cascade (which runs as the owner).
  webhook_deliveries: ['select', 'insert', 'update'],
  breach_incidents: ['select', 'insert', 'update'],
  // Append-only (Art. 33(4) phases, kept as sent): a trigger refuses UPDATE and DELETE too.
  breach_authority_notifications: ['select', 'insert'],
  // Once-only reminders: written once, never changed (a request's go with it, by cascade).
  breach_incident_reminders: ['select', 'insert'],
  data_subject_request_reminders: ['select', 'insert'],
  // Art. 34 notices: a batch's text is kept as stored; a notice changes only by its delivery
  // report, and goes only with its person (erase_contact(), as the owner).
  breach_subject_notice_batches: ['select', 'insert'],
  breach_subject_notices: ['select', 'insert', 'update'],
  // Provider-level (no account's), the operators' alone: its fan-out cursor moves.
  processor_breach_incidents: ['select', 'insert', 'update'],
  // The migrator's bookkeeping: the service only reads it (is the schema up to date?).
  kysely_migration: ['select'],
  kysely_migration_lock: [],
};

/** Owner-defined functions the service may call (each checks its own arguments). */
export const SERVICE_FUNCTIONS = [
  'erase_contact(uuid, uuid)',
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
  'claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer, uuid)',
  'breach_incidents_due_for_reminder(timestamptz, integer)',
  'data_subject_requests_due_for_reminder(timestamptz, integer)',
  'processor_breach_accounts(uuid)',
] as const;

/** Tables the embedded engine's ANALYZE and the erasure VACUUM may maintain (Postgres 17+). */
const MAINTAINED = [
  'contacts',
  'contact_address_history',
  'consent_events',
  'consent_tokens',
  'events',
  'idempotency_keys',
  'contact_imports',
] as const;

const UNIQUE_VIOLATION = '23505';
const DUPLICATE_OBJECT = '42710';
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Creates the service role when it is missing (NOLOGIN: with two URLs an administrator creates
 * it with LOGIN and a password first, see the README) and sets its grants on `schema` to
 * exactly {@link SERVICE_GRANTS}. Idempotent: `npm run migrate` runs it after every migration
 * run, so a new table gets its grants with the migration that made it. Runs as the owner.
 */
export async function grantServiceRole(
  // biome-ignore lint/suspicious/noExplicitAny: runs next to the migrations, on any schema
  db: Kysely<any>,
  schema: string,
  role: string,
): Promise<void> {
  const name = sql.id(role);
  const exists = await sql<{ one: number }>`select 1 as one from pg_roles where rolname = ${role}`
    .execute(db)
    .then((r) => r.rows.length > 0);
  if (!exists) {
    await sql`create role ${name} nologin`.execute(db).catch((err: { code?: string }) => {
      // Another process (a parallel test file, a second replica) created it just now.
      if (err.code !== DUPLICATE_OBJECT && err.code !== UNIQUE_VIOLATION) throw err;
    });
  }
  // With one URL the owner logs in and switches to the service role (SET ROLE), which needs
  // membership; a superuser has it implicitly, and with two URLs it is not needed at all.
  await sql`
    do $$ begin
      if not pg_has_role(current_user, ${sql.lit(role)}, 'MEMBER') then
        execute format('grant %I to %I', ${sql.lit(role)}, current_user);
      end if;
    end $$`
    .execute(db)
    .catch((err: { code?: string }) => {
      if (err.code !== INSUFFICIENT_PRIVILEGE) throw err;
    });

  await db.transaction().execute(async (trx) => {
    // Two processes migrating at once would grant on the same rows of the catalogue.
    await sql`select pg_advisory_xact_lock(hashtext('custodian.grants'))`.execute(trx);
    const s = sql.id(schema);
    await sql`grant usage on schema ${s} to ${name}`.execute(trx);
    const tables = await sql<{ name: string }>`
      select tablename as name from pg_tables where schemaname = ${schema}`.execute(trx);
    for (const { name: table } of tables.rows) {
      const t = sql.id(schema, table);
      await sql`revoke all on table ${t} from ${name}`.execute(trx);
      const privileges = SERVICE_GRANTS[table] ?? [];
      if (privileges.length > 0) {
        await sql`grant ${sql.raw(privileges.join(', '))} on table ${t} to ${name}`.execute(trx);
      }
    }
    await sql`grant usage, select on all sequences in schema ${s} to ${name}`.execute(trx);
    for (const fn of SERVICE_FUNCTIONS) {
      const target = `${quoteIdent(schema)}.${fn}`;
      const found = await sql<{ ok: boolean }>`select to_regprocedure(${target}) is not null as ok`
        .execute(trx)
        .then((r) => r.rows[0]?.ok === true);
      if (found) await sql`grant execute on function ${sql.raw(target)} to ${name}`.execute(trx);
    }
  });
  // Postgres 17 lets a role that owns nothing VACUUM and ANALYZE (the MAINTAIN privilege);
  // earlier servers leave the erasure vacuum to autovacuum.
  const maintain = await sql<{ ok: boolean }>`
    select current_setting('server_version_num')::int >= 170000 as ok`.execute(db);
  if (maintain.rows[0]?.ok) {
    for (const table of MAINTAINED) {
      const present = await sql<{ one: number }>`
        select 1 as one from pg_tables where schemaname = ${schema} and tablename = ${table}`
        .execute(db)
        .then((r) => r.rows.length > 0);
      if (present)
        await sql`grant maintain on table ${sql.id(schema, table)} to ${name}`.execute(db);
    }
  }
}

/**
 * With two URLs: creates the service's login role when it does not exist, with the password
 * of its URL (none: an administrator sets one, or the server trusts the network). An existing
 * role is left as it is. Returns whether it created one.
 */
export async function ensureLoginRole(
  // biome-ignore lint/suspicious/noExplicitAny: runs next to the migrations, on any schema
  db: Kysely<any>,
  role: string,
  password: string,
): Promise<boolean> {
  const exists = await sql<{ one: number }>`select 1 as one from pg_roles where rolname = ${role}`
    .execute(db)
    .then((r) => r.rows.length > 0);
  if (exists) return false;
  const secret = password ? sql` password ${sql.lit(password)}` : sql``;
  await sql`create role ${sql.id(role)} login${secret}`.execute(db);
  return true;
}

function quoteIdent(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}
