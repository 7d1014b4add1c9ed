import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { schemaStatus } from './db/migrate.js';
import { backgroundJobs } from './jobs.js';
import { clockFromConfig } from './lib/clock.js';
import { loggerOptions } from './logger.js';
import { hashSecretOf } from './modules/suppressions/suppressions.service.js';
import { webhookWorkerFromConfig } from './modules/webhooks/webhook-worker.js';

/** How often a worker started before the migrations asks again whether they ran. */
const SCHEMA_POLL_MS = 5_000;

/**
 * `npm run worker`: background work (webhook deliveries, deadline reminders) on Postgres, beside the API. Any number
 * may run on one database: claims never overlap (see webhook-worker.ts). On the embedded engine
 * the API process runs the worker itself, since only one process can open its data. SIGTERM or
 * SIGINT stops it after the current round; attempts in flight are put back as due.
 */
export async function startWorker(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadConfig(env);
  if (!config.DATABASE_URL) {
    throw new ConfigError([
      'DATABASE_URL: the worker runs beside the API on Postgres; on the embedded engine the ' +
        'API process delivers webhooks itself (WORKER=in-process)',
    ]);
  }
  const logger = pino(loggerOptions(config));
  const database = await openDatabase(config, logger);
  let stopped = false;
  let stopWorker: (() => Promise<void>) | undefined;
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'worker shutting down after an uncaught error');
    else logger.info({ signal }, 'worker shutting down');
    stopped = true;
    await stopWorker?.();
    await database.close();
  });

  // A worker started before `npm run migrate` finished waits for it.
  const schema = schemaStatus(database);
  for (let warned = false; !stopped; warned = true) {
    const pending = await schema.pending().catch(() => ['(the database does not answer)']);
    if (pending.length === 0) break;
    if (!warned) logger.warn({ pending }, 'waiting for the migrations to run');
    await new Promise((resolve) => setTimeout(resolve, SCHEMA_POLL_MS));
  }
  if (stopped) return;

  const clock = clockFromConfig(config);
  const worker = webhookWorkerFromConfig({
    db: database.db,
    config,
    clock,
    hashSecret: hashSecretOf(config, logger),
    log: logger,
    jobs: backgroundJobs({ db: database.db, clock }),
  });
  stopWorker = () => worker.stop();
  worker.start();
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  startWorker().catch((err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`worker failed to start: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
