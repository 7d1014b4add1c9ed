import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { prepareSchema } from './db/migrate.js';
import { createRedis } from './lib/redis.js';
import { loggerOptions } from './logger.js';
import { checkPasswordPolicy, DUMMY_HASH } from './modules/identity/password.js';

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Lets a caller add routes before listening (used by the shutdown test). */
  configure?: (app: FastifyInstance) => void | Promise<void>;
}

/**
 * Reads the configuration, opens the database (migrating when configured, else saying whether
 * the schema is behind), builds the app, listens, and drains gracefully on SIGTERM/SIGINT:
 * in-flight requests finish, new ones get 503, the database closes, and the process exits 0.
 */
export async function startServer(options: StartOptions = {}): Promise<FastifyInstance> {
  const config = loadConfig(options.env);
  const logger = pino(loggerOptions(config));
  const database = await openDatabase(config, logger);
  const redis = config.REDIS_URL
    ? createRedis({
        url: config.REDIS_URL,
        commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        logger,
      })
    : undefined;

  let app: FastifyInstance | undefined;
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal }, 'shutting down');
    await app?.close();
    await database.close();
    await redis?.close();
  });

  await prepareSchema(database, {
    migrate: config.MIGRATE_ON_START ?? database.engine === 'embedded',
    logger,
  });
  // Start with the counters shared if Redis is there; if not, serve anyway (limits fail open).
  await redis?.connected(2_000);
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
