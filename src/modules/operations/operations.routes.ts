import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { Database } from '../../db/database.js';
import { ServiceUnavailableError } from '../../errors.js';
import { problemResponses } from '../../http/problem.js';
import { PUBLIC } from '../../http/security.js';
import type { RedisLink } from '../../lib/redis.js';

export interface OperationsRoutesOptions {
  database: Database;
  /** The shared rate-limit store, when configured: reported, never failing readiness. */
  redis?: RedisLink | undefined;
  metrics: Registry;
  readinessTimeoutMs: number;
}

const HealthSchema = z.object({ status: z.literal('ok') }).meta({ example: { status: 'ok' } });
const ReadinessSchema = z
  .object({
    status: z.literal('ready'),
    database: z.enum(['postgres', 'embedded']),
    checks: z.object({
      redis: z
        .enum(['ok', 'degraded', 'not_configured'])
        .describe(
          'The shared rate-limit store. `degraded`: Redis does not answer, so rate limits are ' +
            'not enforced; the instance still serves, so readiness does not fail.',
        ),
    }),
  })
  .meta({ example: { status: 'ready', database: 'postgres', checks: { redis: 'ok' } } });

/** Probes for orchestrators and the Prometheus scrape endpoint. Not rate limited. */
export const operationsRoutes: FastifyPluginAsyncZod<OperationsRoutesOptions> = async (
  app,
  { database, redis, metrics, readinessTimeoutMs },
) => {
  app.get(
    '/healthz',
    {
      config: { rateLimit: false },
      schema: {
        operationId: 'getHealth',
        tags: ['operations'],
        security: PUBLIC,
        summary: 'Liveness: the process is up',
        response: { 200: HealthSchema },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { rateLimit: false },
      schema: {
        operationId: 'getReadiness',
        tags: ['operations'],
        security: PUBLIC,
        summary: 'Readiness: the database answers a round trip (Redis is only reported)',
        response: { 200: ReadinessSchema, ...problemResponses(503) },
      },
    },
    async (request) => {
      // Both round trips at once; Redis's is bounded by its command timeout.
      const redisCheck = redis ? redis.check() : Promise.resolve('not_configured' as const);
      try {
        await database.ping(readinessTimeoutMs);
      } catch (err) {
        // The database module logs the outage once; probes repeat every few seconds.
        request.log.debug({ err }, 'readiness check failed');
        throw new ServiceUnavailableError('The database is not reachable.', 'database_unavailable');
      }
      return {
        status: 'ready' as const,
        database: database.engine,
        checks: { redis: await redisCheck },
      };
    },
  );

  app.get(
    '/metrics',
    {
      config: { rateLimit: false },
      schema: {
        operationId: 'getMetrics',
        tags: ['operations'],
        security: PUBLIC,
        summary: 'Prometheus metrics (text exposition format)',
        response: {
          200: {
            description: 'Metrics in the Prometheus text format.',
            content: { 'text/plain': { schema: z.string() } },
          },
        },
      },
    },
    async (_request, reply) => {
      reply.type(metrics.contentType);
      return metrics.metrics();
    },
  );
};
