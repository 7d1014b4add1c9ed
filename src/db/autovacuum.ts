import type { FastifyBaseLogger } from 'fastify';
import { type Kysely, sql } from 'kysely';
import type { DB } from './schema.js';

/**
 * The embedded engine has no autovacuum, so nothing ever runs ANALYZE or VACUUM by itself:
 * - without statistics the planner keeps the estimates of an empty table and may pick any index
 *   that starts with `account_id`, then sort the whole account (a list by creation date read
 *   every request of the account and sorted them, instead of walking the creation index);
 * - without vacuum the dead row versions of a table updated over and over pile up in its
 *   indexes (the webhook queue writes each delivery three times): a scan of the lease index
 *   walked tens of thousands of dead entries to find a thousand live ones, and the worker's
 *   claims and outcomes took ten times as long (bench:webhooks, embedded).
 *
 * This does autovacuum's work on a timer, by its default rules: a table is vacuumed (and
 * analysed) when its dead rows exceed 50 + 20% of its live rows (`autovacuum_vacuum_threshold`,
 * `…_scale_factor`), and analysed when the rows changed since its last analyze exceed 50 + 10%
 * of its live rows (`autovacuum_analyze_threshold`, `…_scale_factor`).
 *
 * Postgres servers run their own autovacuum; this is for the embedded engine only. Failures are
 * logged, never thrown.
 */
export function embeddedAutovacuum(deps: {
  db: Kysely<DB>;
  schema: string;
  intervalMs: number;
  log: FastifyBaseLogger;
}) {
  const { db, schema, intervalMs, log } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  /** Vacuums or analyses the tables due by autovacuum's rules; returns their names. */
  async function runOnce(): Promise<string[]> {
    const due = await sql<{ relname: string; vacuum: boolean }>`
      select relname, n_dead_tup > 50 + 0.2 * n_live_tup as vacuum from pg_stat_user_tables
      where schemaname = ${schema}
        and (n_dead_tup > 50 + 0.2 * n_live_tup or n_mod_since_analyze > 50 + 0.1 * n_live_tup)
      order by relname`.execute(db);
    for (const { relname, vacuum } of due.rows) {
      const table = sql.table(`${schema}.${relname}`);
      await (vacuum ? sql`vacuum (analyze) ${table}` : sql`analyze ${table}`).execute(db);
    }
    const tables = due.rows.map((row) => row.relname);
    if (tables.length > 0) {
      log.debug(
        { vacuumed: due.rows.filter((row) => row.vacuum).map((row) => row.relname), tables },
        'vacuumed and analysed (embedded autovacuum)',
      );
    }
    return tables;
  }

  return {
    runOnce,
    start() {
      if (intervalMs <= 0 || timer) return;
      timer = setInterval(() => {
        if (running) return;
        running = runOnce()
          .catch((err) => log.warn({ err }, 'embedded autovacuum failed'))
          .finally(() => {
            running = undefined;
          });
      }, intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
