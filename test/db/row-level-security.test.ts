import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import t, { type Test } from 'tap';
import { createPostgresDatabase } from '../../src/db/database.js';
import {
  accountOf,
  bindTransaction,
  boundTenant,
  connectionTenant,
  withoutTenant,
  withTenant,
} from '../../src/db/tenant.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build, ENGINE } from '../helper.js';

/**
 * Issue 11, part 2: row-level security is the backstop below every `WHERE account_id = …`.
 * The queries here leave the tenant clause out on purpose, as a forgotten one would.
 */

async function world(t: Test) {
  const app = await build(t);
  const accounts = [];
  for (const label of ['a', 'b']) {
    const owner = await signup(app);
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/contacts',
        headers: bearer(owner.accessToken),
        payload: { email: `rls-${label}-${i}-${owner.accountId.slice(-6)}@example.com` },
      });
      t.equal(res.statusCode, 201, `contact ${label}${i}`);
    }
    accounts.push(owner);
  }
  return { app, a: accounts[0]!, b: accounts[1]! };
}

/** A repository query with its tenant clause forgotten. */
const everyContact = (db: import('kysely').Kysely<import('../../src/db/schema.js').DB>) =>
  db.selectFrom('contacts').select(['account_id', 'email']).execute();

t.test('a query without its tenant clause sees the bound account only', async (t) => {
  const { app, a, b } = await world(t);
  const { db } = app.database;
  const asA = await withTenant(a.accountId, () => everyContact(db));
  t.equal(asA.length, 3, "A's three contacts");
  t.ok(
    asA.every((row) => row.account_id === a.accountId),
    'and nothing of B',
  );
  const asB = await withTenant(b.accountId, () => everyContact(db));
  t.same([...new Set(asB.map((row) => row.account_id))], [b.accountId], 'B sees only B');
  t.same(await withoutTenant(() => everyContact(db)), [], 'no account bound: no rows');
  t.same(await everyContact(db), [], 'outside any binding: no rows either');
  const owner = await app.database.owner
    .selectFrom('contacts')
    .select('account_id')
    .where('account_id', 'in', [a.accountId, b.accountId])
    .execute();
  t.equal(owner.length, 6, 'the owner (migrations, maintenance) sees all six');

  // Every tenant table, the same way: a count without the clause equals the count with it.
  const tables = await sql<{ name: string }>`
    select table_name as name from information_schema.columns
    where table_schema = ${app.database.schema} and column_name = 'account_id'
    order by 1`.execute(app.database.owner);
  for (const { name } of tables.rows) {
    const bare = await withTenant(a.accountId, () =>
      sql<{ n: string }>`select count(*) as n from ${sql.table(name)}`.execute(db),
    );
    const clause = await sql<{ n: string }>`
      select count(*) as n from ${sql.table(name)} where account_id = ${a.accountId}`.execute(
      app.database.owner,
    );
    t.equal(Number(bare.rows[0]?.n), Number(clause.rows[0]?.n), `${name}: bound = A's rows`);
  }
  const accounts = await withTenant(a.accountId, () =>
    db.selectFrom('accounts').select('id').execute(),
  );
  t.same(accounts, [{ id: a.accountId }], 'accounts: its own row only');
  t.same(
    await withoutTenant(() =>
      db.selectFrom('users').select('id').where('account_id', 'is not', null).execute(),
    ),
    [],
    "users: no account's users while unbound",
  );
});

t.test('writes are checked too: no row for another account', async (t) => {
  const { app, a, b } = await world(t);
  const { db } = app.database;
  await t.rejects(
    withTenant(a.accountId, () =>
      db
        .insertInto('contacts')
        .values({ account_id: b.accountId, email: 'planted@example.com' })
        .execute(),
    ),
    /row-level security/,
    "bound to A, inserting into B's contacts is refused",
  );
  const moved = await withTenant(a.accountId, () =>
    db
      .updateTable('contacts')
      .set({ first_name: 'Renamed' })
      .where('account_id', '=', b.accountId)
      .execute(),
  );
  t.equal(Number(moved[0]?.numUpdatedRows), 0, "B's rows cannot be updated: they are not there");
  await t.rejects(
    withTenant(a.accountId, () =>
      db
        .updateTable('contacts')
        .set({ account_id: b.accountId })
        .where('account_id', '=', a.accountId)
        .execute(),
    ),
    /row-level security/,
    "A's rows cannot be moved to B",
  );
  await t.rejects(
    withTenant(a.accountId, () =>
      sql`select erase_contact(${b.accountId}::uuid, gen_random_uuid())`.execute(db),
    ),
    /bound account/,
    'erase_contact refuses an account other than the bound one',
  );
});

t.test('a connection never carries one unit of work’s tenant into the next', async (t) => {
  const { app, a, b } = await world(t);
  const { db } = app.database;
  t.equal(await withTenant(a.accountId, () => connectionTenant(db)), a.accountId, 'bound to A');
  t.equal(await connectionTenant(db), '', 'the next checkout, unbound, holds nothing');
  t.equal(await withTenant(b.accountId, () => connectionTenant(db)), b.accountId, 'then B');
  t.equal(await withoutTenant(() => connectionTenant(db)), '', 'then nothing again');
  // Concurrent units of work for different accounts, interleaved on the pool (or on PGlite's
  // one connection): each sees its own account, every time.
  const seen = await Promise.all(
    Array.from({ length: 40 }, (_, i) => {
      const account = i % 2 === 0 ? a : b;
      return withTenant(account.accountId, async () => {
        const rows = await db.transaction().execute(async (trx) => {
          const first = await trx.selectFrom('contacts').select('account_id').execute();
          await new Promise((resolve) => setTimeout(resolve, i % 3));
          const again = await trx.selectFrom('contacts').select('account_id').execute();
          return [...first, ...again];
        });
        return rows.every((row) => row.account_id === account.accountId) && rows.length === 6;
      });
    }),
  );
  t.ok(seen.every(Boolean), 'forty interleaved transactions each saw exactly their account');
  // A transaction bound late (sign-up) is bound until it ends, then the checkout value holds.
  const inside = await withoutTenant(() =>
    db.transaction().execute(async (trx) => {
      await bindTransaction(trx, a.accountId);
      return trx.selectFrom('contacts').select('account_id').execute();
    }),
  );
  t.equal(inside.length, 3, 'bound inside its transaction');
  t.equal(await withoutTenant(() => connectionTenant(db)), '', 'and not after it');
  await withoutTenant(() =>
    db
      .transaction()
      .execute(async (trx) => {
        await bindTransaction(trx, a.accountId);
        throw new Error('roll back');
      })
      .catch(() => undefined),
  );
  t.equal(await withoutTenant(() => connectionTenant(db)), '', 'nor after a rollback');
  t.equal(boundTenant(), '', 'the test itself was never bound');
});

t.test(
  'a small pool shared by many accounts hands out no stale tenant',
  { skip: ENGINE !== 'postgres' && 'Postgres only: PGlite has one connection (tested above)' },
  async (t) => {
    const { app, a, b } = await world(t);
    const database = createPostgresDatabase({
      url: process.env.DATABASE_URL as string,
      poolMax: 2,
      connectionTimeoutMs: 5_000,
      statementTimeoutMs: 10_000,
      idleTimeoutMs: 10_000,
      schema: app.database.schema,
      serviceRole: app.database.serviceRole,
    });
    t.teardown(() => database.close());
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        const which = i % 3;
        const run = () => everyContact(database.db);
        if (which === 0) return withTenant(a.accountId, run).then((r) => ['a', r] as const);
        if (which === 1) return withTenant(b.accountId, run).then((r) => ['b', r] as const);
        return withoutTenant(run).then((r) => ['none', r] as const);
      }),
    );
    for (const [who, rows] of results) {
      const expected = who === 'a' ? a.accountId : who === 'b' ? b.accountId : undefined;
      if (!expected) {
        if (rows.length !== 0) t.fail('an unbound checkout saw rows');
        continue;
      }
      if (rows.length !== 3 || rows.some((row) => row.account_id !== expected)) {
        t.fail(`a checkout for ${who} saw another account's rows`);
      }
    }
    t.pass('sixty checkouts over two connections: each saw exactly its binding');
  },
);

t.test('every table with an account_id has row-level security, enabled and forced', async (t) => {
  const app = await build(t);
  const { owner, schema } = app.database;
  const tables = await sql<{ name: string; enabled: boolean; forced: boolean }>`
    select c.relname as name, c.relrowsecurity as enabled, c.relforcerowsecurity as forced
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relkind = 'r'
      and (c.relname = 'accounts' or exists (
        select 1 from pg_attribute a
        where a.attrelid = c.oid and a.attname = 'account_id' and not a.attisdropped))
    order by 1`.execute(owner);
  t.ok(tables.rows.length >= 20, `${tables.rows.length} tenant tables`);
  const policies = await sql<{ table: string; policy: string; qual: string; check: string }>`
    select tablename as table, policyname as policy, qual, with_check as check
    from pg_policies where schemaname = ${schema}`.execute(owner);
  for (const table of tables.rows) {
    t.ok(table.enabled && table.forced, `${table.name}: enabled and forced`);
    const isolation = policies.rows.find(
      (p) => p.table === table.name && p.policy === 'tenant_isolation',
    );
    t.match(
      `${isolation?.qual} ${isolation?.check}`,
      /current_setting\('custodian\.account_id'.*current_setting\('custodian\.account_id'/s,
      `${table.name}: tenant_isolation reads the bound account, for reads and writes`,
    );
  }
  const { rows } = await sql<{ bypass: boolean }>`
    select rolbypassrls as bypass from pg_roles where rolname = ${app.database.serviceRole}`.execute(
    owner,
  );
  t.equal(rows[0]?.bypass, false, 'the service role does not bypass row-level security');
});

t.test('the lookups before an account is bound answer an account id, nothing else', async (t) => {
  const { app, a } = await world(t);
  const { db } = app.database;
  t.equal(
    await withoutTenant(() => accountOf(db, 'account_of_user_email', a.email)),
    a.accountId,
    "a login's address names its account",
  );
  t.equal(
    await withoutTenant(() => accountOf(db, 'account_of_user_email', 'nobody@example.com')),
    null,
    'an unknown one names none',
  );
  t.equal(
    await withoutTenant(() => accountOf(db, 'account_of_user', a.userId)),
    a.accountId,
    "a token's user names its account",
  );
  const { rows } = await sql<{ returns: string }>`
    select distinct pg_get_function_result(p.oid) as returns
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = ${app.database.schema} and p.prosecdef and p.proname like 'account_of_%'`.execute(
    app.database.owner,
  );
  t.same(
    rows.map((r) => r.returns),
    ['uuid'],
    'every account_of_* function returns one uuid',
  );
});

t.test('only src/db/tenant.ts sets the tenant', async (t) => {
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts') && path !== join('src', 'db', 'tenant.ts')) {
        // The setting's name, or any session-level set_config (the planner tweaks elsewhere
        // are transaction-local: `, true)`).
        const text = readFileSync(path, 'utf8');
        if (/custodian\.account_id|set_config\([^)]*,\s*false\s*\)/.test(text)) {
          offenders.push(path);
        }
      }
    }
  };
  walk('src');
  t.same(offenders, [], 'no other source file names the setting or sets one for the session');
});
