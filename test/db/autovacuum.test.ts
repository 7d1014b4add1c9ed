import { sql } from 'kysely';
import t from 'tap';
import { embeddedAutovacuum } from '../../src/db/autovacuum.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build, ENGINE } from '../helper.js';

/**
 * Without statistics the planner listed an account's data-subject requests by scanning another
 * index and sorting them all; after autovacuum's analyze (emulated on the embedded engine) it
 * walks the creation index and stops after the page.
 */
t.test(
  'analyse tables past autovacuum’s threshold, and the list plan follows',
  {
    // A Postgres server analyses on its own, and reports its statistics asynchronously.
    skip: ENGINE === 'postgres' ? 'the analyser runs on the embedded engine only' : false,
  },
  async (t) => {
    // The app's own timer off: analysed part-way through the inserts (a slow machine), the
    // statistics would describe fewer rows than the plan below is for.
    const app = await build(t, {
      env: { RATE_LIMIT_MAX: '1000000', EMBEDDED_ANALYZE_INTERVAL_MS: '0' },
    });
    const { maintenance: db, schema } = app.database;
    const owner = await signup(app);
    for (let i = 0; i < 120; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/data-subject-requests',
        headers: bearer(owner.accessToken),
        payload: { type: 'access', subject: { email: `analyze-${i}@example.com` } },
      });
      t.equal(res.statusCode, 201);
    }
    const log = { debug() {}, warn() {} } as never;
    const analyzer = embeddedAutovacuum({ db, schema, intervalMs: 0, log });
    // The activity counters the analyser reads are flushed up to a second after the inserts.
    const changed = async () =>
      (
        await sql<{ n: number }>`
          select coalesce(n_mod_since_analyze, 0)::int as n from pg_stat_user_tables
          where schemaname = ${schema} and relname = 'data_subject_requests'`.execute(db)
      ).rows[0]?.n ?? 0;
    for (let waited = 0; (await changed()) < 120 && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.ok((await analyzer.runOnce()).includes('data_subject_requests'), 'the analyser picks it');
    // ANALYZE writes the planner's statistics in its transaction (pg_stats); the activity
    // counters (pg_stat_user_tables) are flushed up to a second later, so wait for those.
    const columns = await sql<{ n: number }>`
      select count(*)::int as n from pg_stats
      where schemaname = ${schema} and tablename = 'data_subject_requests'`.execute(db);
    t.ok((columns.rows[0]?.n ?? 0) > 0, 'data_subject_requests has statistics');
    const counted = async () =>
      (
        await sql<{ analysed: boolean }>`
          select last_analyze is not null as analysed from pg_stat_user_tables
          where schemaname = ${schema} and relname = 'data_subject_requests'`.execute(db)
      ).rows[0]?.analysed === true;
    for (let waited = 0; !(await counted()) && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.ok(await counted(), 'and the analyse is counted');
    t.same(await analyzer.runOnce(), [], 'nothing is due right after');
    const plan = await sql<{ 'QUERY PLAN': string }>`
    explain select * from data_subject_requests where account_id = ${owner.accountId}
    order by created_at, id limit 51`.execute(db);
    const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
    t.match(text, /data_subject_requests_created_idx/, text);
    t.notMatch(text, /Sort/, 'no sort of the whole account');
  },
);

/**
 * A table updated over and over keeps its dead row versions, and their index entries, until a
 * vacuum: the webhook queue's claims and outcomes slowed tenfold on the embedded engine before
 * it vacuumed. Past autovacuum's rule (dead rows > 50 + 20% of the live ones) it is vacuumed.
 */
t.test(
  'vacuum tables whose dead rows pass autovacuum’s threshold',
  {
    skip: ENGINE === 'postgres' ? 'the vacuum runs on the embedded engine only' : false,
  },
  async (t) => {
    const app = await build(t, {
      env: { RATE_LIMIT_MAX: '1000000', EMBEDDED_ANALYZE_INTERVAL_MS: '0' },
    });
    const { maintenance: db, schema } = app.database;
    const owner = await signup(app);
    for (let i = 0; i < 20; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/data-subject-requests',
        headers: bearer(owner.accessToken),
        payload: { type: 'access', subject: { email: `vacuum-${i}@example.com` } },
      });
      t.equal(res.statusCode, 201);
    }
    // Five new versions of each of the 20 rows: 100 dead ones, past 50 + 20% of 20.
    for (let i = 0; i < 5; i++) {
      await sql`update data_subject_requests set updated_at = now()`.execute(db);
    }
    const stats = async () =>
      (
        await sql<{ dead: number; vacuumed: boolean }>`
          select n_dead_tup::int as dead, last_vacuum is not null as vacuumed
          from pg_stat_user_tables
          where schemaname = ${schema} and relname = 'data_subject_requests'`.execute(db)
      ).rows[0] ?? { dead: 0, vacuumed: false };
    // The activity counters are flushed up to a second after the updates.
    for (let waited = 0; (await stats()).dead < 100 && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.ok((await stats()).dead >= 100, 'the updates left dead rows');
    const log = { debug() {}, warn() {} } as never;
    const vacuumer = embeddedAutovacuum({ db, schema, intervalMs: 0, log });
    t.ok((await vacuumer.runOnce()).includes('data_subject_requests'), 'it is due');
    for (let waited = 0; !(await stats()).vacuumed && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.match(await stats(), { dead: 0, vacuumed: true }, 'vacuumed: no dead rows left');
    t.same(await vacuumer.runOnce(), [], 'nothing is due right after');
  },
);
