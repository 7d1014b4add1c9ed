import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { shippedMigrations } from '../../src/db/migrate.js';

/**
 * `npm start` as the README gives it: SIGTERM (or Ctrl-C) to npm must reach the server, which
 * drains and exits, releasing the embedded database's folder lock and its port. npm forwards the
 * signal to the script's process only, so the script must `exec` the server rather than leave a
 * shell between them (a shell dies of the signal and orphans the server, lock and port held).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// npm start compiles the project and the first start initialises a database on disk: 20 s on
// an idle machine, 90 s and more on a loaded CI machine, past tap's 120 s per file.
t.setTimeout(300_000);

/** The parent pid of a process, or undefined once it has exited (or is a zombie). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : Number(fields[1]);
  } catch {
    return undefined;
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

t.test('SIGTERM to `npm start` stops the server and releases its data folder', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'custodian-npm-start-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
  };
  // The embedded engine, whose folder lock shows whether the database was closed.
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let serverPid: number | undefined;
  t.teardown(async () => {
    for (const pid of [serverPid, npm.pid]) {
      if (pid && parentOf(pid) !== undefined) process.kill(pid, 'SIGKILL');
    }
    await rm(dataDir, { recursive: true, force: true });
  });
  let stderr = '';
  npm.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const npmExit = new Promise<number | null>((resolve) => npm.once('exit', resolve));
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: npm.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // npm's own lines ("> custodian@… start")
    }
  });

  // Generous: npm start compiles first, and the first start of the embedded engine runs initdb.
  const listening = await until(
    () => lines.some((l) => /listening at/.test(String(l.msg))) || npm.exitCode !== null,
    240_000,
  );
  t.ok(
    listening && npm.exitCode === null,
    `the server listens (stderr: ${stderr.trim() || 'empty'})`,
  );
  if (!listening || npm.exitCode !== null) return;
  const line = lines.find((l) => /listening at/.test(String(l.msg)))!;
  serverPid = Number(line.pid);
  const base = /(http:\/\/\S+)/.exec(String(line.msg))![1]!;
  t.equal(parentOf(serverPid), npm.pid, 'the server is npm’s own child: no shell in between');

  // The first start of a new folder says what it applied.
  const shipped = await shippedMigrations();
  const migrated = lines.find((l) => Array.isArray(l.applied));
  t.same(migrated?.applied, shipped, 'the start log names the migrations it applied');
  t.match(String(migrated?.msg), `applied ${shipped.length} migrations`);

  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200, 'serving');
  t.ok(existsSync(join(dataDir, 'custodian.lock')), 'holding the folder lock');

  npm.kill('SIGTERM');
  const stopped = await until(() => parentOf(serverPid!) === undefined, 20_000);
  t.ok(stopped, 'the server exited');
  const code = await Promise.race([
    npmExit,
    new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 10_000)),
  ]);
  t.equal(code, 0, 'npm start exits 0, as the server did');
  t.ok(
    lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'),
    'the server handled the signal (graceful shutdown)',
  );
  t.notOk(existsSync(join(dataDir, 'custodian.lock')), 'the folder lock is released');
  const after = await fetch(`${base}/healthz`).then(
    () => 'answered',
    () => 'refused',
  );
  t.equal(after, 'refused', 'the port is free');
});
