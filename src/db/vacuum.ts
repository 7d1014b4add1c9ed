import type { FastifyBaseLogger } from 'fastify';
import { type Kysely, sql } from 'kysely';
import type { DB } from './schema.js';

export interface DebouncedVacuum {
  /** Asks for a vacuum; runs at most once per interval, however often it is asked. */
  request(): void;
  /** Cancels a pending run and waits for a running one; later requests are ignored. */
  stop(): Promise<void>;
}

/**
 * Art. 17 and Art. 5(1)(e): a DELETE or UPDATE leaves the old row versions (dead tuples) in the
 * table's pages until VACUUM reclaims them, so erased data stays readable on disk by anyone who
 * reads the files. This runs `VACUUM` of `tables` after requests, batched: the first request
 * starts a timer of `intervalMs`, requests meanwhile join that run, and a request made while a
 * run is busy schedules one more, an interval later. So a burst of erasures costs one vacuum,
 * and none waits more than two intervals.
 *
 * VACUUM cannot run inside a transaction: it runs on a connection of its own (the pool's
 * statement timeout lifted for it, since a large table takes longer than a request may).
 * Failures are logged, never thrown: the erasure itself has committed already. An interval of
 * 0 turns it off (for a deployer who vacuums on a schedule of their own).
 */
export function debouncedVacuum(deps: {
  db: Kysely<DB>;
  tables: readonly string[];
  intervalMs: number;
  log: FastifyBaseLogger;
}): DebouncedVacuum {
  const { db, tables, intervalMs, log } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  function schedule() {
    timer = setTimeout(() => {
      timer = undefined;
      running = run().finally(() => {
        running = undefined;
        if (again && !stopped) {
          again = false;
          schedule();
        }
      });
    }, intervalMs);
    timer.unref();
  }

  async function run() {
    const started = performance.now();
    try {
      await db.connection().execute(async (connection) => {
        await sql`set statement_timeout = 0`.execute(connection);
        try {
          await sql`vacuum ${sql.join(tables.map((table) => sql.table(table)))}`.execute(
            connection,
          );
        } finally {
          await sql`reset statement_timeout`.execute(connection);
        }
      });
      log.info(
        { tables: tables.length, durationMs: Math.round(performance.now() - started) },
        'vacuumed the tables erasures touched',
      );
    } catch (err) {
      log.error({ err }, 'vacuum after erasure failed; the next erasure tries again');
    }
  }

  return {
    request() {
      if (stopped || intervalMs === 0) return;
      if (running) again = true;
      else if (!timer) schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
