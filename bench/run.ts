import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  fire,
  type LoadOptions,
  median,
  type PreparedScenario,
  prepareScenario,
  type Sample,
} from './measure.js';
import {
  analyseProfile,
  formatBreakdown,
  formatComparison,
  profileFiles,
  type TimeWindow,
} from './profile-summary.js';
import { type Scenario, scenarios, selectScenarios, type TargetName } from './scenarios.js';
import {
  fileSize,
  killAllTargetsNow,
  machineReport,
  prepareServiceBuild,
  REPO_ROOT,
  removeDir,
  startBare,
  startService,
  stopAllTargets,
  type Target,
} from './targets.js';

/**
 * `npm run bench`: the real service and a bare Fastify, each in its own process, loaded by
 * autocannon in alternation (round after round, every scenario once per round, the order
 * reversed every other round) so that the noise of a shared machine hits both alike. Reports
 * medians over rounds, the requests/s ratio of each scenario to its baseline, and the CPU time
 * the target spent per request.
 */

const HELP = `usage: npm run bench -- [options]

  --rounds N         measured rounds (BENCH_ROUNDS, default 5)
  --duration S       seconds per measured run (BENCH_DURATION, default 5)
  --warmup S         seconds of unmeasured load before each run (BENCH_WARMUP, default 2)
  --connections N    concurrent connections (BENCH_CONNECTIONS, default 10)
  --pipelining N     requests in flight per connection (BENCH_PIPELINING, default 1)
  --only TEXT        only scenarios whose name contains TEXT (repeatable; BENCH_ONLY, comma-separated)
  --no-build         do not run \`npm run build\` first (BENCH_BUILD=0; use dist/ as is)
  --tsx              run the service from src/ through tsx instead of dist/
  --profile          run the targets under --cpu-prof and summarise where the time went
                     (the profiler slows them: do not compare those numbers with others)
  --check            exit 1 when a scenario misses its minimum ratio
  --keep-temp        keep the scratch folder (data, service log) for inspection
  --against DIR      A/B: also run the service from DIR (another checkout, e.g. a git worktree
                     of the commit before a change; built there first unless --no-build) and
                     load both in alternation, reporting each scenario's ratio to its twin
  --postgres URL     run the service (and --against's) on Postgres: a fresh database each on
                     that server (BENCH_POSTGRES), dropped afterwards; embedded otherwise
  --data             then run the data benchmark on Postgres (bench/data.ts, needs DATABASE_URL;
                     its options: npm run bench:data -- --help; rows from BENCH_DATA_ROWS)
`;

interface Options extends LoadOptions {
  rounds: number;
  durationSeconds: number;
  warmupSeconds: number;
  only: string[];
  build: boolean;
  tsx: boolean;
  profile: boolean;
  check: boolean;
  keepTemp: boolean;
  data: boolean;
  /** Another checkout to compare the service with, scenario by scenario. */
  against?: string;
  /** A Postgres server to run the service targets on (a fresh database each). */
  postgres?: string;
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      pipelining: { type: 'string' },
      only: { type: 'string', multiple: true },
      'no-build': { type: 'boolean' },
      tsx: { type: 'boolean' },
      profile: { type: 'boolean' },
      check: { type: 'boolean' },
      'keep-temp': { type: 'boolean' },
      data: { type: 'boolean' },
      against: { type: 'string' },
      postgres: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const number = (name: string, arg: string | undefined, fallback: number, min: number) => {
    const raw = arg ?? env[`BENCH_${name.toUpperCase()}`];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < min) {
      throw new Error(`--${name} must be a number >= ${min}, got "${raw}"`);
    }
    return value;
  };
  return {
    rounds: Math.round(number('rounds', values.rounds, 5, 1)),
    durationSeconds: number('duration', values.duration, 5, 1),
    warmupSeconds: number('warmup', values.warmup, 2, 0),
    connections: Math.round(number('connections', values.connections, 10, 1)),
    pipelining: Math.round(number('pipelining', values.pipelining, 1, 1)),
    only:
      values.only ??
      (env.BENCH_ONLY ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    build: !values['no-build'] && !values.tsx && env.BENCH_BUILD !== '0',
    tsx: values.tsx ?? false,
    profile: values.profile ?? false,
    check: values.check ?? false,
    keepTemp: values['keep-temp'] ?? false,
    data: values.data ?? false,
    ...(values.against ? { against: resolve(values.against) } : {}),
    ...((values.postgres ?? env.BENCH_POSTGRES)
      ? { postgres: (values.postgres ?? env.BENCH_POSTGRES) as string }
      : {}),
  };
}

interface ScenarioResult {
  name: string;
  target: TargetName;
  method: string;
  path: string;
  samples: Sample[];
  median: {
    requestsPerSecond: number;
    latencyP50Ms: number;
    latencyP99Ms: number;
    cpuMicrosPerRequest?: number;
  };
  minRequestsPerSecond: number;
  maxRequestsPerSecond: number;
  failures: number;
  baseline?: string;
  /** Median requests/s of this scenario divided by the baseline's. */
  ratio?: number;
  /** The baseline's median CPU time per request divided by this one's (same sense as `ratio`). */
  cpuRatio?: number;
  minRatio?: number;
  pass?: boolean;
}

function summarise(scenario: Scenario, samples: Sample[]): ScenarioResult {
  const rps = samples.map((s) => s.requestsPerSecond);
  const cpu = samples.flatMap((s) =>
    s.cpuMicrosPerRequest === undefined ? [] : [s.cpuMicrosPerRequest],
  );
  return {
    name: scenario.name,
    target: scenario.target,
    method: scenario.method,
    path: scenario.path,
    samples,
    median: {
      requestsPerSecond: median(rps),
      latencyP50Ms: median(samples.map((s) => s.latencyP50Ms)),
      latencyP99Ms: median(samples.map((s) => s.latencyP99Ms)),
      ...(cpu.length === samples.length ? { cpuMicrosPerRequest: median(cpu) } : {}),
    },
    minRequestsPerSecond: Math.min(...rps),
    maxRequestsPerSecond: Math.max(...rps),
    failures: samples.reduce((sum, s) => sum + s.failures, 0),
  };
}

function compareWithBaselines(results: ScenarioResult[], selected: Scenario[]): void {
  const byName = new Map(results.map((r) => [r.name, r]));
  for (const scenario of selected) {
    const result = byName.get(scenario.name);
    const baseline = scenario.baseline ? byName.get(scenario.baseline) : undefined;
    if (!result || !baseline) continue;
    result.baseline = baseline.name;
    result.ratio = result.median.requestsPerSecond / baseline.median.requestsPerSecond;
    const cpu = result.median.cpuMicrosPerRequest;
    const baselineCpu = baseline.median.cpuMicrosPerRequest;
    if (cpu && baselineCpu) result.cpuRatio = baselineCpu / cpu;
    if (scenario.minRatio !== undefined) {
      result.minRatio = scenario.minRatio;
      result.pass = result.ratio >= scenario.minRatio;
    }
  }
}

const TWIN_SUFFIX = ' @before';

/**
 * For an A/B run: every service scenario gets a twin fired at the `before` target, placed right
 * after it so the two always run next to each other in time. Twins have no baseline of their
 * own; they are compared with their original in `compareWithTwins`.
 */
function withTwins(selected: Scenario[]): Scenario[] {
  return selected.flatMap((scenario) => {
    if (scenario.target !== 'service') return [scenario];
    const twin: Scenario = { ...scenario, name: scenario.name + TWIN_SUFFIX, target: 'before' };
    delete twin.baseline;
    delete twin.minRatio;
    return [scenario, twin];
  });
}

interface AbRow {
  name: string;
  requestsPerSecond: number;
  beforeRequestsPerSecond: number;
  /** Median of this tree's requests/s over the twin's. */
  ratio: number;
  /** Median over rounds of the per-round ratio (each round's pair ran back to back). */
  pairedRatio: number;
  cpuMicrosPerRequest?: number;
  beforeCpuMicrosPerRequest?: number;
}

function compareWithTwins(results: ScenarioResult[]): AbRow[] {
  const byName = new Map(results.map((r) => [r.name, r]));
  const rows: AbRow[] = [];
  for (const result of results) {
    const twin = byName.get(result.name + TWIN_SUFFIX);
    if (!twin) continue;
    const paired = result.samples.map(
      (sample, i) => sample.requestsPerSecond / (twin.samples[i]?.requestsPerSecond ?? Number.NaN),
    );
    rows.push({
      name: result.name,
      requestsPerSecond: result.median.requestsPerSecond,
      beforeRequestsPerSecond: twin.median.requestsPerSecond,
      ratio: result.median.requestsPerSecond / twin.median.requestsPerSecond,
      pairedRatio: median(paired),
      ...(result.median.cpuMicrosPerRequest === undefined
        ? {}
        : { cpuMicrosPerRequest: result.median.cpuMicrosPerRequest }),
      ...(twin.median.cpuMicrosPerRequest === undefined
        ? {}
        : { beforeCpuMicrosPerRequest: twin.median.cpuMicrosPerRequest }),
    });
  }
  return rows;
}

function abTable(rows: AbRow[]): string {
  const cpu = (n: number | undefined) => (n === undefined ? '—' : n.toFixed(0));
  return [
    '| scenario | req/s now | req/s before | now / before (medians) | median of paired rounds | CPU µs/req now | before |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${int(r.requestsPerSecond)} | ${int(r.beforeRequestsPerSecond)} | ` +
        `**${r.ratio.toFixed(3)}** | ${r.pairedRatio.toFixed(3)} | ${cpu(r.cpuMicrosPerRequest)} | ` +
        `${cpu(r.beforeCpuMicrosPerRequest)} |`,
    ),
  ].join('\n');
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(2);

function markdownTable(results: ScenarioResult[]): string {
  const rows = results.map((r) => {
    const cpu = r.median.cpuMicrosPerRequest;
    const vs =
      r.ratio === undefined
        ? '—'
        : `**${r.ratio.toFixed(2)}** of ${r.baseline}` +
          (r.minRatio === undefined ? '' : ` (min ${r.minRatio}: ${r.pass ? 'PASS' : 'FAIL'})`);
    const cells = [
      r.name,
      `${r.method} ${r.path}`,
      int(r.median.requestsPerSecond),
      `${int(r.minRequestsPerSecond)}–${int(r.maxRequestsPerSecond)}`,
      ms(r.median.latencyP50Ms),
      ms(r.median.latencyP99Ms),
      cpu === undefined ? '—' : cpu.toFixed(0),
      String(r.failures),
      vs,
    ];
    return `| ${cells.join(' | ')} |`;
  });
  return [
    '| scenario | request | req/s (median) | req/s (min–max) | p50 ms | p99 ms | CPU µs/req | failed | req/s ratio (medians) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ].join('\n');
}

/** Median time of one argon2id hash with the service's parameters, measured in this process. */
async function argon2Cost(): Promise<string> {
  const { hashPassword, ARGON2_OPTIONS } = await import('../src/modules/identity/password.js');
  const times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const started = process.hrtime.bigint();
    await hashPassword('staple orbit lantern quietly');
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  return (
    `argon2id (m=${ARGON2_OPTIONS.memoryCost} KiB, t=${ARGON2_OPTIONS.timeCost}, p=${ARGON2_OPTIONS.parallelism}): ` +
    `median ${median.toFixed(1)} ms per hash over 15 (min ${times[0]!.toFixed(1)} ms), ` +
    `i.e. at most ~${Math.floor(1000 / median)} hashes/s per core`
  );
}

const scratchDatabases: { admin: string; name: string }[] = [];

/** A fresh database on the server of `adminUrl`, dropped by {@link dropScratchDatabases}. */
async function scratchDatabase(adminUrl: string, label: string): Promise<string> {
  const name = `custodian_bench_${process.pid}_${label}`;
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${name} with (force)`);
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  scratchDatabases.push({ admin: adminUrl, name });
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function dropScratchDatabases(): Promise<void> {
  for (const { admin, name } of scratchDatabases.splice(0)) {
    const client = new pg.Client({ connectionString: admin });
    await client.connect();
    await client.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await client.end();
  }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2), process.env);
  const chosen = selectScenarios(scenarios, options.only);
  if (chosen.length === 0) throw new Error(`no scenario matches ${options.only.join(', ')}`);
  const selected = options.against ? withTwins(chosen) : chosen;
  if (options.data && !process.env.DATABASE_URL) {
    throw new Error(
      '--data needs DATABASE_URL (a Postgres server): see npm run bench:data -- --help',
    );
  }
  const load: LoadOptions = { connections: options.connections, pipelining: options.pipelining };

  const workDir = mkdtempSync(join(tmpdir(), 'custodian-bench-'));
  process.once('exit', () => {
    killAllTargetsNow();
    if (!options.keepTemp) removeDir(workDir);
  });
  const resultsDir = join(REPO_ROOT, 'bench/results');
  const profileDir = options.profile ? join(resultsDir, 'profiles', stamp()) : undefined;

  const needed = new Set(selected.map((s) => s.target));
  const useDist = needed.has('service') && prepareServiceBuild(options, log);

  const startOptions = { workDir, useDist, ...(profileDir ? { profileDir } : {}) };
  // On Postgres each service target gets a database of its own, made here and dropped at exit.
  const databaseFor = async (name: string) =>
    options.postgres ? { databaseUrl: await scratchDatabase(options.postgres, name) } : {};
  const targets = new Map<TargetName, Target>();
  // One after the other, so the service's migrations do not compete with the bare start-up.
  if (needed.has('bare')) targets.set('bare', await startBare(startOptions));
  if (needed.has('service')) {
    targets.set('service', await startService({ ...startOptions, ...(await databaseFor('a')) }));
  }
  if (options.against) {
    const root = options.against;
    const beforeDist = prepareServiceBuild(options, log, root);
    targets.set(
      'before',
      await startService({
        ...startOptions,
        useDist: beforeDist,
        root,
        name: 'before',
        ...(await databaseFor('b')),
      }),
    );
  }
  if (options.postgres)
    log(`engine: Postgres (${new URL(options.postgres).host}), a database per target`);
  for (const t of targets.values()) log(`${t.name}: ${t.command} (pid ${t.pid}) at ${t.baseUrl}`);

  const prepared: PreparedScenario[] = [];
  for (const scenario of selected) {
    prepared.push(await prepareScenario(scenario, targets.get(scenario.target)!.baseUrl));
  }

  const perRun = options.warmupSeconds + options.durationSeconds;
  log(
    `${selected.length} scenarios x ${options.rounds} rounds x (${options.warmupSeconds} s warm-up + ` +
      `${options.durationSeconds} s), ${load.connections} connections, pipelining ` +
      `${load.pipelining}: about ${Math.ceil((selected.length * options.rounds * perRun) / 60)} min`,
  );
  const startedAt = new Date();
  const loadBefore = loadavg();
  const window = { startUs: nowUs(), endUs: 0 };
  const samples = new Map<string, Sample[]>(prepared.map((p) => [p.scenario.name, []]));
  // When each scenario's measured runs took place, to split the profiles by scenario.
  const windows = new Map<string, TimeWindow[]>(prepared.map((p) => [p.scenario.name, []]));
  for (let round = 1; round <= options.rounds; round++) {
    // Reversed every other round, so no scenario always runs first (or right after another).
    const order = round % 2 === 1 ? prepared : [...prepared].reverse();
    for (const p of order) {
      const pid = targets.get(p.scenario.target)!.pid;
      if (options.warmupSeconds > 0) await fire(p, pid, options.warmupSeconds, load, 0);
      const startUs = nowUs();
      const sample = await fire(p, pid, options.durationSeconds, load, round);
      windows.get(p.scenario.name)!.push({ startUs, endUs: nowUs() });
      samples.get(p.scenario.name)!.push(sample);
      log(
        `round ${round}/${options.rounds}  ${p.scenario.name.padEnd(24)} ${int(sample.requestsPerSecond).padStart(7)} req/s` +
          `  p50 ${ms(sample.latencyP50Ms)} ms  p99 ${ms(sample.latencyP99Ms)} ms` +
          (sample.cpuMicrosPerRequest === undefined
            ? ''
            : `  ${sample.cpuMicrosPerRequest.toFixed(0)} µs CPU/req`) +
          `  (client ${sample.clientCpuMicrosPerRequest.toFixed(0)} µs)` +
          (sample.failures ? `  ${sample.failures} FAILED` : ''),
      );
    }
  }
  const finishedAt = new Date();
  window.endUs = nowUs();

  // Graceful stop: the service drains and exits 0, which is when profiles are written.
  await stopAllTargets();
  await dropScratchDatabases();
  const serviceLogBytes = fileSize(targets.get('service')?.logFile);

  const results = prepared.map((p) => summarise(p.scenario, samples.get(p.scenario.name)!));
  compareWithBaselines(results, selected);
  const abRows = options.against ? compareWithTwins(results) : [];

  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    machine: machineReport(loadBefore),
    options: {
      rounds: options.rounds,
      durationSeconds: options.durationSeconds,
      warmupSeconds: options.warmupSeconds,
      connections: options.connections,
      pipelining: options.pipelining,
      profiled: options.profile,
    },
    targets: Object.fromEntries([...targets.values()].map((t) => [t.name, { command: t.command }])),
    serviceLogBytes,
    scenarios: results,
    ...(options.against ? { against: options.against, ab: abRows } : {}),
  };
  mkdirSync(resultsDir, { recursive: true });
  const jsonFile = join(resultsDir, 'latest.json');
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);

  const out: string[] = [
    '',
    `## Custodian benchmark — ${startedAt.toISOString()}`,
    '',
    `${process.version}, ${cpus().length} CPUs, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; ` +
      `${options.rounds} rounds x ${options.durationSeconds} s (+${options.warmupSeconds} s warm-up), ` +
      `${options.connections} connections, pipelining ${options.pipelining}; medians over rounds.`,
    ...[...targets.values()].map((t) => `- ${t.name}: \`${t.command}\``),
    options.profile
      ? '\n**Profiled run: the profiler slows the targets; numbers are not comparable.**'
      : '',
    '',
    markdownTable(results),
    '',
    'Ratios:',
  ];
  for (const r of results) {
    if (r.ratio === undefined) continue;
    const verdict =
      r.minRatio === undefined ? '' : ` (target >= ${r.minRatio}: ${r.pass ? 'PASS' : 'FAIL'})`;
    const cpu =
      r.cpuRatio === undefined ? '' : `; by CPU time per request ${r.cpuRatio.toFixed(2)}`;
    out.push(`- ${r.name} / ${r.baseline}: req/s ${r.ratio.toFixed(2)}${verdict}${cpu}`);
  }
  if (abRows.length > 0) {
    out.push(
      '',
      `A/B: this tree against ${options.against} (each round runs both, side by side):`,
      '',
      abTable(abRows),
    );
  }
  out.push('', await argon2Cost());
  out.push(`\nJSON: ${relative(process.cwd(), jsonFile)}`);
  if (options.keepTemp) out.push(`scratch (data, service log): ${workDir}`);
  process.stdout.write(`${out.join('\n')}\n`);

  if (profileDir) {
    process.stdout.write(`\n## CPU profiles (${relative(process.cwd(), profileDir)})\n\n`);
    for (const file of profileFiles([profileDir])) {
      const breakdown = analyseProfile(file, window);
      // tsx's loader thread and the like: idle under load, nothing to learn.
      if (breakdown.busyMs < 100) continue;
      process.stdout.write(`${formatBreakdown(breakdown)}\n`);
      // Each scenario of this target beside its baseline (when that ran on the same target).
      const targetName = basename(dirname(file));
      const share = (name: string) => ({
        name,
        breakdown: analyseProfile(file, windows.get(name) ?? []),
        requests: (samples.get(name) ?? []).reduce((sum, s) => sum + s.requests, 0),
      });
      for (const s of selected) {
        const base = s.baseline && selected.find((b) => b.name === s.baseline);
        if (s.target !== targetName || !base || base.target !== targetName) continue;
        process.stdout.write(`${formatComparison(share(s.name), share(base.name))}\n`);
      }
    }
  }

  const failed = results.some((r) => r.failures > 0);
  if (failed) log('some requests failed (unexpected status, error or timeout): see "failed"');
  const missed = results.some((r) => r.pass === false);
  const code = options.check && (missed || failed) ? 1 : 0;
  if (!options.data) return code;
  // The data benchmark in its own process, on the dist/ just built (or src/ through tsx).
  const dataArgs = [useDist ? '--no-build' : '--tsx', ...(options.check ? ['--check'] : [])];
  log(`data benchmark: bench/data.ts ${dataArgs.join(' ')}`);
  const dataCode = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/data.ts', ...dataArgs], {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    });
    child.on('exit', (exitCode) => resolve(exitCode ?? 1));
  });
  return code || dataCode;
}

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** The monotonic clock in µs, the one V8 stamps its profiles with. */
function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the targets`);
    void stopAllTargets(3_000).finally(() => process.exit(code));
  });
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    await stopAllTargets(3_000);
    process.exit(1);
  },
);
