import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  autovacuumEnabled,
  checkpoint,
  copyRows,
  copyTableStructure,
  createDatabase,
  databaseUrlFor,
  dropDatabase,
  emulateAutoanalyze,
  explainAudience,
  newDatabaseName,
  query,
  redactUrl,
  tableStats,
} from './data-db.js';
import {
  createPurpose,
  type ImportResult,
  logIn,
  runningImport,
  signUp,
  streamImport,
  walkAudience,
} from './data-http.js';
import {
  CONSENT_COPY_COLUMNS,
  CONTACT_COPY_COLUMNS,
  chunked,
  consentCopyLine,
  contactCopyLine,
  NOTICE_VERSION,
  ndjsonLine,
  PURPOSE_KEY,
} from './data-rows.js';
import {
  cpuTimeMs,
  fileSize,
  killAllTargetsNow,
  machineReport,
  prepareServiceBuild,
  REPO_ROOT,
  removeDir,
  startService,
  stopAllTargets,
  type Target,
} from './targets.js';

/**
 * `npm run bench:data`: the data path on Postgres, in one run and side by side.
 *
 * 1. A throw-away database on the server at DATABASE_URL; the real service as a child process
 *    on it (it migrates at start).
 * 2. Baseline: the same generated rows loaded with raw `COPY ... FROM STDIN` into `contacts`
 *    (and, separately timed, their consent evidence into `consent_events`) of a second account.
 * 3. The import through the API: `POST /v1/contact-imports` with the NDJSON streamed, timed
 *    from the first byte to the response, while the service's RSS is sampled from /proc.
 * 4. The audience (`GET /v1/purposes/{id}/audience`) walked page by page with its cursor over
 *    the imported contacts, timed per request, and EXPLAIN (ANALYZE, BUFFERS) of a deep page.
 *
 * Targets (the issue): import >= 0.5 of COPY's rows/s, server peak RSS < 300 MB during the
 * import, audience p99 < 50 ms for a 1,000-row page, all over 1,000,000 contacts.
 */

const HELP = `usage: npm run bench:data -- [options]

Postgres only: DATABASE_URL must name a Postgres server where its user may CREATE DATABASE
(e.g. postgres://postgres@127.0.0.1:5432/test). The run creates a database bench_data_<pid>_<hex>
there, runs the service on it, and drops it at the end (also on Ctrl-C or failure).

  --rows N               contacts to import (BENCH_DATA_ROWS, default 1000000)
  --page-size N          audience page size (default 1000, the API's maximum)
  --audience-pages N     walk at most N audience pages (default: all of them)
  --request-timeout-ms N IMPORT_BODY_TIMEOUT_MS for the service (default: the service's own, 1 hour;
                         it bounds how long an import upload may take)
  --no-build             do not run \`npm run build\` first (use dist/ as it is)
  --tsx                  run the service from src/ through tsx instead of dist/
  --service-node-options S  NODE_OPTIONS for the service only (default: production's,
                         --max-old-space-size=192)
  --no-analyze           on a server with autovacuum = off (CI's), do not emulate its ANALYZE
                         (the planner then keeps empty-table statistics: see bench/README.md)
  --profile DIR          run the service with --cpu-prof, its profile written to DIR at the end
                         (summarise it: node --import tsx bench/profile-summary.ts DIR)
  --check                exit 1 when a target is missed
  --keep-db              do not drop the database at the end (its name is printed)
  -h, --help             this text
`;

const TARGETS = { minCopyRatio: 0.5, maxPeakRssMb: 300, maxAudienceP99Ms: 50 } as const;

/** The COPY baseline's tables: empty structural copies, dropped once measured. */
const COPY_TABLES = {
  contacts: 'bench_copy_contacts',
  consentEvents: 'bench_copy_consent_events',
} as const;

interface Options {
  rows: number;
  pageSize: number;
  audiencePages: number;
  /** Undefined: the service's default. */
  requestTimeoutMs: number | undefined;
  build: boolean;
  tsx: boolean;
  check: boolean;
  keepDb: boolean;
  analyze: boolean;
  serviceNodeOptions: string;
  /** When set, the service runs with `--cpu-prof` and writes its profile here. */
  profileDir: string | undefined;
}

function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      rows: { type: 'string' },
      'page-size': { type: 'string' },
      'audience-pages': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'no-build': { type: 'boolean' },
      tsx: { type: 'boolean' },
      check: { type: 'boolean' },
      'keep-db': { type: 'boolean' },
      'no-analyze': { type: 'boolean' },
      'service-node-options': { type: 'string' },
      profile: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const integer = (name: string, raw: string | undefined, fallback: number, min: number) => {
    const value = raw === undefined || raw === '' ? fallback : Number(raw.replace(/_/g, ''));
    if (!Number.isInteger(value) || value < min) {
      throw new UsageError(`--${name} must be an integer >= ${min}, got "${raw}"`);
    }
    return value;
  };
  return {
    rows: integer('rows', values.rows ?? env.BENCH_DATA_ROWS, 1_000_000, 1),
    pageSize: Math.min(1000, integer('page-size', values['page-size'], 1000, 1)),
    audiencePages: integer('audience-pages', values['audience-pages'], Number.MAX_SAFE_INTEGER, 1),
    requestTimeoutMs:
      values['request-timeout-ms'] === undefined
        ? undefined
        : integer('request-timeout-ms', values['request-timeout-ms'], 0, 0),
    build: !values['no-build'] && !values.tsx,
    tsx: values.tsx ?? false,
    check: values.check ?? false,
    keepDb: values['keep-db'] ?? false,
    analyze: !values['no-analyze'],
    serviceNodeOptions: values['service-node-options'] ?? '',
    profileDir: values.profile ? resolve(values.profile) : undefined,
  };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Memory of the service, from /proc

interface ProcMemory {
  rssKb: number;
  hwmKb: number;
}

function procMemory(pid: number): ProcMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) =>
      Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))?.[1]);
    const rssKb = field('VmRSS');
    const hwmKb = field('VmHWM');
    return Number.isFinite(rssKb) && Number.isFinite(hwmKb) ? { rssKb, hwmKb } : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `intervalMs`; keeps the peak and one sample per second. */
function sampleRss(pid: number, intervalMs = 150) {
  const started = Date.now();
  let peakKb = 0;
  let lastKept = -1;
  const series: [seconds: number, rssMb: number][] = [];
  const take = () => {
    const memory = procMemory(pid);
    if (!memory) return;
    peakKb = Math.max(peakKb, memory.rssKb);
    const second = Math.floor((Date.now() - started) / 1000);
    if (second !== lastKept) {
      lastKept = second;
      series.push([second, Math.round(memory.rssKb / 1024)]);
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    get peakKb() {
      return peakKb;
    },
    stop() {
      clearInterval(timer);
      take();
      return { peakKb, series };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const round1 = (n: number) => Math.round(n * 10) / 10;
const mb = (kb: number) => kb / 1024;
const verdict = (pass: boolean) => (pass ? '**PASS**' : '**FAIL**');

function log(message: string): void {
  process.stderr.write(`bench:data: ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Clean-up: the child and the database go, whatever happens

let cleanupPromise: Promise<void> | undefined;
/** Set by a signal: what fails from then on is the run being torn down, not news. */
let interrupted = false;
const state: {
  adminUrl?: string;
  database?: string;
  keepDb: boolean;
  workDir?: string;
  serviceLog?: string;
} = { keepDb: false };

/** The end of the service's log, to explain a failure before the scratch folder goes. */
function serviceLogTail(bytes = 3_000): string {
  if (!state.serviceLog) return '';
  try {
    const text = readFileSync(state.serviceLog, 'utf8');
    return `--- end of the service log (${state.serviceLog})\n${text.slice(-bytes)}`;
  } catch {
    return '';
  }
}

function cleanup(): Promise<void> {
  cleanupPromise ??= (async () => {
    await stopAllTargets(5_000).catch(() => undefined);
    if (state.adminUrl && state.database) {
      if (state.keepDb) {
        log(`kept database ${state.database} (--keep-db): drop database ${state.database};`);
      } else {
        try {
          await dropDatabase(state.adminUrl, state.database);
          log(`dropped database ${state.database}`);
        } catch (err) {
          log(`could not drop database ${state.database}: ${(err as Error).message}`);
          return;
        }
      }
      state.database = undefined;
    }
    if (state.workDir) removeDir(state.workDir);
  })();
  return cleanupPromise;
}

process.once('exit', () => {
  killAllTargetsNow();
  if (state.database && !state.keepDb) {
    process.stderr.write(
      `bench:data: database ${state.database} may be left behind: drop database ${state.database};\n`,
    );
  }
});

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping the service and dropping the database`);
    void cleanup().finally(() => process.exit(code));
  });
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2), process.env);
  const adminUrl = process.env.DATABASE_URL?.trim();
  if (!adminUrl) {
    throw new UsageError(
      'DATABASE_URL is not set. This benchmark runs on Postgres only (the embedded engine is ' +
        'not what it measures): set DATABASE_URL to a server where the user may create ' +
        'databases, e.g.\n  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run bench:data',
    );
  }
  if (!/^postgres(ql)?:\/\//.test(adminUrl)) {
    throw new UsageError('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  state.keepDb = options.keepDb;
  const rows = options.rows;
  const startedAt = new Date();
  const loadBefore = loadavg();

  const useDist = prepareServiceBuild(options, log);

  // A database of its own: the service always migrates `public`, so a schema would not do.
  const database = newDatabaseName();
  const url = databaseUrlFor(adminUrl, database);
  state.adminUrl = adminUrl;
  await createDatabase(adminUrl, database);
  state.database = database;
  log(`created database ${database} on ${redactUrl(adminUrl)}`);
  const serverVersion = (
    await query<{ v: string }>(url, "select current_setting('server_version') as v")
  )[0]?.v;

  const workDir = mkdtempSync(join(tmpdir(), 'custodian-bench-data-'));
  state.workDir = workDir;
  const service: Target = await startService({
    workDir,
    useDist,
    databaseUrl: url,
    ...(options.profileDir ? { profileDir: options.profileDir } : {}),
    // Its own database, so the default schema, whatever the caller's shell says.
    env: {
      ...(options.requestTimeoutMs === undefined
        ? {}
        : { IMPORT_BODY_TIMEOUT_MS: String(options.requestTimeoutMs) }),
      DATABASE_SCHEMA: 'public',
      ...(options.serviceNodeOptions ? { NODE_OPTIONS: options.serviceNodeOptions } : {}),
    },
  });
  state.serviceLog = service.logFile;
  const baseUrl = service.baseUrl;
  log(`service: ${service.command} (pid ${service.pid}) at ${baseUrl}, migrated ${database}`);

  const password = 'copper lantern drifts over quiet glaciers';
  const importer = await signUp(baseUrl, 'Northwind Trading', 'owner-a@example.com', password);
  const tokenA = await logIn(baseUrl, importer);
  const purposeA = await createPurpose(baseUrl, tokenA, PURPOSE_KEY, NOTICE_VERSION);

  // -------------------------------------------------------------------------------------------
  // COPY baseline: the same rows, same account and purpose, into empty structural copies of
  // `contacts` and `consent_events` (same columns, checks, indexes and foreign keys), so that
  // both loads start from empty tables and neither meets the other's rows. Dropped afterwards.
  await copyTableStructure(url, 'contacts', COPY_TABLES.contacts);
  await copyTableStructure(url, 'consent_events', COPY_TABLES.consentEvents, {
    contacts: COPY_TABLES.contacts,
  });
  const checkpointed = await checkpoint(url);
  log(`COPY ${int(rows)} rows into ${COPY_TABLES.contacts}...`);
  const copyContacts = await copyRows(
    url,
    COPY_TABLES.contacts,
    CONTACT_COPY_COLUMNS,
    chunked(rows, (n) => contactCopyLine(n, importer.accountId)),
  );
  log(
    `COPY contacts: ${int(copyContacts.rows)} rows in ${(copyContacts.ms / 1000).toFixed(1)} s, ` +
      `${int(copyContacts.rows / (copyContacts.ms / 1000))} rows/s`,
  );
  const copyConsents = await copyRows(
    url,
    COPY_TABLES.consentEvents,
    CONSENT_COPY_COLUMNS,
    chunked(rows, (n) => consentCopyLine(n, importer.accountId, purposeA, importer.userId)),
  );
  log(
    `COPY consent_events: ${int(copyConsents.rows)} rows in ${(copyConsents.ms / 1000).toFixed(1)} s`,
  );
  if (copyContacts.rows !== rows || copyConsents.rows !== rows) {
    throw new Error(`COPY loaded ${copyContacts.rows}/${copyConsents.rows} rows, not ${rows}`);
  }
  const copySizes = await tableStats(url, [COPY_TABLES.contacts, COPY_TABLES.consentEvents]);
  await query(url, `drop table ${COPY_TABLES.consentEvents}, ${COPY_TABLES.contacts}`);
  await checkpoint(url);

  // Statistics as production's autovacuum would keep them (see emulateAutoanalyze).
  const autovacuum = await autovacuumEnabled(url);
  const emulation =
    !autovacuum && options.analyze
      ? emulateAutoanalyze(url, Object.values(COPY_TABLES), log)
      : undefined;
  if (emulation) {
    log('the server runs with autovacuum = off: emulating its ANALYZE (see --no-analyze)');
    await emulation.start();
  } else if (!autovacuum) {
    log('WARNING: autovacuum = off and --no-analyze: the planner keeps empty-table statistics');
  }

  // -------------------------------------------------------------------------------------------
  // The import through the API, with the service's memory watched.
  log(`POST /v1/contact-imports: ${int(rows)} NDJSON rows, streamed (account A)...`);
  const before = procMemory(service.pid);
  const cpuBefore = cpuTimeMs(service.pid);
  const rss = sampleRss(service.pid);
  const importStarted = Date.now();
  const progress = setInterval(() => {
    void runningImport(baseUrl, tokenA).then((job) => {
      const seconds = (Date.now() - importStarted) / 1000;
      const processed = job?.counts.processed ?? 0;
      log(
        `  ${seconds.toFixed(0)} s: ${int(processed)} rows committed (${int(processed / seconds)} rows/s), ` +
          `RSS ${mb(procMemory(service.pid)?.rssKb ?? 0).toFixed(0)} MB, peak ${mb(rss.peakKb).toFixed(0)} MB`,
      );
    });
  }, 15_000);
  let imported: ImportResult;
  try {
    imported = await streamImport(
      baseUrl,
      tokenA,
      chunked(rows, ndjsonLine),
      `bench-data-${database}`,
    );
  } finally {
    clearInterval(progress);
  }
  const memory = rss.stop();
  const after = procMemory(service.pid);
  const cpuAfter = cpuTimeMs(service.pid);
  if (imported.status !== 201 || !imported.job) {
    throw new Error(
      `the import answered ${imported.status} after ${(imported.ms / 1000).toFixed(1)} s: ` +
        `${imported.text.slice(0, 500)}`,
    );
  }
  const job = imported.job;
  const importRowsPerSecond = rows / (imported.ms / 1000);
  log(
    `import: ${job.status}, ${int(job.counts.created)} created, ${int(job.counts.rejected)} ` +
      `rejected in ${(imported.ms / 1000).toFixed(1)} s, ${int(importRowsPerSecond)} rows/s`,
  );
  const [counted] = await query<{ contacts: string; events: string }>(
    url,
    `select (select count(*) from contacts where account_id = $1) as contacts,
            (select count(*) from consent_events where account_id = $1) as events`,
    [importer.accountId],
  );
  const importedContacts = Number(counted?.contacts);
  const importedEvents = Number(counted?.events);
  const importComplete =
    job.status === 'completed' &&
    job.counts.created === rows &&
    job.counts.rejected === 0 &&
    importedContacts === rows &&
    importedEvents === rows;
  if (!importComplete) {
    log(
      `WARNING: the import did not write every row (job ${JSON.stringify(job.counts)}, ` +
        `${importedContacts} contacts, ${importedEvents} consent events in the database)`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // The audience over the imported contacts, page after page; autovacuum would have caught up
  // with the import within a naptime, so one more pass of the emulation first.
  await emulation?.tickNow();
  const analyzeRuns = (await emulation?.stop()) ?? [];
  const statsBeforeAudience = await tableStats(url, ['contacts', 'consent_events']);
  const tokenAudience = await logIn(baseUrl, importer); // the import may outlive a token
  const totalPages = Math.ceil(rows / options.pageSize);
  log(
    `audience: walking ${int(Math.min(totalPages, options.audiencePages))} pages of ${options.pageSize}...`,
  );
  const walk = await walkAudience(baseUrl, tokenAudience, purposeA, {
    limit: options.pageSize,
    maxPages: options.audiencePages,
    onPage: (page, n) => {
      if (n === 1 || n % 100 === 0) log(`  page ${n}: ${page.ms.toFixed(1)} ms`);
    },
  });
  const latencies = walk.pages.map((p) => p.ms).sort((a, b) => a - b);
  const audience = {
    pageSize: options.pageSize,
    pages: walk.pages.length,
    rows: walk.rows,
    complete: walk.complete,
    firstPageMs: walk.pages[0]?.ms ?? Number.NaN,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    meanMs: latencies.reduce((sum, v) => sum + v, 0) / Math.max(1, latencies.length),
    /** The slowest pages, slowest first: where the p99 comes from. */
    slowest: walk.pages
      .map((page, index) => ({ page: index + 1, ms: round1(page.ms) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 20),
    /** Every page's latency in walk order (ms). */
    pagesMs: walk.pages.map((page) => round1(page.ms)),
  };
  // EXPLAIN a deep page, 90% of the way through the walk, and the slowest page of the walk.
  const explainPage = async (index: number) => ({
    page: index + 1,
    clientMs: walk.pages[index]?.ms ?? Number.NaN,
    afterContactId: walk.pages[index]?.afterContactId ?? null,
    ...(await explainAudience(
      url,
      importer.accountId,
      purposeA,
      options.pageSize,
      walk.pages[index]?.afterContactId ?? undefined,
    )),
  });
  const explain = await explainPage(Math.max(0, Math.floor(walk.pages.length * 0.9) - 1));
  const slowestIndex = (audience.slowest[0]?.page ?? 1) - 1;
  const explainSlowest =
    slowestIndex + 1 === explain.page ? explain : await explainPage(slowestIndex);
  const sizes = await tableStats(url, ['contacts', 'consent_events']);

  await stopAllTargets();
  const serviceLogBytes = fileSize(service.logFile);
  const finishedAt = new Date();

  // -------------------------------------------------------------------------------------------
  // Report
  const copyContactsRate = rows / (copyContacts.ms / 1000);
  const copyBothRate = rows / ((copyContacts.ms + copyConsents.ms) / 1000);
  const ratio = importRowsPerSecond / copyContactsRate;
  const ratioBoth = importRowsPerSecond / copyBothRate;
  const peakKb = Math.max(after?.hwmKb ?? 0, memory.peakKb);
  const passes = {
    copyRatio: ratio >= TARGETS.minCopyRatio,
    peakRss: mb(peakKb) < TARGETS.maxPeakRssMb,
    audienceP99: audience.p99Ms < TARGETS.maxAudienceP99Ms,
    importComplete,
    audienceComplete: walk.complete
      ? walk.rows === rows
      : walk.rows === walk.pages.length * options.pageSize,
  };

  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    machine: { ...machineReport(loadBefore), postgres: serverVersion },
    options,
    database,
    statistics: { autovacuum, emulatedAnalyze: emulation !== undefined, analyzeRuns },
    service: { command: service.command, logBytes: serviceLogBytes },
    targets: TARGETS,
    copy: {
      how:
        'COPY ... FROM STDIN (text format, pg-copy-streams) into empty structural copies of ' +
        'contacts and consent_events (LIKE ... INCLUDING ALL plus their foreign keys), same ' +
        'account, same rows, before the API import',
      tables: copySizes,
      checkpointBetweenPhases: checkpointed,
      contacts: { ...copyContacts, rowsPerSecond: copyContactsRate, columns: CONTACT_COPY_COLUMNS },
      consentEvents: {
        ...copyConsents,
        rowsPerSecond: rows / (copyConsents.ms / 1000),
        columns: CONSENT_COPY_COLUMNS,
      },
      contactsAndConsentEventsRowsPerSecond: copyBothRate,
    },
    import: {
      ms: imported.ms,
      rowsPerSecond: importRowsPerSecond,
      bytesSent: imported.bytesSent,
      job,
      contactsInDatabase: importedContacts,
      consentEventsInDatabase: importedEvents,
      serverCpuMs:
        cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
      memory: {
        rssBeforeMb: before ? mb(before.rssKb) : undefined,
        rssAfterMb: after ? mb(after.rssKb) : undefined,
        sampledPeakRssMb: mb(memory.peakKb),
        vmHwmMb: after ? mb(after.hwmKb) : undefined,
        peakMb: mb(peakKb),
        seriesMb: memory.series,
      },
    },
    ratios: { apiOverCopyContacts: ratio, apiOverCopyContactsAndConsentEvents: ratioBoth },
    audience,
    explain: { deepPage: explain, slowestPage: explainSlowest },
    tables: { beforeAudience: statsBeforeAudience, atEnd: sizes },
    passes,
  };
  const resultsDir = join(REPO_ROOT, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const jsonFile = join(resultsDir, 'data-latest.json');
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);

  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const table = [
    '| measure | value | target | result |',
    '| --- | ---: | --- | --- |',
    `| import through the API: \`POST /v1/contact-imports\`, NDJSON streamed (contacts + consent events) | ${int(importRowsPerSecond)} rows/s (${seconds(imported.ms)}) | | |`,
    `| raw \`COPY\` into a copy of \`contacts\` (same rows, empty table) | ${int(copyContactsRate)} rows/s (${seconds(copyContacts.ms)}) | | |`,
    `| **API / COPY \`contacts\`** | **${ratio.toFixed(2)}** | >= ${TARGETS.minCopyRatio} | ${verdict(passes.copyRatio)} |`,
    `| raw \`COPY\` into \`contacts\` then \`consent_events\` (what the API writes) | ${int(copyBothRate)} rows/s (${seconds(copyContacts.ms + copyConsents.ms)}) | | |`,
    `| API / COPY \`contacts\` + \`consent_events\` | ${ratioBoth.toFixed(2)} | (for information) | |`,
    `| **service peak RSS during the import** (VmHWM; sampled every 150 ms: ${mb(memory.peakKb).toFixed(0)} MB; before: ${before ? mb(before.rssKb).toFixed(0) : '?'} MB) | **${mb(peakKb).toFixed(0)} MB** | < ${TARGETS.maxPeakRssMb} MB | ${verdict(passes.peakRss)} |`,
    `| audience p50 (\`GET /v1/purposes/{id}/audience?limit=${options.pageSize}\`, ${int(audience.pages)} pages, ${int(audience.rows)} contacts) | ${audience.p50Ms.toFixed(1)} ms | | |`,
    `| **audience p99** | **${audience.p99Ms.toFixed(1)} ms** | < ${TARGETS.maxAudienceP99Ms} ms | ${verdict(passes.audienceP99)} |`,
    `| audience first page / max / mean | ${audience.firstPageMs.toFixed(1)} / ${audience.maxMs.toFixed(1)} / ${audience.meanMs.toFixed(1)} ms | | |`,
    ...[explain, explainSlowest].map(
      (e, i) =>
        `| EXPLAIN ANALYZE of the audience query, ${i === 0 ? 'deep' : 'slowest'} page ${e.page} (client: ${e.clientMs.toFixed(1)} ms) | ${e.executionMs?.toFixed(1) ?? '?'} ms execution (+${e.planningMs?.toFixed(1) ?? '?'} ms planning) | | |`,
    ),
  ];
  const out = [
    '',
    `## Custodian data benchmark — ${startedAt.toISOString()}`,
    '',
    `${int(rows)} contacts; Postgres ${serverVersion} (throw-away database ${database}); ` +
      `${process.version}, ${cpus().length} CPUs, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}.`,
    `- service: \`${service.command}\`, IMPORT_BODY_TIMEOUT_MS=${options.requestTimeoutMs ?? 'default'}` +
      (options.serviceNodeOptions ? `, NODE_OPTIONS=${options.serviceNodeOptions}` : ''),
    `- COPY baseline: \`COPY ... FROM STDIN\` (text, pg-copy-streams) of the same rows into empty ` +
      'copies of `contacts` and `consent_events` (`LIKE ... INCLUDING ALL` plus their foreign ' +
      `keys: same indexes and checks), before the API import` +
      (checkpointed ? ', with a CHECKPOINT before each phase.' : '.'),
    `- Statistics: autovacuum is ${autovacuum ? 'on' : 'off'} on this server` +
      (emulation
        ? `; its ANALYZE was emulated (every naptime, default thresholds): ${analyzeRuns.length} ` +
          `runs${analyzeRuns.length ? ` (${analyzeRuns.map((r) => `${r.table} at ${r.at.toFixed(0)} s`).join(', ')})` : ''}.`
        : autovacuum
          ? '.'
          : ' and was not emulated (--no-analyze): plans are those of empty tables.'),
    '- The API writes a contact and its consent event per row (plus job and audit rows); COPY ' +
      '`contacts` alone is the strict baseline, COPY of both tables the like-for-like one.',
    '',
    ...table,
    '',
    `Import job: ${job.status}, counts ${JSON.stringify(job.counts)}; in the database ` +
      `${int(importedContacts)} contacts and ${int(importedEvents)} consent events of account A.` +
      (importComplete ? '' : ' **INCOMPLETE**'),
    `Service CPU during the import: ${
      report.import.serverCpuMs === undefined ? '?' : seconds(report.import.serverCpuMs)
    } (${
      report.import.serverCpuMs === undefined
        ? '?'
        : ((report.import.serverCpuMs / imported.ms) * 100).toFixed(0)
    }% of one core).`,
    `Audience walk: ${audience.complete ? 'complete' : 'stopped early'}, ${int(audience.rows)} rows, p90 ${audience.p90Ms.toFixed(1)} ms.`,
    `Tables at the end: ${sizes.map((t) => `${t.table} ${int(t.rows)} rows, ${int(t.totalBytes / 1048576)} MB with indexes, analysed ${t.lastAnalyze ?? 'never'}`).join('; ')}.`,
    '',
    `Slowest audience pages (page: ms): ${audience.slowest.map((p) => `${p.page}: ${p.ms}`).join(', ')}.`,
    '',
    ...[explain, explainSlowest].flatMap((e, i) => [
      `EXPLAIN (ANALYZE, BUFFERS), ${i === 0 ? 'deep' : 'slowest'} audience page ${e.page} ` +
        `(after contact ${e.afterContactId ?? '—'}); indexes used: ${e.indexes.join(', ') || 'none'}` +
        `${e.seqScan ? '; has a Seq Scan' : ''}${e.sort ? '; has a Sort' : ''}:`,
      '',
      '```',
      ...e.plan,
      '```',
      '',
    ]),
    `JSON: ${relative(process.cwd(), jsonFile)}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);

  const failed = Object.values(passes).some((pass) => !pass);
  if (failed) log('some targets were missed (see the table)');
  return options.check && failed ? 1 : 0;
}

main().then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (err: unknown) => {
    if (interrupted) {
      await cleanup();
      return;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`bench:data: ${err.message}\n\n${HELP}`);
      await cleanup();
      process.exit(2);
    }
    process.stderr.write(`bench:data failed: ${(err as Error).stack ?? String(err)}\n`);
    const tail = serviceLogTail();
    if (tail) process.stderr.write(`${tail}\n`);
    await cleanup();
    process.exit(1);
  },
);
