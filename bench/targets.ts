import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TargetName } from './scenarios.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** A server under load, in its own process (so its event loop is its own). */
export interface Target {
  readonly name: TargetName;
  readonly baseUrl: string;
  readonly pid: number;
  /** How it was started, e.g. `node dist/src/server.js`. */
  readonly command: string;
  /** Where its stdout (the pino log) went, if kept. */
  readonly logFile?: string;
}

export interface StartOptions {
  /** Scratch folder (data dir, logs); removed by the caller. */
  workDir: string;
  /** Run the service from `dist/` (true) or from `src/` through tsx (false). */
  useDist: boolean;
  /** When set, children run with `--cpu-prof` and write their profiles here. */
  profileDir?: string;
  /** Run the service on this Postgres database (it migrates it at start) instead of embedded. */
  databaseUrl?: string;
  /** More environment for the service, applied last. */
  env?: Record<string, string>;
  /** Another checkout to run the service from (an A/B baseline); this one when unset. */
  root?: string;
  /** The target's name (defaults to `service`). */
  name?: TargetName;
}

const children = new Set<ChildProcess>();
const READY_TIMEOUT_MS = 90_000;

export type BuildOutcome = 'built' | 'emitted-with-type-errors' | 'failed';

/**
 * `npm run build`, so the service runs the JavaScript production runs. tsc still emits when
 * the type check fails (work in progress elsewhere in the tree); that JavaScript is what tsx
 * would run anyway, so it is used, with the outcome reported. Output goes to stderr.
 */
export function buildService(root = REPO_ROOT): BuildOutcome {
  const startedAt = Date.now();
  const result = spawnSync('npm', ['run', '--silent', 'build'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  const errors = output.split('\n').filter((line) => /error TS\d+/.test(line));
  if (errors.length > 0) {
    process.stderr.write(`${errors.length} type error(s), first ones:\n`);
    process.stderr.write(`${errors.slice(0, 5).join('\n')}\n`);
  } else if (result.status !== 0) {
    process.stderr.write(output.slice(-4_000));
  }
  const entry = join(root, 'dist/src/server.js');
  const fresh = existsSync(entry) && statSync(entry).mtimeMs >= startedAt - 1_000;
  if (!fresh) return 'failed';
  return result.status === 0 ? 'built' : 'emitted-with-type-errors';
}

/**
 * The real service, as production runs it but on the embedded engine with a throw-away data
 * folder (or on `databaseUrl`, a throw-away Postgres database): info-level JSON logs (written
 * to a file, so their cost is paid), and a rate limit so high that it is exercised on every
 * request but never answers 429.
 */
export async function startService(options: StartOptions): Promise<Target> {
  const port = await freePort();
  const name = options.name ?? 'service';
  const dataDir = join(options.workDir, `${name}-data`);
  const entry = options.useDist ? ['dist/src/server.js'] : ['--import', 'tsx', 'src/server.ts'];
  return startChild(name, {
    args: [...profileArgs(options, name), ...entry],
    cwd: options.root ?? REPO_ROOT,
    port,
    workDir: options.workDir,
    keepStdout: true,
    env: {
      // As production runs it (Dockerfile, npm start): V8's old space capped at 192 MB.
      NODE_OPTIONS: '--max-old-space-size=192',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
      LOG_PRETTY: 'false',
      DATA_DIR: dataDir,
      RATE_LIMIT_MAX: '1000000000',
      RATE_LIMIT_WINDOW: '1 minute',
      JWT_SECRET: randomBytes(32).toString('hex'),
      HASH_SECRET: randomBytes(32).toString('hex'),
      AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
        .privateKey.export({ type: 'pkcs8', format: 'pem' })
        .toString(),
      WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
      // The login scenario hammers one account from one address: lift the login throttles.
      LOGIN_MAX_PER_IP_PER_MINUTE: '100000000',
      LOGIN_MAX_FAILURES_PER_CLIENT: '100000000',
      // What older builds read instead (an A/B run's `before` target may be one).
      LOGIN_MAX_PER_EMAIL_PER_15_MINUTES: '100000000',
      // Embedded engine (unless asked for Postgres) and in-process rate limits, whatever the
      // caller's shell has set.
      DATABASE_URL: options.databaseUrl ?? '',
      MIGRATE_ON_START: 'true',
      REDIS_URL: '',
      TLS_CERT_FILE: '',
      TLS_KEY_FILE: '',
      PUBLIC_BASE_URL: '',
      TRUST_PROXY: '',
      ...options.env,
    },
  });
}

/** Fastify with nothing added: the ceiling the service is measured against. */
export async function startBare(options: StartOptions): Promise<Target> {
  const port = await freePort();
  return startChild('bare', {
    args: ['--import', 'tsx', ...profileArgs(options, 'bare'), 'bench/bare-server.ts'],
    port,
    workDir: options.workDir,
    keepStdout: false,
    env: { HOST: '127.0.0.1', PORT: String(port) },
  });
}

/**
 * Stops every child still running: SIGTERM (the service drains and exits 0, which is also when
 * `--cpu-prof` writes its profile), then SIGKILL after `graceMs`.
 */
export async function stopAllTargets(graceMs = 15_000): Promise<void> {
  await Promise.all(
    [...children].map(async (child) => {
      if (isRunning(child)) {
        const exited = onceExited(child);
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      children.delete(child);
    }),
  );
}

/** Last resort, from a synchronous `exit` handler: nothing may outlive the benchmark. */
export function killAllTargetsNow(): void {
  for (const child of children) if (isRunning(child)) child.kill('SIGKILL');
  children.clear();
}

function profileArgs(options: StartOptions, name: TargetName): string[] {
  if (!options.profileDir) return [];
  const dir = join(options.profileDir, name);
  mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

interface ChildSpec {
  args: string[];
  /** Working directory (the checkout the child runs from); this one when unset. */
  cwd?: string;
  port: number;
  workDir: string;
  keepStdout: boolean;
  env: Record<string, string>;
}

async function startChild(name: TargetName, spec: ChildSpec): Promise<Target> {
  const logFile = join(spec.workDir, `${name}.log`);
  const errFile = join(spec.workDir, `${name}.err`);
  const stdout = spec.keepStdout ? openSync(logFile, 'w') : 'ignore';
  const stderr = openSync(errFile, 'w');
  const child = spawn(process.execPath, spec.args, {
    cwd: spec.cwd ?? REPO_ROOT,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', stdout, stderr],
  });
  children.add(child);
  if (typeof stdout === 'number') closeSync(stdout);
  closeSync(stderr);

  const baseUrl = `http://127.0.0.1:${spec.port}`;
  const where = spec.cwd && spec.cwd !== REPO_ROOT ? ` (in ${spec.cwd})` : '';
  const command = `node ${spec.args.join(' ')}${where}`;
  try {
    await waitUntilReady(child, baseUrl);
  } catch (err) {
    const tail = [errFile, ...(spec.keepStdout ? [logFile] : [])]
      .map((file) => `--- ${file}\n${tailOf(file)}`)
      .join('\n');
    throw new Error(`${name} (${command}) did not start: ${(err as Error).message}\n${tail}`);
  }
  return {
    name,
    baseUrl,
    pid: child.pid ?? -1,
    command,
    ...(spec.keepStdout ? { logFile } : {}),
  };
}

async function waitUntilReady(child: ChildProcess, baseUrl: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!isRunning(child)) {
      throw new Error(`exited early (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    try {
      const response = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no 200 from /healthz within ${READY_TIMEOUT_MS / 1000} s`);
}

/** A port nobody listens on right now (the OS picks it; the child binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function onceExited(child: ChildProcess): Promise<void> {
  return isRunning(child) ? new Promise((r) => child.once('exit', () => r())) : Promise.resolve();
}

function tailOf(file: string, bytes = 4_000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `...${text.slice(-bytes)}` : text || '(empty)';
  } catch {
    return '(missing)';
  }
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from
 * `/proc/<pid>/stat`; undefined where there is no procfs. Counts in USER_HZ ticks (100/s on
 * Linux), so it is precise over seconds, not milliseconds.
 */
export function cpuTimeMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

export function fileSize(file: string | undefined): number | undefined {
  try {
    return file ? statSync(file).size : undefined;
  } catch {
    return undefined;
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Whether to run the service from dist/: builds it first when asked (falling back to src/
 * through tsx when the build fails), or uses an existing dist/ as it is.
 */
export function prepareServiceBuild(
  options: { build: boolean; tsx: boolean },
  log: (message: string) => void,
  root = REPO_ROOT,
): boolean {
  if (options.tsx) return false;
  if (!options.build) return fileSize(join(root, 'dist/src/server.js')) !== undefined;
  log(`building ${root} (npm run build)...`);
  const outcome = buildService(root);
  if (outcome === 'emitted-with-type-errors') {
    log('the type check failed (see above) but tsc emitted dist/: benchmarking that');
  } else if (outcome === 'failed') {
    log('build failed: running the service from src/ through tsx instead');
  }
  return outcome !== 'failed';
}

/** The machine a benchmark ran on, for its JSON report (`loadBefore`: `loadavg()` at start). */
export function machineReport(loadBefore: number[]) {
  return {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadavg(),
  };
}
