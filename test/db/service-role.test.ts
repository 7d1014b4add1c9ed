import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import t, { type Test } from 'tap';
import { createPostgresDatabase } from '../../src/db/database.js';
import { SERVICE_GRANTS } from '../../src/db/grants.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { withTenant } from '../../src/db/tenant.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build, ENGINE } from '../helper.js';

/**
 * Issue 11, parts 1 and 3: the service acts as a role that owns nothing and holds only the
 * grants it needs, so the guards below cannot be switched off by what the service sends.
 */

const PRIVILEGES = ['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger'];

async function world(t: Test) {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const created = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers,
    payload: { email: `guarded-${randomBytes(4).toString('hex')}@example.com` },
  });
  t.equal(created.statusCode, 201, 'a contact');
  return { app, owner, headers, contactId: created.json().id as string };
}

t.test('the service acts as its own role: no superuser, owns nothing', async (t) => {
  const { app } = await world(t);
  const { db, owner, schema, serviceRole } = app.database;
  const me = await sql<{ current_user: string }>`select current_user`.execute(db);
  t.equal(me.rows[0]?.current_user, serviceRole, 'statements run as the service role');
  const role = await sql<{ rolsuper: boolean; rolbypassrls: boolean; rolcreaterole: boolean }>`
    select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = ${serviceRole}`.execute(
    owner,
  );
  t.same(
    role.rows[0],
    { rolsuper: false, rolbypassrls: false, rolcreaterole: false },
    'not a superuser, no RLS bypass, cannot create roles',
  );
  const owned = await sql<{ relname: string }>`
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and pg_get_userbyid(c.relowner) = ${serviceRole}`.execute(owner);
  t.same(owned.rows, [], 'owns no table, index or sequence');
  await t.rejects(
    sql`create table sneaky (id int)`.execute(db),
    /permission denied/,
    'cannot create tables in the schema',
  );
});

t.test('every table has a grant decision, and the grants are exactly those', async (t) => {
  const { app } = await world(t);
  const { owner, schema, serviceRole } = app.database;
  const tables = await sql<{ name: string }>`
    select tablename as name from pg_tables where schemaname = ${schema} order by 1`.execute(owner);
  const names = tables.rows.map((r) => r.name);
  t.same(
    names.filter((name) => !(name in SERVICE_GRANTS)),
    [],
    'no table without an entry in SERVICE_GRANTS (src/db/grants.ts)',
  );
  for (const name of names) {
    const held: string[] = [];
    for (const privilege of PRIVILEGES) {
      const { rows } = await sql<{ ok: boolean }>`
        select has_table_privilege(${serviceRole}, ${`${schema}.${name}`}, ${privilege}) as ok`.execute(
        owner,
      );
      if (rows[0]?.ok) held.push(privilege);
    }
    t.same(held, SERVICE_GRANTS[name], `${name}: ${held.join(', ') || 'nothing'}`);
  }
});

t.test('the service role cannot switch the guards off', async (t) => {
  const { app, owner: account, contactId } = await world(t);
  const { db } = app.database;
  for (const table of ['consent_events', 'audit_events', 'events', 'contacts']) {
    await t.rejects(
      sql`truncate ${sql.table(table)}`.execute(db),
      /permission denied/,
      `TRUNCATE ${table} refused`,
    );
  }
  await t.rejects(
    sql`alter table consent_events disable trigger consent_events_no_update_delete`.execute(db),
    /must be (the )?owner/,
    'cannot disable the ledger trigger',
  );
  await t.rejects(
    sql`alter table audit_events disable trigger all`.execute(db),
    /must be (the )?owner/,
    'cannot disable the audit triggers',
  );
  await t.rejects(
    sql`set session_replication_role = replica`.execute(db),
    /permission denied/,
    'cannot turn triggers off for its session',
  );
  await t.rejects(
    sql`drop trigger consent_events_no_update_delete on consent_events`.execute(db),
    /must be (the )?owner/,
    'cannot drop a trigger',
  );
  await t.rejects(
    db
      .updateTable('audit_events')
      .set({ action: 'contact.created' })
      .where('account_id', '=', account.accountId)
      .execute(),
    /permission denied/,
    'cannot update an audit entry',
  );
  await t.rejects(
    db.deleteFrom('audit_events').where('account_id', '=', account.accountId).execute(),
    /permission denied/,
    'cannot delete an audit entry',
  );
  await t.rejects(
    db.deleteFrom('events').where('account_id', '=', account.accountId).execute(),
    /permission denied/,
    'cannot delete from the event feed',
  );
  await t.rejects(
    db.transaction().execute(async (trx) => {
      await sql`select set_config('custodian.erasure', 'on', true)`.execute(trx);
      await trx.deleteFrom('consent_events').where('account_id', '=', account.accountId).execute();
    }),
    /permission denied/,
    'the old erasure setting opens nothing',
  );
  await t.rejects(
    withTenant(account.accountId, () =>
      sql`select erase_contact(${account.accountId}::uuid, ${contactId}::uuid)`.execute(db),
    ),
    /no erasure is recorded/,
    'erase_contact refuses a contact whose erasure is not recorded',
  );
  await t.rejects(
    sql`select erase_contact(null, ${contactId}::uuid)`.execute(db),
    /needs an account and a contact/,
    'and missing arguments',
  );
  await t.rejects(
    sql`create or replace function erase_contact(uuid, uuid) returns void language sql as 'select'`.execute(
      db,
    ),
    /must be (the )?owner|permission denied/,
    'cannot replace the erasure function',
  );
  const contact = await app.database.owner
    .selectFrom('contacts')
    .select('id')
    .where('id', '=', contactId)
    .executeTakeFirst();
  t.ok(contact, 'the contact is still there after all that');
});

t.test('an erasure still goes through, as the function', async (t) => {
  const { app, headers, contactId } = await world(t);
  const erased = await app.inject({ method: 'DELETE', url: `/v1/contacts/${contactId}`, headers });
  t.equal(erased.statusCode, 204);
  const left = await app.database.owner
    .selectFrom('contacts')
    .select('id')
    .where('id', '=', contactId)
    .execute();
  t.same(left, [], 'the contact is gone');
});

t.test(
  'with two URLs the service logs in as its own role',
  {
    skip:
      ENGINE !== 'postgres' &&
      'Postgres only: the embedded engine has one session (it switches roles with SET ROLE)',
  },
  async (t) => {
    const url = process.env.DATABASE_URL as string;
    const suffix = randomBytes(4).toString('hex');
    const role = `svc_${suffix}`;
    const schema = `t_roles_${suffix}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`create role ${role} login`);
    await admin.query(`create schema ${schema}`);
    t.teardown(async () => {
      await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.query(`drop owned by ${role}`);
      await admin.query(`drop role if exists ${role}`);
      await admin.end();
    });
    const serviceUrl = new URL(url);
    serviceUrl.username = role;
    serviceUrl.password = '';
    const database = createPostgresDatabase({
      url: serviceUrl.toString(),
      migrationUrl: url,
      serviceRole: role,
      schema,
      poolMax: 2,
      connectionTimeoutMs: 5_000,
      statementTimeoutMs: 30_000,
      idleTimeoutMs: 10_000,
    });
    t.teardown(() => database.close());
    await migrateToLatest(database.owner, schema, undefined, role);
    const who = await sql<{ current_user: string; session_user: string }>`
    select current_user, session_user`.execute(database.db);
    t.same(who.rows[0], { current_user: role, session_user: role }, 'logged in as the role');
    const owners = await sql<{ owner: string }>`
    select distinct tableowner as owner from pg_tables where schemaname = ${schema}`.execute(
      database.owner,
    );
    t.notSame(
      owners.rows.map((r) => r.owner),
      [role],
      'the tables belong to the owner, not to the service',
    );
    await t.rejects(
      sql`reset role`
        .execute(database.db)
        .then(() => sql`truncate consent_events`.execute(database.db)),
      /permission denied/,
      'there is no other role to go back to',
    );
  },
);
