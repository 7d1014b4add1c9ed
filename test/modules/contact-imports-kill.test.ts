import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t from 'tap';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
} from '../../src/db/database.js';
import { IMPORT_BATCH_SIZE } from '../../src/modules/contact-imports/contact-imports.service.js';
import { GOOD_PASSWORD } from '../fixtures/identity.js';
import { ENGINE } from '../helper.js';

/**
 * The real thing: the server runs in a child process, is killed with SIGKILL in the middle of
 * an import (no shutdown hook, no rollback by us), and comes back on the same data. What it
 * wrote must be whole batches only, the job must read `interrupted`, and a retry of the same
 * upload with the same Idempotency-Key must finish the file without duplicating anything.
 */

const SERVER = fileURLToPath(new URL('../../src/server.ts', import.meta.url));
const ROWS = 3 * IMPORT_BATCH_SIZE + 500;
const KILL_AFTER_BATCHES = 3;
const KEY = 'kill-test-upload';

function row(n: number): string {
  return `${JSON.stringify({
    email: `killed-${n}@example.com`,
    firstName: `First${n}`,
    consent: {
      purpose: 'newsletter',
      noticeVersion: 1,
      method: 'form',
      grantedAt: '2025-03-01T10:15:00Z',
      ip: '192.0.2.10',
    },
  })}\n`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

interface Storage {
  env: Record<string, string>;
  open(): Promise<Database>;
  cleanup(): Promise<void>;
}

async function storage(): Promise<Storage> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const dataDir = await mkdtemp(join(tmpdir(), 'custodian-kill-'));
    // The killed server's folder lock is taken over once stale: keep that wait short.
    return {
      env: { DATA_DIR: dataDir, DATABASE_URL: '', DATA_DIR_LOCK_STALE_MS: '2000' },
      open: () => createEmbeddedDatabase({ dataDir, lockStaleMs: 2_000 }),
      cleanup: () => rm(dataDir, { recursive: true, force: true }),
    };
  }
  const schema = `kill_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = async (text: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(text);
    } finally {
      await client.end();
    }
  };
  await admin(`create schema ${schema}`);
  return {
    env: { DATABASE_URL: url, DATABASE_SCHEMA: schema, MIGRATE_ON_START: 'true' },
    open: async () =>
      createPostgresDatabase({
        url,
        schema,
        poolMax: 2,
        connectionTimeoutMs: 5_000,
        statementTimeoutMs: 30_000,
        idleTimeoutMs: 5_000,
      }),
    cleanup: () => admin(`drop schema if exists ${schema} cascade`),
  };
}

interface Server {
  child: ChildProcess;
  base: string;
  stderr: string[];
}

/** Production needs one; the same for every start, as a real deployment keeps its key. */
const AUDIT_SIGNING_KEY = generateKeyPairSync('ed25519')
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

async function startServer(store: Storage): Promise<Server> {
  const port = await freePort();
  const stderr: string[] = [];
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: {
      ...process.env,
      ...store.env,
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      LOG_PRETTY: 'false',
      JWT_SECRET: 'kill-test-jwt-secret-0123456789abcdef0123',
      HASH_SECRET: 'kill-test-hash-secret-0123456789abcdef012',
      AUDIT_SIGNING_KEY,
      WEBHOOK_SECRET_KEY: 'a2lsbC10ZXN0LXdlYmhvb2stc2VjcmV0LWtleS0wMTI=',
      IMPORT_LEASE_SECONDS: '1',
      RATE_LIMIT_MAX: '100000',
      REDIS_URL: '',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 240; i++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${base}/healthz`)).ok) return { child, base, stderr };
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  child.kill('SIGKILL');
  throw new Error(`the server did not start: ${stderr.join('')}`);
}

async function stop(server: Server, signal: NodeJS.Signals) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = once(server.child, 'exit');
  server.child.kill(signal);
  await exited;
}

async function api(
  base: string,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Starts the upload; resolves when the server answers, or rejects when it dies. */
function startUpload(base: string, token: string) {
  const request = http.request(`${base}/v1/contact-imports?format=ndjson`, {
    method: 'POST',
    agent: false,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/x-ndjson',
      'idempotency-key': KEY,
      'transfer-encoding': 'chunked',
    },
  });
  const answered = new Promise<number>((resolve, reject) => {
    request.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    request.on('error', reject);
  });
  answered.catch(() => undefined);
  return { request, answered };
}

async function counts(database: Database, accountId: string) {
  const db = database.owner;
  const contacts = await db
    .selectFrom('contacts')
    .select((eb) => [
      eb.fn.countAll<string>().as('n'),
      eb.fn.count<string>('email').distinct().as('distinct'),
    ])
    .where('account_id', '=', accountId)
    .executeTakeFirstOrThrow();
  const events = await db
    .selectFrom('consent_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('account_id', '=', accountId)
    .executeTakeFirstOrThrow();
  const job = await db
    .selectFrom('contact_imports')
    .selectAll()
    .where('account_id', '=', accountId)
    .executeTakeFirstOrThrow();
  return {
    contacts: Number(contacts.n),
    distinct: Number(contacts.distinct),
    events: Number(events.n),
    job,
  };
}

t.test(
  'a server killed mid-import leaves whole batches; the retry completes the file',
  async (t) => {
    const store = await storage();
    t.teardown(() => store.cleanup());
    let server = await startServer(store);
    t.teardown(() => stop(server, 'SIGKILL'));

    const signup = await api(server.base, null, 'POST', '/v1/auth/signup', {
      name: 'Kill Test Ltd',
      email: 'kill-owner@example.com',
      password: GOOD_PASSWORD,
    });
    const accountId: string = signup.account.id;
    let token: string = signup.accessToken;
    const purpose = await api(server.base, token, 'POST', '/v1/purposes', {
      key: 'newsletter',
      name: 'Newsletter',
    });
    await api(server.base, token, 'POST', `/v1/purposes/${purpose.id}/notices`, {
      text: 'Our monthly newsletter. Unsubscribe at any time.',
      language: 'en',
    });

    // Send three batches and part of a fourth, then wait for the third batch to commit.
    const upload = startUpload(server.base, token);
    let sent = 0;
    const sendUpTo = (n: number) => {
      let chunk = '';
      while (sent < n) chunk += row(++sent);
      if (chunk) upload.request.write(chunk);
    };
    sendUpTo(KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE + 200);
    let jobId: string | undefined;
    let processed = 0;
    for (let i = 0; i < 600 && processed < KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE; i++) {
      await sleep(50);
      const page = await api(server.base, token, 'GET', '/v1/contact-imports');
      jobId = page.data[0]?.id;
      processed = page.data[0]?.counts.processed ?? 0;
    }
    t.equal(processed, KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE, 'three batches committed');
    // Rows of the fourth batch are in flight when the process dies without any clean-up.
    sendUpTo(KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE + 400);
    await sleep(100);
    await stop(server, 'SIGKILL');
    await t.rejects(upload.answered, 'the upload dies with the server');
    upload.request.destroy();

    // What the dead process left behind, read straight from the database.
    const database = await store.open();
    const afterKill = await counts(database, accountId);
    await database.close();
    t.equal(afterKill.contacts, KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE, 'only whole batches');
    t.equal(afterKill.distinct, afterKill.contacts);
    t.equal(afterKill.events, afterKill.contacts, 'every contact with its consent evidence');
    t.equal(afterKill.job.status, 'running', 'the job row still says running');
    t.equal(afterKill.job.processed_rows, afterKill.contacts, 'the counters match what is there');
    t.equal(afterKill.job.last_row, KILL_AFTER_BATCHES * IMPORT_BATCH_SIZE);

    // A new process on the same data: the job reads interrupted once its lease ran out.
    server = await startServer(store);
    token = (
      await api(server.base, null, 'POST', '/v1/auth/login', {
        email: 'kill-owner@example.com',
        password: GOOD_PASSWORD,
      })
    ).accessToken;
    await sleep(1_100);
    const interrupted = await api(server.base, token, 'GET', `/v1/contact-imports/${jobId}`);
    t.equal(interrupted.status, 'interrupted');

    // The client retries the whole upload with the same key: the job resumes and completes.
    const retry = startUpload(server.base, token);
    let file = '';
    for (let n = 1; n <= ROWS; n++) file += row(n);
    retry.request.end(file);
    t.equal(await retry.answered, 201);
    const done = await api(server.base, token, 'GET', `/v1/contact-imports/${jobId}`);
    t.equal(done.status, 'completed');
    t.equal(done.attempts, 2);
    t.same(done.counts, { total: ROWS, processed: ROWS, created: ROWS, updated: 0, rejected: 0 });
    await stop(server, 'SIGTERM');

    const final = await store.open();
    const afterRetry = await counts(final, accountId);
    await final.close();
    t.equal(afterRetry.contacts, ROWS, 'every row imported');
    t.equal(afterRetry.distinct, ROWS, 'no duplicates');
    t.equal(afterRetry.events, ROWS, 'one consent event per contact');
    t.comment(`engine: ${ENGINE}`);
  },
);
