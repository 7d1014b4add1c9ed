import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { loggerOptions } from './logger.js';
import { checkPasswordPolicy, DUMMY_HASH } from './modules/identity/password.js';

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Lets a caller add routes before listening (used by the shutdown test). */
  configure?: (app: FastifyInstance) => void | Promise<void>;
}

/**
 * Reads the configuration, opens the database (migrating when configured), builds the app,
 * listens, and drains gracefully on SIGTERM/SIGINT: in-flight requests finish, new ones get
 * 503, the database closes, and the process exits 0.
 */
export async function startServer(options: StartOptions = {}): Promise<FastifyInstance> {
  const config = loadConfig(options.env);
  const logger = pino(loggerOptions(config));
  const database = await openDatabase(config, logger);
  const redis = config.REDIS_URL
    ? new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, connectTimeout: 2_000 })
    : undefined;
  redis?.on('error', (err) => logger.warn({ err }, 'redis error'));

  let app: FastifyInstance | undefined;
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal }, 'shutting down');
    await app?.close();
    await database.close();
    await redis?.quit().catch(() => undefined);
  });

  const migrate = config.MIGRATE_ON_START ?? database.engine === 'embedded';
  if (migrate) {
    const applied = await migrateToLatest(database.db, database.schema);
    logger.info({ applied: applied.map((m) => m.migrationName) }, 'migrations up to date');
  }
  app = await buildApp({ config, database, logger, redis });
  // Pay one-off costs now rather than on the first login: the dummy hash that keeps unknown
  // emails as slow as known ones, and the password dictionaries.
  await DUMMY_HASH.get();
  checkPasswordPolicy('warming up the dictionaries', { minLength: config.PASSWORD_MIN_LENGTH });
  if (options.configure) await options.configure(app);
  await app.listen({ host: config.HOST, port: config.PORT });
  logger.info({ engine: database.engine }, 'custodian is serving');
  return app;
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  startServer().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
    } else {
      process.stderr.write(`custodian failed to start: ${(err as Error).stack ?? String(err)}\n`);
    }
    process.exit(1);
  });
}
