import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import pg from 'pg';
import t from 'tap';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
} from '../../src/db/database.js';
import {
  MigrationError,
  migrateDown,
  migrateToLatest,
  withIntrospectionRetry,
} from '../../src/db/migrate.js';
import { ENGINE } from '../helper.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/migrations/', import.meta.url));
const FAILING = fileURLToPath(new URL('../fixtures/migrations-failing/', import.meta.url));
const WIDGETS = '20260101T000000Z-create-widgets';
const GADGETS = '20260102T000000Z-create-gadgets';
const URL_ = process.env.DATABASE_URL;

async function admin(text: string) {
  const client = new pg.Client({ connectionString: URL_ });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A fresh, unmigrated schema on Postgres; dropped at the end of the file. */
async function freshSchema(): Promise<string> {
  const schema = `mig_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin(`create schema ${schema}`);
  t.teardown(() => admin(`drop schema if exists ${schema} cascade`));
  return schema;
}

function postgres(schema: string): Database {
  const database = createPostgresDatabase({
    url: URL_!,
    schema,
    poolMax: 3,
    connectionTimeoutMs: 5_000,
    statementTimeoutMs: 30_000,
    idleTimeoutMs: 10_000,
  });
  t.teardown(() => database.close());
  return database;
}

/** A database nobody has migrated: its own embedded instance, or a new Postgres schema. */
async function freshDatabase(): Promise<Database> {
  if (ENGINE === 'postgres') return postgres(await freshSchema());
  const database = await createEmbeddedDatabase({ dataDir: 'memory://' });
  t.teardown(() => database.close());
  return database;
}

async function tablesOf(database: Database): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables
    where table_schema = ${database.schema} and table_name not like 'kysely_%'
    order by table_name`.execute(database.owner);
  return rows.map((r) => r.table_name);
}

async function recorded(database: Database): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select name from ${sql.table(`${database.schema}.kysely_migration`)}
    order by name`.execute(database.owner);
  return rows.map((r) => r.name);
}

t.test('the migration runner, in order, on one fresh database', async (t) => {
  const database = await freshDatabase();

  t.test('a failing migration throws, naming it, and applies nothing', async (t) => {
    const err = await migrateToLatest(database.owner, database.schema, FAILING).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, MigrationError);
    t.match((err as Error).message, /20260102T000000Z-fail-on-purpose failed: .*on purpose/);
    t.same(await tablesOf(database), [], 'the whole run rolled back (transactional DDL)');
    t.same(await recorded(database), [], 'nothing recorded');
  });

  t.test('migrateToLatest applies both migrations and records them', async (t) => {
    const results = await migrateToLatest(database.owner, database.schema, FIXTURES);
    t.same(results, [
      { migrationName: WIDGETS, direction: 'Up', status: 'Success' },
      { migrationName: GADGETS, direction: 'Up', status: 'Success' },
    ]);
    t.same(await tablesOf(database), ['gadget', 'widget']);
    t.same(await recorded(database), [WIDGETS, GADGETS], 'names without the file extension');
    await sql`insert into widget (id, name) values (1, 'w')`.execute(database.owner);
    await sql`insert into gadget (id, widget_id) values (1, 1)`.execute(database.owner);
  });

  t.test('running it again applies nothing', async (t) => {
    t.same(await migrateToLatest(database.owner, database.schema, FIXTURES), []);
    t.same(await recorded(database), [WIDGETS, GADGETS]);
  });

  t.test('migrateDown undoes only the newest', async (t) => {
    const results = await migrateDown(database.owner, database.schema, FIXTURES);
    t.same(results, [{ migrationName: GADGETS, direction: 'Down', status: 'Success' }]);
    t.same(await tablesOf(database), ['widget'], 'gadget is gone, widget stays');
    t.same(await recorded(database), [WIDGETS]);
    const { rows } = await sql<{ name: string }>`select name from widget`.execute(database.owner);
    t.same(rows, [{ name: 'w' }], 'the older table keeps its rows');

    const redo = await migrateToLatest(database.owner, database.schema, FIXTURES);
    t.same(
      redo.map((r) => r.migrationName),
      [GADGETS],
      'and migrating again re-applies just that one',
    );
  });
});

t.test(
  'two processes migrating one fresh schema at once apply each migration once',
  { skip: ENGINE !== 'postgres' ? 'needs Postgres (DATABASE_URL): one process per folder' : false },
  async (t) => {
    const schema = await freshSchema();
    const [first, second] = [postgres(schema), postgres(schema)];
    const [a, b] = await Promise.all([
      migrateToLatest(first.owner, schema, FIXTURES),
      migrateToLatest(second.owner, schema, FIXTURES),
    ]);
    const applied = [...a, ...b].map((r) => `${r.migrationName}:${r.status}`).sort();
    t.same(applied, [`${WIDGETS}:Success`, `${GADGETS}:Success`], 'between them, each once');
    const { rows } = await sql<{ name: string; times: number }>`
      select name, count(*)::int as times from ${sql.table(`${schema}.kysely_migration`)}
      group by name order by name`.execute(first.owner);
    t.same(rows, [
      { name: WIDGETS, times: 1 },
      { name: GADGETS, times: 1 },
    ]);
    t.same(await tablesOf(first), ['gadget', 'widget']);
  },
);

t.test('a schema dropped elsewhere during the table check is retried, not fatal', async (t) => {
  // Kysely's migrator introspects every schema before it migrates; another client dropping its
  // own schema at that moment makes that query fail with 3F000, before anything was applied.
  const race = Object.assign(new Error('schema "t_gone" does not exist'), { code: '3F000' });
  let runs = 0;
  const set = await withIntrospectionRetry(async () => {
    runs++;
    return runs <= 2 ? { error: race } : { results: [] };
  });
  t.equal(runs, 3, 'run again after each race');
  t.same(set, { results: [] });

  // Once a migration ran (here: failed), the error is the migration's: never retried.
  let failedRuns = 0;
  const failed = await withIntrospectionRetry(async () => {
    failedRuns++;
    return {
      error: race,
      results: [{ migrationName: WIDGETS, direction: 'Up' as const, status: 'Error' as const }],
    };
  });
  t.equal(failedRuns, 1);
  t.ok(failed.error);

  // Another error is not retried either.
  let otherRuns = 0;
  await withIntrospectionRetry(async () => {
    otherRuns++;
    return { error: Object.assign(new Error('boom'), { code: '42P01' }) };
  });
  t.equal(otherRuns, 1);
});
