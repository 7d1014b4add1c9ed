import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ENGINE } from '../helper.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/slow-server.ts', import.meta.url));
const SLOW_MS = 1_500;

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

/** One request on its own connection (no keep-alive pool shared between requests). */
function get(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** The JSON lines a child prints on stdout, awaitable by key. */
function messagesOf(child: ChildProcess) {
  const seen = new Map<string, number>();
  const waiting = new Map<string, (value: number) => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let message: Record<string, number>;
    try {
      message = JSON.parse(line) as Record<string, number>;
    } catch {
      return; // not one of ours
    }
    for (const [key, value] of Object.entries(message)) {
      seen.set(key, value);
      waiting.get(key)?.(value);
    }
  });
  return (key: string, timeoutMs: number): Promise<number> =>
    new Promise((resolve, reject) => {
      if (seen.has(key)) return resolve(seen.get(key)!);
      const timer = setTimeout(
        () => reject(new Error(`no "${key}" from the server within ${timeoutMs} ms`)),
        timeoutMs,
      );
      child.once('exit', (code) =>
        reject(new Error(`the server exited with ${code} before "${key}"`)),
      );
      waiting.set(key, (value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
}

t.test('SIGTERM drains in-flight requests, refuses new ones and exits 0', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'custodian-shutdown-'));
  const stderr: string[] = [];
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    // With DATABASE_URL the server uses Postgres (and does not migrate); without, DATA_DIR.
    env: { ...process.env, DATA_DIR: dataDir, SLOW_ROUTE_MS: String(SLOW_MS) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  const message = messagesOf(child);
  // Generous: the first start of the embedded engine runs initdb on disk.
  const port = await message('port', 90_000).catch((err: Error) => {
    throw new Error(`${err.message}; stderr: ${stderr.join('').trim() || 'empty'}`);
  });
  t.ok(port > 0, `listening on port ${port}`);
  const warm = await get(port, '/healthz');
  t.equal(warm.status, 200, 'serving before the signal');
  t.match(warm.contentType, /^application\/json/);
  t.same(JSON.parse(warm.body), { status: 'ok' });

  const slow = get(port, '/slow');
  slow.catch(() => undefined); // asserted below
  const startedAt = await message('slowStarted', 10_000);
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGTERM');
  const signalledAt = Date.now();

  // Until the signal is handled the server may still accept; after that nothing new gets in.
  let refusal: string | undefined;
  const deadline = startedAt + SLOW_MS - 200;
  while (refusal === undefined && Date.now() < deadline) {
    try {
      const late = await get(port, '/healthz');
      if (late.status === 503) refusal = 'answered 503';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (['ECONNREFUSED', 'ECONNRESET'].includes(code)) refusal = code;
      else throw err;
    }
    if (refusal === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(refusal, `a request made after SIGTERM is refused (${refusal})`);

  const answer = await slow;
  const finishedAt = Date.now();
  t.equal(answer.status, 200, 'the in-flight request completes');
  t.match(answer.contentType, /^application\/json/);
  t.same(JSON.parse(answer.body), { status: 'done' });
  t.ok(finishedAt > signalledAt, 'and it completed after the signal');

  const [code, signal] = await Promise.race([
    exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('the server did not exit')), 15_000),
    ),
  ]);
  t.equal(signal, null, 'not killed by the signal: it handled it');
  t.equal(code, 0, `exit code 0 (stderr: ${stderr.join('').trim() || 'empty'})`);
  if (ENGINE === 'embedded') {
    t.notOk(existsSync(join(dataDir, 'custodian.lock')), 'the database was closed (lock released)');
  }
});
