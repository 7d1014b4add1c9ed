import { sql } from 'kysely';
import t, { type Test } from 'tap';
import { bindTenant, withTenant } from '../../src/db/tenant.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * Issue 11, part 2: tenant isolation enforced by the database. Each query below forgets its
 * `account_id` clause on purpose, as a future repository might: the policies still show only
 * the bound account's rows, and none with no account bound.
 */

async function twoAccounts(t: Test) {
  const app = await build(t);
  const accounts = [];
  for (const label of ['a', 'b']) {
    const owner = await signup(app);
    for (let i = 0; i < 2; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/contacts',
        headers: bearer(owner.accessToken),
        payload: { email: `rls-${label}-${i}-${owner.accountId.slice(-6)}@example.com` },
      });
      t.equal(res.statusCode, 201);
    }
    accounts.push(owner);
  }
  return { app, a: accounts[0]!, b: accounts[1]! };
}

t.test('a query without its tenant clause sees only the bound account', async (t) => {
  const { app, a, b } = await twoAccounts(t);
  const { db } = app.database;
  // The deliberately broken query: no where account_id = ….
  const everyone = () => db.selectFrom('contacts').select(['account_id', 'email']).execute();

  const asA = await bindTenant(a.accountId, everyone);
  t.equal(asA.length, 2, 'two rows for account A');
  t.ok(
    asA.every((row) => row.account_id === a.accountId),
    'all of them A’s',
  );
  const asB = await bindTenant(b.accountId, everyone);
  t.ok(asB.length === 2 && asB.every((row) => row.account_id === b.accountId), 'B sees B’s');
  t.same(await everyone(), [], 'nothing with no account bound');

  const inTransaction = await withTenant(db, a.accountId, (trx) =>
    trx.selectFrom('contacts').select('account_id').execute(),
  );
  t.ok(
    inTransaction.length === 2 && inTransaction.every((row) => row.account_id === a.accountId),
    'the same inside a transaction',
  );
  const audit = await bindTenant(a.accountId, () =>
    db.selectFrom('audit_events').select('account_id').distinct().execute(),
  );
  t.same(
    audit.map((row) => row.account_id),
    [a.accountId],
    'and on the audit chain',
  );
  const owned = await app.database.owner.selectFrom('contacts').select('id').execute();
  t.ok(owned.length >= 4, 'the owner (migrations, definer functions) sees every account');
});

t.test('writes for another account are refused by the policy', async (t) => {
  const { app, a, b } = await twoAccounts(t);
  const { db } = app.database;
  await t.rejects(
    bindTenant(a.accountId, () =>
      db
        .insertInto('contacts')
        .values({ account_id: b.accountId, email: 'planted@example.com' })
        .execute(),
    ),
    /row-level security/,
    'an insert into B while A is bound',
  );
  const moved = await bindTenant(a.accountId, () =>
    db
      .updateTable('contacts')
      .set({ first_name: 'Changed' })
      .where('account_id', '=', b.accountId)
      .executeTakeFirst(),
  );
  t.equal(Number(moved.numUpdatedRows), 0, 'an update of B’s rows while A is bound touches none');
  await t.rejects(
    db.insertInto('contacts').values({ account_id: a.accountId, email: 'x@example.com' }).execute(),
    /row-level security/,
    'an insert with no account bound',
  );
});

t.test('the binding dies with its unit of work', async (t) => {
  const { app, a } = await twoAccounts(t);
  const { db } = app.database;
  const setting = () =>
    sql<{ value: string | null }>`select current_setting('custodian.account_id', true) as value`
      .execute(db)
      .then((r) => r.rows[0]?.value ?? '');
  t.equal(await bindTenant(a.accountId, setting), a.accountId, 'bound inside');
  // One embedded connection, and a pool of a few on Postgres: the next units reuse them.
  for (let i = 0; i < 5; i++) t.equal(await setting(), '', 'nothing carried over');
  t.throws(() => bindTenant('not-an-id', setting), /not an account id/, 'only an account id binds');
});

t.test('every table with an account_id has row-level security, enabled and forced', async (t) => {
  const { app } = await twoAccounts(t);
  const { owner, schema } = app.database;
  const { rows } = await sql<{
    table: string;
    enabled: boolean;
    forced: boolean;
    policies: number;
  }>`
    select c.relname as table, c.relrowsecurity as enabled, c.relforcerowsecurity as forced,
      (select count(*)::int from pg_policies p
       where p.schemaname = n.nspname and p.tablename = c.relname
         and p.policyname = 'tenant_isolation') as policies
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relkind = 'r'
      and (exists (select 1 from pg_attribute a where a.attrelid = c.oid
                   and a.attname = 'account_id' and not a.attisdropped)
           or c.relname = 'accounts')
    order by 1`.execute(owner);
  t.ok(rows.length >= 20, `${rows.length} tenant tables`);
  for (const row of rows) {
    t.same(
      { enabled: row.enabled, forced: row.forced, policies: row.policies },
      { enabled: true, forced: true, policies: 1 },
      row.table,
    );
  }
});

t.test('operators: with no account bound, only users of no account', async (t) => {
  const { app } = await twoAccounts(t);
  const users = await app.database.db.selectFrom('users').select('account_id').execute();
  t.ok(
    users.every((row) => row.account_id === null),
    'no customer user is visible to unbound work',
  );
});
