import type { FastifyBaseLogger } from 'fastify';
import { type Kysely, sql } from 'kysely';
import type { DB } from './schema.js';

/**
 * The embedded engine has no autovacuum, so nothing ever runs ANALYZE: the planner keeps the
 * estimates of an empty table and may pick any index that starts with `account_id`, then sort
 * the whole account (a list by creation date read every request of the account and sorted them,
 * instead of walking the creation index). This does autovacuum's analyze on a timer, by its
 * default rule: a table is analysed when the rows changed since its last analyze exceed
 * 50 + 10% of its live rows (`autovacuum_analyze_threshold`, `…_scale_factor`).
 *
 * Postgres servers run their own autovacuum; this is for the embedded engine only. Failures are
 * logged, never thrown.
 */
export function embeddedAutoanalyze(deps: {
  db: Kysely<DB>;
  schema: string;
  intervalMs: number;
  log: FastifyBaseLogger;
}) {
  const { db, schema, intervalMs, log } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  /** Analyses the tables due by autovacuum's rule; returns their names. */
  async function runOnce(): Promise<string[]> {
    const due = await sql<{ relname: string }>`
      select relname from pg_stat_user_tables
      where schemaname = ${schema}
        and n_mod_since_analyze > 50 + 0.1 * n_live_tup
      order by relname`.execute(db);
    const tables = due.rows.map((row) => row.relname);
    for (const table of tables) {
      await sql`analyze ${sql.table(`${schema}.${table}`)}`.execute(db);
    }
    if (tables.length > 0) log.debug({ tables }, 'analysed (embedded autovacuum)');
    return tables;
  }

  return {
    runOnce,
    start() {
      if (intervalMs <= 0 || timer) return;
      timer = setInterval(() => {
        if (running) return;
        running = runOnce()
          .catch((err) => log.warn({ err }, 'embedded analyze failed'))
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
