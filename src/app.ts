import Fastify, { type FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { type SchemaStatus, schemaStatus } from './db/migrate.js';
import { accessLog } from './http/access-log.js';
import { registerBodyTimeout } from './http/body-timeout.js';
import { declareCommonResponses } from './http/contract.js';
import { registerErrorHandler } from './http/error-handler.js';
import { createMetrics } from './http/metrics.js';
import { registerNotFound } from './http/not-found.js';
import { openApi } from './http/openapi.js';
import { rateLimiting } from './http/rate-limit.js';
import { schemaCompilers } from './http/schema-compilers.js';
import { schemaGate } from './http/schema-gate.js';
import { responseHeaders, securityHeaders } from './http/security-headers.js';
import { serverOptions } from './http/server-options.js';
import { type Clock, clockFromConfig } from './lib/clock.js';
import type { RedisLink } from './lib/redis.js';
import { healthRoutes } from './modules/health/health.routes.js';
import { createHealthService } from './modules/health/health.service.js';
import { registerAuth } from './modules/identity/auth.plugin.js';
import { PrincipalCache } from './modules/identity/principal-cache.js';
import { v1Routes } from './routes.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The service clock (see lib/clock.ts), the one given to the services. */
    clock: Clock;
  }
}

export interface AppDeps {
  config: Config;
  database: Database;
  /** The service clock; defaults to one built from config (CLOCK_START, else the real time). */
  clock?: Clock;
  /** A ready pino logger, or `false` to log nothing (defaults to one built from config). */
  logger?: Logger | false;
  /** Shared rate-limit store (see lib/redis.ts); without it each process counts on its own. */
  redis?: RedisLink;
  /** Separates rate-limit counters of apps sharing one Redis (tests). */
  rateLimitNamespace?: string;
  /** Whether the schema is behind the code (defaults to checking the project's migrations). */
  schema?: SchemaStatus;
}

/**
 * Builds the whole HTTP application; never listens (see `server.ts`). Order matters: hooks run
 * in the order they are added, and `onRoute` hooks (common responses, auth, body deadline,
 * OpenAPI, not-found index) only see the routes registered after them.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database } = deps;
  const headers = securityHeaders({ hstsMaxAgeSeconds: config.HSTS_MAX_AGE_SECONDS });
  const app = Fastify(
    serverOptions(config, deps.logger, headers),
  ).withTypeProvider<ZodTypeProvider>();
  // Past the cap Node closes new connections at once, before they cost a parser and buffers.
  if (config.MAX_CONNECTIONS > 0) app.server.maxConnections = config.MAX_CONNECTIONS;
  const clock = deps.clock ?? clockFromConfig(config);
  if (!deps.clock && config.CLOCK_START) {
    app.log.warn({ clockStart: config.CLOCK_START }, 'the service clock starts at CLOCK_START');
  }
  app.decorate('clock', clock);

  await app.register(schemaCompilers);
  // The API reads JSON only. Fastify also parses text/plain by default, which turns a
  // text body sent to a JSON route into a 400 validation error instead of a 415.
  app.removeContentTypeParser('text/plain');
  await app.register(responseHeaders, { headers });
  registerErrorHandler(app);

  const metrics = createMetrics(() => database.poolStats());
  await app.register(rateLimiting, {
    max: config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW,
    redis: deps.redis,
    namespace: deps.rateLimitNamespace,
    onFailOpen: metrics.rateLimitFailedOpen,
  });
  // Before authentication, which reads tables an unmigrated database does not have.
  const schema = deps.schema ?? schemaStatus(database);
  app.addHook('onRequest', schemaGate(schema));
  declareCommonResponses(app);
  const bodyDeadline = registerBodyTimeout(app, config.BODY_TIMEOUT_MS);
  registerNotFound(app, bodyDeadline);
  const principals = new PrincipalCache(config.AUTH_CACHE_TTL_MS);
  await registerAuth(app, config, database, principals);
  await app.register(accessLog, { observe: metrics.observe });
  await app.register(openApi, { publicBaseUrl: config.PUBLIC_BASE_URL });

  const health = createHealthService({
    database,
    schema,
    redis: deps.redis,
    readinessTimeoutMs: Math.min(config.DB_CONNECTION_TIMEOUT_MS, 5_000),
  });
  await app.register(healthRoutes, { health, metrics: metrics.registry });
  await app.register(v1Routes, {
    prefix: '/v1',
    db: database.db,
    maintenance: database.maintenance,
    engine: database.engine,
    config,
    principals,
    clock,
  });

  return app;
}
