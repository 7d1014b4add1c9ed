import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  createEmbeddedDatabase,
  createPostgresDatabase,
  type Database,
} from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { withTenant } from '../src/db/tenant.js';
import { systemClock } from '../src/lib/clock.js';
import { createBreachIncidentsService } from '../src/modules/breach-incidents/breach-incidents.service.js';
import { createProcessorIncidentsService } from '../src/modules/breach-incidents/processor-incidents.service.js';
import type { RequestContext } from '../src/modules/identity/actor.js';

/**
 * `npm run bench:breach-fan-out`: an operator's breach incident fanned out to N accounts (the
 * worker's path: one transaction per account, each bound to it, with its incident, event and
 * audit entry), beside creating N account-level incidents directly through the service (the
 * same writes a `POST /v1/breach-incidents` makes), in one run, in this process.
 *
 * Target (issue 14): the fan-out at least 0.5 of the direct rate, RSS under 300 MB, N = 10,000.
 * Embedded engine by default; with DATABASE_URL, a throw-away schema on that server.
 */

const HELP = `usage: npm run bench:breach-fan-out -- [--accounts N]

  --accounts N   accounts (default 10000)
  -h, --help     this text`;

async function open(): Promise<{ database: Database; drop: () => Promise<void> }> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const database = await createEmbeddedDatabase({ dataDir: 'memory://' });
    await migrateToLatest(database.owner, database.schema);
    return { database, drop: () => database.close() };
  }
  const schema = `bench_fan_out_${Date.now()}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create schema ${schema}`);
  const database = createPostgresDatabase({
    url,
    schema,
    poolMax: 5,
    connectionTimeoutMs: 10_000,
    statementTimeoutMs: 60_000,
    idleTimeoutMs: 10_000,
  });
  await migrateToLatest(database.owner, database.schema);
  return {
    database,
    drop: async () => {
      await database.close();
      await admin(`drop schema if exists ${schema} cascade`);
    },
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string', default: '10000' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const n = Number(values.accounts);
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);

  const { database, drop } = await open();
  try {
    // N accounts, each with a DPO contact (copied to its incidents), loaded as the owner.
    const direct: string[] = [];
    const fannedOut: string[] = [];
    for (let i = 0; i < 2 * n; i += 1000) {
      const rows = Array.from({ length: Math.min(1000, 2 * n - i) }, (_, k) => ({
        name: `Bench account ${i + k}`,
        dpo_email: 'dpo@example.com',
      }));
      const ids = await database.owner
        .insertInto('accounts')
        .values(rows)
        .returning('id')
        .execute();
      for (const [k, { id }] of ids.entries()) ((i + k) % 2 === 0 ? direct : fannedOut).push(id);
    }
    const db = database.db;
    const operator: RequestContext = {
      actor: { type: 'operator', id: randomUUID(), accountId: null, sessionId: '' },
      requestId: 'bench',
      ip: '',
    };
    const input = {
      title: 'Bench breach',
      description: 'A breach recorded by the benchmark.',
      kinds: ['confidentiality' as const],
      risk: 'unassessed' as const,
    };

    const breaches = createBreachIncidentsService({ db, clock: systemClock });
    let started = performance.now();
    for (const accountId of direct) {
      await withTenant(accountId, () => breaches.create(operator, accountId, input));
    }
    const directSeconds = (performance.now() - started) / 1000;

    // The fan-out names the other half (an `all` would also reach the first half).
    const processor = createProcessorIncidentsService({ db, clock: systemClock });
    started = performance.now();
    const created = await processor.create(operator, {
      ...input,
      contactPoint: { email: 'security@example.com' },
      accounts: fannedOut,
    });
    let told = created.accounts.length;
    for (;;) {
      const step = await processor.runFanOuts(1000);
      told += step;
      if (step === 0) break;
    }
    const fanOutSeconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);

    const directRate = n / directSeconds;
    const fanOutRate = told / fanOutSeconds;
    console.log(`engine        ${process.env.DATABASE_URL ? 'postgres' : 'embedded'}`);
    console.log(`accounts      ${n} per side`);
    console.log(
      `direct        ${directRate.toFixed(0)} incidents/s (${directSeconds.toFixed(1)} s)`,
    );
    console.log(
      `fan-out       ${fanOutRate.toFixed(0)} accounts/s (${fanOutSeconds.toFixed(1)} s, ${told} told)`,
    );
    console.log(`ratio         ${(fanOutRate / directRate).toFixed(2)} (target >= 0.5)`);
    console.log(`peak RSS      ${(peakRss / 2 ** 20).toFixed(0)} MB (target < 300)`);
    if (told !== n) throw new Error(`told ${told} accounts, expected ${n}`);
  } finally {
    clearInterval(sampler);
    await drop();
  }
}

await main();
