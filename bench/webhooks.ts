import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { type Config, loadConfig } from '../src/config.js';
import { type Database, openDatabase } from '../src/db/database.js';
import { prepareSchema } from '../src/db/migrate.js';
import { withTenant } from '../src/db/tenant.js';
import { systemClock } from '../src/lib/clock.js';
import { webhookHeaders } from '../src/lib/standard-webhooks.js';
import { appendEvents } from '../src/modules/events/events.service.js';
import { webhookWorkerFromConfig } from '../src/modules/webhooks/webhook-worker.js';
import {
  createDatabase,
  databaseUrlFor,
  dropDatabase,
  newDatabaseName,
  redactUrl,
} from './data-db.js';
import { durableSenderRate } from './durable-sender.js';
import { removeDir } from './targets.js';

/**
 * `npm run bench:webhooks`: webhook delivery against what the receiver can take, in one run.
 *
 * After `--warmup` unmeasured rounds of 3 and 4 (so that both run compiled code), each of
 * `--runs` rounds measures, one after the other on the same receiver:
 * 1. direct: autocannon POSTs a signed, event-sized message to a bare node:http receiver (its
 *    own process, answering 204) over `--connections` connections: the receiver's rate.
 * 2. bare: a node:http keep-alive client (the worker's HTTP client) POSTing the same signed
 *    message with as many requests in flight, doing nothing else: what the worker's sends
 *    would reach if delivering cost nothing but the requests.
 * 3. durable: the least durable sender (durable-sender.ts): the same number of messages queued
 *    in a table of its own, claimed, POSTed with the bare client's code and recorded, with the
 *    same requests in flight: the durable work any at-least-once sender must do, and no more.
 * 4. worker: the webhook worker (webhook-worker.ts, its own loop as `npm run worker` runs it)
 *    delivers `--events` newly queued events of one endpoint to the same receiver: fan-out,
 *    claims, reading, signing, sending and recording included, with as many attempts in
 *    flight per endpoint as the others have connections.
 * The target is the worker's rate as a share of the durable sender's (the same work on both
 *    sides of the ratio: a durable queue, the same client, requests in flight, messages and
 *    receiver), the median of the rounds' ratios; the shares of the bare client's and of
 *    autocannon's rates are reported beside it (bench/README.md says why the target moved).
 * Each round's line gives the CPU this process used during bare, durable and worker, and
 * during durable and worker that of the database's backends when Postgres runs on this
 * machine (1.00 = one core).
 * 5. latency: events committed one at a time at `--rate` per second for `--seconds`, with the
 *    worker polling as configured (WORKER_POLL_INTERVAL_MS): commit-to-receipt p50/p99.
 *
 * The embedded engine always; Postgres too with `--postgres URL` (or DATABASE_URL), in a
 * throw-away database. Targets: worker >= 0.5 of the durable sender on Postgres, p99 < 2 s.
 * The first line names the Node.js release: production runs Node.js 24 (the Dockerfile), and
 * bench/README.md shows how to run the bench on it.
 */

const HELP = `usage: npm run bench:webhooks -- [options]

  --postgres URL    also run on Postgres (default: DATABASE_URL); the user may CREATE DATABASE
  --no-embedded     Postgres only
  --events N        queued events the worker delivers (default 10000)
  --connections N   autocannon connections for the direct rate (default 10)
  --runs N          rounds of direct, bare, durable and worker; medians are reported (default 5)
  --warmup N        unmeasured rounds of durable and worker first, so both run compiled
                    code when measured (default 1)
  --duration S      seconds of each direct and bare measurement (default 5)
  --rate N          events per second in the latency run (default 10)
  --seconds S       length of the latency run (default 30)
  --in-flight N     WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT for the worker (default: --connections,
                    so both sides keep as many requests in flight)
  -h, --help        this text`;

interface Options {
  postgres: string | undefined;
  embedded: boolean;
  events: number;
  runs: number;
  warmup: number;
  connections: number;
  duration: number;
  rate: number;
  seconds: number;
  inFlight: string;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      postgres: { type: 'string' },
      'no-embedded': { type: 'boolean', default: false },
      events: { type: 'string', default: '10000' },
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '10' },
      duration: { type: 'string', default: '5' },
      rate: { type: 'string', default: '10' },
      seconds: { type: 'string', default: '30' },
      'in-flight': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  return {
    postgres: values.postgres ?? process.env.DATABASE_URL,
    embedded: !values['no-embedded'],
    events: Number(values.events),
    runs: Math.max(1, Number(values.runs)),
    warmup: Math.max(0, Number(values.warmup)),
    connections: Number(values.connections),
    duration: Number(values.duration),
    rate: Number(values.rate),
    seconds: Number(values.seconds),
    inFlight: values['in-flight'] ?? values.connections,
  };
}

// --- The receiver ---------------------------------------------------------------------------

interface Receiver {
  url: string;
  ask(message: unknown): Promise<{ count: number; receipts?: [string, number][] }>;
  stop(): void;
}

async function startReceiver(): Promise<Receiver> {
  const child: ChildProcess = fork(new URL('./webhook-receiver.ts', import.meta.url).pathname, {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`receiver exited (${code})`)));
  });
  return {
    url: `http://127.0.0.1:${port}/hook`,
    ask: (message) =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve(m as { count: number }));
        child.send(message as string);
      }),
    stop: () => child.kill('SIGTERM'),
  };
}

// --- The service side -----------------------------------------------------------------------

interface Engine {
  name: string;
  /** The throw-away Postgres database's name (its backends' CPU is read from /proc). */
  dbName: string | undefined;
  config: Config;
  database: Database;
  app: FastifyInstance;
  accountId: string;
  cleanup(): Promise<void>;
}

function configFor(env: Record<string, string>, inFlight: string | undefined): Config {
  return loadConfig({
    NODE_ENV: 'development',
    LOG_LEVEL: 'silent',
    JWT_SECRET: randomBytes(32).toString('hex'),
    HASH_SECRET: randomBytes(32).toString('hex'),
    WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
    WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
    RATE_LIMIT_MAX: '1000000',
    WORKER: 'off',
    ...(inFlight ? { WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: inFlight } : {}),
    ...env,
  });
}

async function openEngine(
  name: string,
  postgres: string | undefined,
  receiverUrl: string,
  inFlight: string | undefined,
): Promise<Engine> {
  const dataDir = mkdtempSync(join(tmpdir(), 'custodian-bench-webhooks-'));
  const dbName = postgres ? newDatabaseName() : undefined;
  if (postgres && dbName) await createDatabase(postgres, dbName);
  const config = configFor(
    {
      DATA_DIR: dataDir,
      ...(postgres && dbName ? { DATABASE_URL: databaseUrlFor(postgres, dbName) } : {}),
    },
    inFlight,
  );
  const logger = pino({ level: 'silent' });
  const database = await openDatabase(config, logger);
  await prepareSchema(database, { migrate: true, logger });
  const app = await buildApp({ config, database, logger: false });
  const signup = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: {
      name: 'Delivery measurement',
      email: 'webhook-bench@example.com',
      password: 'staple orbit lantern quietly',
    },
  });
  if (signup.statusCode !== 201) throw new Error(`signup: ${signup.body}`);
  const { accessToken, account } = signup.json() as {
    accessToken: string;
    account: { id: string };
  };
  const hook = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: { authorization: `Bearer ${accessToken}` },
    payload: { url: receiverUrl, eventTypes: ['contact.created'] },
  });
  if (hook.statusCode !== 201) throw new Error(`webhook: ${hook.body}`);
  return {
    name,
    dbName,
    config,
    database,
    app,
    accountId: account.id,
    async cleanup() {
      await app.close();
      await database.close();
      if (postgres && dbName) await dropDatabase(postgres, dbName);
      removeDir(dataDir);
    },
  };
}

/** Appends `n` events, committed `perTransaction` at a time. */
async function queueEvents(engine: Engine, n: number, perTransaction: number): Promise<void> {
  for (let done = 0; done < n; done += perTransaction) {
    const size = Math.min(perTransaction, n - done);
    // The service's own handle, bound to the account as the API would be (row-level security).
    await withTenant(engine.accountId, () =>
      engine.database.db.transaction().execute((trx) =>
        appendEvents(
          trx,
          engine.accountId,
          Array.from({ length: size }, () => ({
            type: 'contact.created' as const,
            contactId: null,
            data: { contactId: randomUUID(), source: 'api', importId: null },
          })),
        ),
      ),
    );
  }
}

async function latestEventId(engine: Engine): Promise<string> {
  const row = await engine.database.owner
    .selectFrom('events')
    .select('id')
    .where('account_id', '=', engine.accountId)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirstOrThrow();
  return row.id;
}

function workerOf(engine: Engine) {
  return webhookWorkerFromConfig({
    db: engine.database.db,
    config: engine.config,
    clock: systemClock,
    hashSecret: engine.config.HASH_SECRET!,
    log: pino({ level: 'silent' }),
  });
}

// --- The three measurements -----------------------------------------------------------------

/** A signed message the size of a real event, as the worker would send it. */
function sampleMessage() {
  const id = randomUUID();
  const body = JSON.stringify({
    id,
    seq: 4242,
    type: 'consent.granted',
    contactId: randomUUID(),
    data: {
      contactId: randomUUID(),
      purposeId: randomUUID(),
      consentEventId: randomUUID(),
      noticeVersion: 3,
      method: 'form',
    },
    createdAt: new Date().toISOString(),
  });
  const headers = webhookHeaders([`whsec_${randomBytes(32).toString('base64')}`], {
    id,
    timestamp: Math.floor(Date.now() / 1000),
    body,
  });
  return { body, headers: { ...headers, 'content-type': 'application/json' } };
}

async function directRate(receiver: Receiver, options: Options): Promise<number> {
  const message = sampleMessage();
  const result = await autocannon({
    url: receiver.url,
    method: 'POST',
    headers: message.headers,
    body: message.body,
    connections: options.connections,
    duration: options.duration,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`direct run: ${result.non2xx} non-2xx, ${result.errors} errors`);
  }
  return result.requests.average;
}

/** Requests/s of a bare node:http keep-alive client, `connections` requests in flight. */
async function bareClientRate(
  receiver: Receiver,
  options: Options,
): Promise<{ perSecond: number; cpu: string }> {
  const message = sampleMessage();
  const body = Buffer.from(message.body);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections });
  const headers = { ...message.headers, 'content-length': String(body.length) };
  const post = () =>
    new Promise<void>((resolve, reject) => {
      const request = http.request(receiver.url, { method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error('not 204'))));
      });
      request.on('error', reject);
      request.end(body);
    });
  const cpu = cpuMeter();
  const started = performance.now();
  const stopAt = started + options.duration * 1000;
  let sent = 0;
  await Promise.all(
    Array.from({ length: options.connections }, async () => {
      while (performance.now() < stopAt) {
        await post();
        sent += 1;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { perSecond: sent / seconds, cpu: cpu() };
}

/** The least durable sender (bench/durable-sender.ts) on the engine, with its CPU shares. */
async function durableRate(engine: Engine, receiver: Receiver, n: number, inFlight: number) {
  const message = sampleMessage();
  await receiver.ask('reset');
  const cpu = cpuMeter();
  const backends = backendCpuMeter(engine.dbName);
  const { perSecond } = await durableSenderRate(
    engine.database.owner,
    receiver.url,
    { body: Buffer.from(message.body), headers: message.headers },
    n,
    inFlight,
  );
  return { perSecond, cpu: cpu(), database: backends() };
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

async function workerRate(engine: Engine, receiver: Receiver, n: number) {
  await queueEvents(engine, n, 1000);
  await receiver.ask('reset');
  const worker = workerOf(engine);
  const cpu = cpuMeter();
  const backends = backendCpuMeter(engine.dbName);
  const started = performance.now();
  worker.start();
  let last = 0;
  const done = await until(async () => {
    const { count } = await receiver.ask('report');
    if (count > last) last = count;
    return count >= n;
  }, 600_000);
  const seconds = (performance.now() - started) / 1000;
  const used = cpu();
  const database = backends();
  await worker.stop();
  if (!done) throw new Error(`${engine.name}: only ${last} of ${n} delivered in time`);
  return { seconds, perSecond: n / seconds, cpu: used, database };
}

/**
 * CPU time of the Postgres backends serving `dbName` since the call, as a share of the wall
 * time, when the server runs on this machine (Linux /proc); '' otherwise.
 */
function backendCpuMeter(dbName: string | undefined): () => string {
  const ticks = (): number | undefined => {
    if (!dbName) return undefined;
    try {
      let total = 0;
      for (const pid of readdirSync('/proc')) {
        if (!/^[0-9]+$/.test(pid)) continue;
        try {
          if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dbName)) continue;
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          total += Number(fields[11]) + Number(fields[12]); // utime + stime, in 1/100 s
        } catch {
          // gone meanwhile, or not ours to read
        }
      }
      return total;
    } catch {
      return undefined;
    }
  };
  const startTicks = ticks();
  const startWall = performance.now();
  return () => {
    const endTicks = ticks();
    if (startTicks === undefined || endTicks === undefined) return '';
    const share = ((endTicks - startTicks) * 10) / (performance.now() - startWall);
    return `, database ${share.toFixed(2)}`;
  };
}

/** This process's CPU time since the call, as a share of the wall time (1.00 = one core). */
function cpuMeter(): () => string {
  const startCpu = process.cpuUsage();
  const startWall = performance.now();
  return () => {
    const used = process.cpuUsage(startCpu);
    const wallUs = (performance.now() - startWall) * 1000;
    return ((used.user + used.system) / wallUs).toFixed(2);
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

async function latency(engine: Engine, receiver: Receiver, options: Options) {
  await receiver.ask('reset');
  await receiver.ask({ record: true });
  const worker = workerOf(engine);
  worker.start();
  const committed = new Map<string, number>();
  const total = options.rate * options.seconds;
  const start = Date.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / options.rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await queueEvents(engine, 1, 1);
    const at = Date.now();
    committed.set(await latestEventId(engine), at);
  }
  await until(async () => (await receiver.ask('report')).count >= total, 30_000);
  const { receipts = [] } = await receiver.ask('report');
  await receiver.ask({ record: false });
  await worker.stop();
  const waits = receipts
    .filter(([id]) => committed.has(id))
    .map(([id, at]) => at - committed.get(id)!)
    .sort((a, b) => a - b);
  return {
    sent: total,
    received: waits.length,
    p50: percentile(waits, 50),
    p99: percentile(waits, 99),
    max: waits.at(-1) ?? Number.NaN,
  };
}

// --- The run --------------------------------------------------------------------------------

async function main() {
  const options = parseOptions();
  const engines: [string, string | undefined][] = [];
  if (options.embedded) engines.push(['embedded', undefined]);
  if (options.postgres) engines.push(['postgres', options.postgres]);
  if (engines.length === 0) throw new Error('nothing to run: --no-embedded needs --postgres');

  const receiver = await startReceiver();
  const lines: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    process.stdout.write(`${line}\n`);
  };
  log(
    `machine: ${cpus().length} cpus, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; node ${process.version}`,
  );
  try {
    for (const [name, url] of engines) {
      if (url) log(`${name}: ${redactUrl(url)} (a throw-away database)`);
      const engine = await openEngine(name, url, receiver.url, options.inFlight);
      try {
        const inFlight = engine.config.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT;
        // The JIT compiles a function after enough calls: the worker's many code paths reach
        // compiled code over a few thousand deliveries, the durable sender's few sooner. One
        // unmeasured round of each first, so the rounds compare compiled code with compiled code.
        for (let round = 1; round <= options.warmup; round++) {
          const durable = await durableRate(engine, receiver, options.events, inFlight);
          const worker = await workerRate(engine, receiver, options.events);
          log(
            `${name}: warm-up ${round}  durable ${durable.perSecond.toFixed(0)} delivered/s, worker ` +
              `${worker.perSecond.toFixed(0)} delivered/s (not counted)`,
          );
        }
        const rounds: { direct: number; bare: number; durable: number; worker: number }[] = [];
        for (let run = 1; run <= options.runs; run++) {
          const direct = await directRate(receiver, options);
          const bare = await bareClientRate(receiver, options);
          const durable = await durableRate(engine, receiver, options.events, inFlight);
          const worker = await workerRate(engine, receiver, options.events);
          rounds.push({
            direct,
            bare: bare.perSecond,
            durable: durable.perSecond,
            worker: worker.perSecond,
          });
          log(
            `${name}: run ${run}     direct ${direct.toFixed(0)} req/s, bare ${bare.perSecond.toFixed(0)} ` +
              `req/s (cpu ${bare.cpu}), durable ${durable.perSecond.toFixed(0)} delivered/s (cpu ` +
              `${durable.cpu}${durable.database}), worker ${worker.perSecond.toFixed(0)} delivered/s (cpu ` +
              `${worker.cpu}${worker.database}): ${(worker.perSecond / durable.perSecond).toFixed(3)} of durable, ` +
              `${(worker.perSecond / bare.perSecond).toFixed(3)} of bare, ` +
              `${(durable.perSecond / bare.perSecond).toFixed(3)} durable/bare, ` +
              `${(bare.perSecond / direct).toFixed(3)} bare/direct`,
          );
        }
        const direct = median(rounds.map((r) => r.direct));
        const bare = median(rounds.map((r) => r.bare));
        const worker = median(rounds.map((r) => r.worker));
        const durable = median(rounds.map((r) => r.durable));
        const ofDurable = median(rounds.map((r) => r.worker / r.durable));
        const durableOfBare = median(rounds.map((r) => r.durable / r.bare));
        const ofBare = median(rounds.map((r) => r.worker / r.bare));
        const ofDirect = median(rounds.map((r) => r.worker / r.direct));
        const bareOfDirect = median(rounds.map((r) => r.bare / r.direct));
        const of = `median of ${rounds.length}`;
        log(
          `${name}: direct    ${direct.toFixed(0)} req/s  (autocannon, ${options.connections} ` +
            `connections, ${options.duration} s; ${of})`,
        );
        log(
          `${name}: bare      ${bare.toFixed(0)} req/s  (node:http keep-alive client, ` +
            `${options.connections} in flight: ${bareOfDirect.toFixed(3)} of direct; ${of})`,
        );
        log(
          `${name}: durable   ${durable.toFixed(0)} delivered/s  (the least durable sender, ` +
            `bench/durable-sender.ts, ${inFlight} in flight: ${durableOfBare.toFixed(3)} of bare; ${of})`,
        );
        log(
          `${name}: worker    ${worker.toFixed(0)} delivered/s  (${options.events} events per ` +
            `run, ${inFlight} in flight per endpoint; ${of})`,
        );
        log(
          `${name}: ratio     ${ofDurable.toFixed(3)} of the durable sender  (target >= 0.5; ${of} ` +
            `runs' ratios); ${ofBare.toFixed(3)} of the bare client, ${ofDirect.toFixed(3)} of ` +
            `direct (autocannon)`,
        );
        const lat = await latency(engine, receiver, options);
        log(
          `${name}: latency   p50 ${lat.p50} ms, p99 ${lat.p99} ms, max ${lat.max} ms  ` +
            `(${lat.received}/${lat.sent} events at ${options.rate}/s, poll ` +
            `${engine.config.WORKER_POLL_INTERVAL_MS} ms; target p99 < 2000 ms)`,
        );
      } finally {
        await engine.cleanup();
      }
    }
  } finally {
    receiver.stop();
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
// The pg pools and PGlite keep nothing open after cleanup, but autocannon's timers might.
process.exit(0);
