import { setTimeout as sleep } from 'node:timers/promises';
import { type Kysely, sql } from 'kysely';
import t from 'tap';
import type { DB } from '../../src/db/schema.js';
import { ERASURE_TOUCHED_TABLES } from '../../src/modules/contacts/contacts.service.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build, ENGINE } from '../helper.js';

const INTERVAL_MS = 1_500;

/** How often each touched table was vacuumed by hand (VACUUM, not autovacuum). */
async function vacuumCounts(db: Kysely<DB>): Promise<Record<string, number>> {
  const result = await sql<{ relname: string; vacuum_count: string }>`
    select relname, vacuum_count from pg_stat_user_tables
    where schemaname = current_schema() and relname = any(${[...ERASURE_TOUCHED_TABLES]})`.execute(
    db,
  );
  return Object.fromEntries(result.rows.map((row) => [row.relname, Number(row.vacuum_count)]));
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(50);
  }
  return check();
}

/**
 * Dead row versions physically in the table's pages (pgstattuple reads them), Postgres only;
 * undefined when the extension is not available. The statistics' n_dead_tup lags (a backend
 * reports its deletions up to seconds later), pgstattuple does not.
 */
async function deadTuples(db: Kysely<DB>, table: string): Promise<number | undefined> {
  try {
    await sql`create extension if not exists pgstattuple with schema public`.execute(db);
  } catch {
    // Another test file created it at the same moment, or it is not installed.
  }
  try {
    const result = await sql<{ dead_tuple_count: string }>`
      select dead_tuple_count from public.pgstattuple(${`${table}`}::regclass)`.execute(db);
    return Number(result.rows[0]!.dead_tuple_count);
  } catch {
    return undefined;
  }
}

t.test('a burst of erasures is followed by one vacuum of the touched tables', async (t) => {
  const app = await build(t, { env: { ERASURE_VACUUM_INTERVAL_MS: String(INTERVAL_MS) } });
  const db = app.database.owner;
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const created = await app.inject({
      method: 'POST',
      url: '/v1/contacts',
      headers,
      payload: { email: `vacuum.${i}@example.com`, firstName: 'Vacuumed' },
    });
    ids.push(created.json().id);
    await app.inject({
      method: 'PATCH',
      url: `/v1/contacts/${ids[i]}`,
      headers,
      payload: { lastName: 'Rewritten' },
    });
  }
  const before = await vacuumCounts(db);
  t.same(Object.keys(before).sort(), [...ERASURE_TOUCHED_TABLES].sort(), 'all tables counted');

  const erased = await Promise.all(
    ids.map((id) => app.inject({ method: 'DELETE', url: `/v1/contacts/${id}`, headers })),
  );
  t.same(
    erased.map((res) => res.statusCode),
    ids.map(() => 204),
  );
  t.same(await vacuumCounts(db), before, 'no vacuum inside the requests');
  const deadBefore = ENGINE === 'postgres' ? await deadTuples(db, 'contacts') : undefined;
  if (deadBefore !== undefined) t.ok(deadBefore >= 6, `dead tuples before: ${deadBefore}`);

  t.ok(
    await eventually(async () => (await vacuumCounts(db)).contacts! > before.contacts!, 10_000),
    'the vacuum ran after the interval',
  );
  await sleep(INTERVAL_MS * 2);
  const after = await vacuumCounts(db);
  for (const table of ERASURE_TOUCHED_TABLES) {
    t.equal(after[table], before[table]! + 1, `${table}: vacuumed once for the burst`);
  }
  if (ENGINE === 'postgres') {
    const dead = await deadTuples(db, 'contacts');
    if (dead === undefined) t.comment('pgstattuple is not available: dead tuples not counted');
    else t.equal(dead, 0, 'the erased rows’ dead versions are gone from the pages');
  }

  // A later erasure is vacuumed again, after its own interval.
  const late = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers,
    payload: { email: 'vacuum.late@example.com' },
  });
  await app.inject({ method: 'DELETE', url: `/v1/contacts/${late.json().id}`, headers });
  t.ok(
    await eventually(async () => (await vacuumCounts(db)).contacts === after.contacts! + 1, 10_000),
    'and again after a later erasure',
  );
});

t.test('an interval of 0 turns it off, and closing the app cancels a pending run', async (t) => {
  for (const interval of ['0', '300']) {
    const app = await build(t, { env: { ERASURE_VACUUM_INTERVAL_MS: interval } });
    const db = app.database.owner;
    const owner = await signup(app);
    const headers = bearer(owner.accessToken);
    const created = await app.inject({
      method: 'POST',
      url: '/v1/contacts',
      headers,
      payload: { email: `vacuum.off.${interval}@example.com` },
    });
    const before = await vacuumCounts(db);
    await app.inject({ method: 'DELETE', url: `/v1/contacts/${created.json().id}`, headers });
    // Closing resolves at once and cancels the pending run (the database outlives the app).
    const started = Date.now();
    await app.close();
    t.ok(Date.now() - started < 5_000, `interval ${interval}: closed promptly`);
    await sleep(900);
    t.same(await vacuumCounts(db), before, `interval ${interval}: no vacuum`);
  }
});
