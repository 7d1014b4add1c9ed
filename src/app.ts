import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpServerOptions } from 'node:http';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { ZodType } from 'zod';
import { type Config, trustProxyOption } from './config.js';
import type { Database } from './db/database.js';
import { AppError, ValidationError } from './errors.js';
import { registerBodyTimeout } from './http/body-timeout.js';
import {
  clientErrorHandler,
  fieldName,
  frameworkErrorHandler,
  registerErrorHandler,
} from './http/error-handler.js';
import { createMetrics } from './http/metrics.js';
import { registerNotFound } from './http/not-found.js';
import { ProblemSchema } from './http/problem.js';
import { failOpenRedisStore } from './http/rate-limit-store.js';
import { securityHeaders } from './http/security-headers.js';
import { serializerCompiler } from './http/serializer.js';
import type { RedisLink } from './lib/redis.js';
import { findInputProblem } from './lib/storable-input.js';
import { loggerOptions } from './logger.js';
import { registerAuth } from './modules/identity/auth.plugin.js';
import { PrincipalCache } from './modules/identity/principal-cache.js';
import { operationsRoutes } from './modules/operations/operations.routes.js';
import { v1Routes } from './routes.js';

export interface AppDeps {
  config: Config;
  database: Database;
  /** A ready pino logger, or `false` to log nothing (defaults to one built from config). */
  logger?: Logger | false;
  /** Shared rate-limit store (see lib/redis.ts); without it each process counts on its own. */
  redis?: RedisLink;
  /** Separates rate-limit counters of apps sharing one Redis (tests). */
  rateLimitNamespace?: string;
}

/** Incoming request ids are echoed only when they are short and harmless. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
const DEBUG_LEVELS = new Set(['debug', 'trace']);

export const API_VERSION = '1.0.0';

/** Builds the whole HTTP application; never listens (see `server.ts`). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database } = deps;

  const headers = securityHeaders({ hstsMaxAgeSeconds: config.HSTS_MAX_AGE_SECONDS });
  const http: HttpServerOptions = {
    // Slow headers get no more time than a slow body (Node's default is 60 s). Node also
    // ignores a requestTimeout shorter than headersTimeout, which this rules out.
    headersTimeout: Math.min(60_000, config.BODY_TIMEOUT_MS),
    // Node checks both on an interval (30 s by default): a tenth of the request timeout keeps
    // a short one from overshooting by far, and changes nothing for the hour.
    connectionsCheckingInterval:
      config.IMPORT_BODY_TIMEOUT_MS > 0
        ? Math.min(30_000, Math.max(100, Math.floor(config.IMPORT_BODY_TIMEOUT_MS / 10)))
        : 30_000,
  };
  const options: FastifyServerOptions & {
    http?: HttpServerOptions;
    https?: (HttpServerOptions & { key: Buffer; cert: Buffer }) | null;
  } = {
    // One log line per request, written by our onResponse hook (with scrubbed URL).
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    bodyLimit: config.BODY_LIMIT_BYTES,
    http,
    // Every body but an import's is bounded sooner, per route (registerBodyTimeout).
    requestTimeout: config.IMPORT_BODY_TIMEOUT_MS,
    connectionTimeout: config.CONNECTION_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    trustProxy: trustProxyOption(config.TRUST_PROXY),
    return503OnClosing: true,
    frameworkErrors: frameworkErrorHandler(headers),
    clientErrorHandler: clientErrorHandler(headers),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
  };
  if (deps.logger === false) options.logger = false;
  else if (deps.logger) options.loggerInstance = deps.logger;
  else options.logger = loggerOptions(config);
  if (config.TLS_CERT_FILE && config.TLS_KEY_FILE) {
    options.https = {
      ...http,
      cert: readFileSync(config.TLS_CERT_FILE),
      key: readFileSync(config.TLS_KEY_FILE),
    };
  }

  const app = Fastify(options).withTypeProvider<ZodTypeProvider>();
  // Past the cap Node closes new connections at once, before they cost a parser and buffers.
  if (config.MAX_CONNECTIONS > 0) app.server.maxConnections = config.MAX_CONNECTIONS;
  // Every request part with a schema (body, query, path) is first searched for input the
  // service cannot store or process (NUL, lone surrogates, absurd nesting, Infinity; see
  // storable-input.ts): such input passed the schemas and came back as a 500. One check here
  // covers every route, present and future.
  app.setValidatorCompiler<ZodType>((route) => {
    const validate = validatorCompiler(route);
    return (data: unknown) => {
      const problem = findInputProblem(data);
      if (!problem) return validate(data);
      const field = fieldName(route.httpPart, problem.path.map((key) => `/${key}`).join(''));
      return {
        error: new ValidationError(
          [{ field, code: problem.code, message: problem.message }],
          `Invalid ${field}.`,
        ),
      };
    };
  });
  app.setSerializerCompiler(serializerCompiler);
  // The API reads JSON only. Fastify also parses text/plain by default, which turns a
  // text body sent to a JSON route into a 400 validation error instead of a 415.
  app.removeContentTypeParser('text/plain');

  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(headers);
    reply.header('x-request-id', request.id);
    done();
  });

  registerErrorHandler(app);

  const metrics = createMetrics(() => database.poolStats());
  await app.register(rateLimit, {
    global: true,
    max: config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW,
    // Counting must not take the API down: if Redis cannot count, requests go through (the
    // store fails open, counts it in /metrics, and the outage is logged once).
    ...(deps.redis
      ? {
          store: failOpenRedisStore(
            deps.redis,
            `custodian-rl:${deps.rateLimitNamespace ?? 'default'}:`,
            metrics.rateLimitFailedOpen,
          ),
        }
      : {}),
    skipOnError: true,
    errorResponseBuilder: (_request, context) =>
      new AppError(
        429,
        'rate_limited',
        'Too many requests',
        `Rate limit of ${context.max} requests per ${context.after} exceeded; retry after ${Math.ceil(context.ttl / 1000)} s.`,
      ),
  });

  const bodyDeadline = registerBodyTimeout(app, config.BODY_TIMEOUT_MS);
  registerNotFound(app, bodyDeadline);
  const principals = new PrincipalCache(config.AUTH_CACHE_TTL_MS);
  await registerAuth(app, config, database, principals);
  // One hook per response for both the metrics and the access log line.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url;
    metrics.observe(request.method, route, reply.statusCode, reply.elapsedTime);
    const quiet = route !== undefined && QUIET_ROUTES.has(route);
    if (!quiet || DEBUG_LEVELS.has(request.log.level)) {
      const line = { req: request, res: reply, responseTime: Math.round(reply.elapsedTime) };
      if (quiet) request.log.debug(line, 'request completed');
      else request.log.info(line, 'request completed');
    }
    done();
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Custodian API',
        version: API_VERSION,
        description:
          'GDPR back end of an EU email-marketing provider: consent, data-subject requests, ' +
          'breach incidents and a tamper-evident audit trail. Errors are RFC 9457 ' +
          '`application/problem+json` documents with a stable `code`.',
        license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
        contact: { name: 'Custodian operations', email: 'ops@example.com' },
      },
      // Without a public URL, a relative server: /docs then calls whatever host served it (also
      // behind a proxy), and the committed openapi.yaml does not depend on a local PORT.
      servers: [{ url: config.PUBLIC_BASE_URL ?? '/' }],
      tags: [
        { name: 'meta', description: 'The API itself.' },
        { name: 'operations', description: 'Health, readiness and metrics for operators.' },
        { name: 'auth', description: 'Sign-up, login, token refresh, password change.' },
        { name: 'account', description: 'Your account: time zone, DPO contact.' },
        { name: 'users', description: 'The people of your account and their roles.' },
        { name: 'api-keys', description: 'Scoped keys for your systems.' },
        { name: 'audit', description: 'The tamper-evident audit trail (Art. 5(2), 24).' },
        {
          name: 'contacts',
          description: 'Subscribers: retrieve, rectify, restrict, erase, export.',
        },
        { name: 'suppressions', description: 'Keyed hashes of erased addresses (Art. 17).' },
        { name: 'purposes', description: 'Processing purposes and their versioned notices.' },
        { name: 'consents', description: 'The append-only consent ledger (Art. 7).' },
        { name: 'contact-imports', description: 'Bulk imports of contacts with consent evidence.' },
        {
          name: 'events',
          description: 'The outbox feed your systems act on: double opt-in requests, withdrawals.',
        },
        { name: 'public', description: 'Links followed by data subjects, without an account.' },
        { name: 'ops', description: 'The provider’s operations staff.' },
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A user access token from `POST /v1/auth/login`.',
          },
          apiKeyAuth: {
            type: 'apiKey',
            in: 'header',
            name: 'X-API-Key',
            description: 'A scoped API key for integrations, from `POST /v1/api-keys`.',
          },
        },
      },
    },
    transform: jsonSchemaTransform,
    // The zod provider emits every registered schema twice (`X` for responses, `XInput` for
    // requests), used or not: keep only what the paths reference, so clients get no dead types.
    transformObject: (document) => withoutUnusedSchemas(jsonSchemaTransformObject(document)),
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });

  // Referenced so the component is always present, even before any route uses it.
  void ProblemSchema;

  app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () =>
    app.swagger(),
  );
  await app.register(operationsRoutes, {
    database,
    redis: deps.redis,
    metrics: metrics.registry,
    readinessTimeoutMs: Math.min(config.DB_CONNECTION_TIMEOUT_MS, 5_000),
  });
  await app.register(v1Routes, {
    prefix: '/v1',
    db: database.db,
    engine: database.engine,
    config,
    principals,
  });

  return app;
}

const SCHEMA_REF = '#/components/schemas/';
type OpenApiDocument = ReturnType<typeof jsonSchemaTransformObject>;

/**
 * Drops the component schemas that nothing outside `components.schemas` reaches through `$ref`
 * (directly, or through another schema that is reached).
 */
function withoutUnusedSchemas(document: OpenApiDocument): OpenApiDocument {
  const { components } = document as { components?: { schemas?: Record<string, unknown> } };
  const schemas = components?.schemas;
  if (!schemas) return document;
  const used = new Set<string>();
  const pending: unknown[] = [{ ...document, components: { ...components, schemas: {} } }];
  while (pending.length > 0) {
    const node = pending.pop();
    if (node === null || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith(SCHEMA_REF)) {
        const name = value.slice(SCHEMA_REF.length);
        if (!used.has(name)) {
          used.add(name);
          pending.push(schemas[name]);
        }
      } else {
        pending.push(value);
      }
    }
  }
  const kept = Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)));
  return { ...document, components: { ...components, schemas: kept } } as OpenApiDocument;
}
