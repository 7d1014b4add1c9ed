import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { DB } from '../src/db/schema.js';
import { audiencePage } from '../src/modules/consents/consents.repository.js';

/**
 * The Postgres side of the data benchmark: a throw-away database for the run, the COPY
 * baseline, and EXPLAIN of the audience query exactly as the service builds it.
 */

/**
 * The service picks no schema of its own (it migrates into `public` and names that schema in
 * Kysely's bookkeeping), so a run gets a whole database: `bench_data_<pid>_<random>`.
 */
export function newDatabaseName(): string {
  return `bench_data_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** `base` with its database replaced by `database`. */
export function databaseUrlFor(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.href;
}

/** The URL without its password, for printing. */
export function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.href;
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'custodian-bench' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const DATABASE_NAME = /^bench_data_[0-9]+_[0-9a-f]{8}$/;

export async function createDatabase(adminUrl: string, name: string): Promise<void> {
  if (!DATABASE_NAME.test(name)) throw new Error(`refusing to create database ${name}`);
  await withClient(adminUrl, (c) => c.query(`create database ${name}`));
}

/** Drops the run's database, closing whatever connections are still open on it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  if (!DATABASE_NAME.test(name)) throw new Error(`refusing to drop database ${name}`);
  await withClient(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`));
}

/** One statement on a short-lived connection; returns its rows. */
export async function query<R extends pg.QueryResultRow>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  return withClient(url, async (c) => (await c.query<R>(text, values)).rows);
}

/**
 * A checkpoint between phases, so that one phase does not pay for flushing the pages another
 * dirtied. Needs superuser or pg_checkpoint; without, the phases just share that cost.
 */
export async function checkpoint(url: string): Promise<boolean> {
  try {
    await query(url, 'checkpoint');
    return true;
  } catch {
    return false;
  }
}

export interface CopyResult {
  rows: number;
  ms: number;
}

/** `COPY table (columns) FROM STDIN` fed from `chunks`, in its own (autocommit) transaction. */
export async function copyRows(
  url: string,
  table: string,
  columns: readonly string[],
  chunks: Iterable<Buffer>,
): Promise<CopyResult> {
  return withClient(url, async (client) => {
    const started = performance.now();
    const stream = client.query(copyFrom(`copy ${table} (${columns.join(', ')}) from stdin`));
    await pipeline(Readable.from(chunks), stream);
    return { rows: stream.rowCount, ms: performance.now() - started };
  });
}

export interface AudienceExplain {
  sql: string;
  parameters: readonly unknown[];
  plan: string[];
  planningMs: number | null;
  executionMs: number | null;
  /** Indexes the plan reads, by name. */
  indexes: string[];
  /** Whether any node of the plan is a Seq Scan or a Sort (what a missing index looks like). */
  seqScan: boolean;
  sort: boolean;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the audience query the service runs for a page after
 * `afterContactId`. The SQL is not copied here: the service's own `audiencePage` is run once
 * through a Kysely that logs it, and that statement, with its parameters, is explained.
 */
export async function explainAudience(
  url: string,
  accountId: string,
  purposeId: string,
  limit: number,
  afterContactId: string | undefined,
): Promise<AudienceExplain> {
  const pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'custodian-bench' });
  const captured: CompiledQuery[] = [];
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (event.level === 'query') captured.push(event.query);
    },
  });
  let client: pg.PoolClient | undefined;
  try {
    // The service asks for one row more than the page, to know whether there is a next one.
    await audiencePage(db, accountId, purposeId, { limit: limit + 1, afterContactId });
    client = await pool.connect();
    const query = captured.find((q) => /distinct on/i.test(q.sql));
    if (!query) throw new Error('the audience query was not captured');
    // Replay what audiencePage runs (its planner settings too), explaining the page query.
    await client.query('begin');
    let result: pg.QueryResult<{ 'QUERY PLAN': string }> | undefined;
    for (const q of captured) {
      if (/^\s*(begin|commit|rollback)\b/i.test(q.sql)) continue;
      if (q === query) {
        result = await client.query(
          `explain (analyze, buffers) ${q.sql}`,
          q.parameters as unknown[],
        );
      } else {
        await client.query(q.sql, q.parameters as unknown[]);
      }
    }
    await client.query('rollback');
    if (!result) throw new Error('the audience query was not explained');
    const captured0 = query;
    const plan = result.rows.map((row) => row['QUERY PLAN']);
    const timing = (label: string) => {
      const line = plan.find((l) => l.trim().startsWith(`${label}:`));
      const match = line?.match(/([\d.]+) ms/);
      return match ? Number(match[1]) : null;
    };
    const indexes = [
      ...new Set(
        plan
          .flatMap((line) => [
            ...line.matchAll(/(?:Index (?:Only )?Scan (?:Backward )?using|Index Scan on) (\w+)/g),
          ])
          .map((m) => m[1]!),
      ),
    ];
    return {
      sql: captured0.sql.replace(/\s+/g, ' ').trim(),
      parameters: captured0.parameters,
      plan,
      planningMs: timing('Planning Time'),
      executionMs: timing('Execution Time'),
      indexes,
      seqScan: plan.some((line) => /Seq Scan/.test(line)),
      sort: plan.some((line) => /(^|->\s+)(Incremental )?Sort\s+\(/.test(line.trim())),
    };
  } finally {
    client?.release();
    await db.destroy();
  }
}

export interface TableStats {
  table: string;
  rows: number;
  totalBytes: number;
  lastAnalyze: string | null;
}

/** Row estimates, sizes (with indexes) and when each table was last analysed. */
export async function tableStats(url: string, tables: string[]): Promise<TableStats[]> {
  const rows = await query<{
    table: string;
    rows: string;
    total_bytes: string;
    last_analyze: Date | null;
  }>(
    url,
    `select c.relname as table, greatest(c.reltuples, 0)::bigint as rows,
       pg_total_relation_size(c.oid) as total_bytes,
       greatest(s.last_analyze, s.last_autoanalyze) as last_analyze
     from pg_class c join pg_stat_user_tables s on s.relid = c.oid
     where c.relname = any($1) order by c.relname`,
    [tables],
  );
  return rows.map((r) => ({
    table: r.table,
    rows: Number(r.rows),
    totalBytes: Number(r.total_bytes),
    lastAnalyze: r.last_analyze ? r.last_analyze.toISOString() : null,
  }));
}

/**
 * A structural copy of `table` for the COPY baseline: `LIKE ... INCLUDING ALL` (columns,
 * defaults, checks, indexes) plus the foreign keys, which LIKE leaves out, so COPY pays for the
 * same index maintenance and reference checks as the service's inserts. `renames` maps a
 * referenced table to its copy (consent events then refer to the copied contacts).
 */
export async function copyTableStructure(
  url: string,
  table: string,
  copy: string,
  renames: Record<string, string> = {},
): Promise<void> {
  await withClient(url, async (client) => {
    await client.query(`create table ${copy} (like ${table} including all)`);
    const fks = await client.query<{ def: string }>(
      `select pg_get_constraintdef(oid) as def from pg_constraint
       where conrelid = $1::regclass and contype = 'f' order by conname`,
      [table],
    );
    for (const { def } of fks.rows) {
      let rewritten = def;
      for (const [from, to] of Object.entries(renames)) {
        rewritten = rewritten.replace(new RegExp(`REFERENCES ${from}\\(`), `REFERENCES ${to}(`);
      }
      await client.query(`alter table ${copy} add ${rewritten}`);
    }
  });
}

export async function autovacuumEnabled(url: string): Promise<boolean> {
  const [row] = await query<{ on: string }>(url, "select current_setting('autovacuum') as on");
  return row?.on === 'on';
}

export interface AnalyzeRun {
  /** Seconds since the emulation started. */
  at: number;
  table: string;
  modifiedSinceAnalyze: number;
}

/**
 * What autovacuum would do about statistics, for a server that runs with `autovacuum = off`
 * (CI's Postgres does): every `autovacuum_naptime`, ANALYZE each table whose rows changed since
 * its last analyse exceed `autovacuum_analyze_threshold + autovacuum_analyze_scale_factor *
 * reltuples`, with the server's own values of those settings (50, 0.1 and 1 min by default).
 * Without it the planner never learns that the tables grew, and plans stay those of empty
 * tables. Tables named in `exclude` (the baseline's copies) are left alone.
 */
export function emulateAutoanalyze(url: string, exclude: string[], log: (line: string) => void) {
  const started = Date.now();
  const runs: AnalyzeRun[] = [];
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  async function tick(): Promise<void> {
    const due = await query<{ table: string; modified: string }>(
      url,
      `select s.relname as table, s.n_mod_since_analyze as modified
       from pg_stat_user_tables s join pg_class c on c.oid = s.relid
       where s.schemaname = current_schema() and not (s.relname = any($1))
         and s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
           + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
       order by s.relname`,
      [exclude],
    );
    for (const { table, modified } of due) {
      if (stopped) return;
      const t0 = Date.now();
      await query(url, `analyze ${table}`);
      const run = {
        at: (Date.now() - started) / 1000,
        table,
        modifiedSinceAnalyze: Number(modified),
      };
      runs.push(run);
      log(
        `  emulated autovacuum: analyze ${table} (${Number(modified).toLocaleString('en-US')} rows ` +
          `changed) took ${Date.now() - t0} ms`,
      );
    }
  }

  /** One tick now (and its error, if any, is only logged). */
  function tickNow(): Promise<void> {
    running = running.then(tick).catch((err: unknown) => {
      log(`  emulated autovacuum failed: ${(err as Error).message}`);
    });
    return running;
  }

  return {
    runs,
    async start(): Promise<void> {
      const [row] = await query<{ ms: string }>(
        url,
        "select extract(epoch from current_setting('autovacuum_naptime')::interval) * 1000 as ms",
      );
      const naptimeMs = Number(row?.ms) || 60_000;
      timer = setInterval(() => void tickNow(), naptimeMs);
    },
    tickNow,
    async stop(): Promise<AnalyzeRun[]> {
      stopped = true;
      if (timer) clearInterval(timer);
      await running;
      return runs;
    },
  };
}
