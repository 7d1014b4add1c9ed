import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { Database } from '../../db/database.js';
import { ServiceUnavailableError } from '../../errors.js';
import { problemResponses } from '../../http/problem.js';
import { PUBLIC } from '../../http/security.js';

export interface OperationsRoutesOptions {
  database: Database;
  metrics: Registry;
  readinessTimeoutMs: number;
}

const HealthSchema = z.object({ status: z.literal('ok') }).meta({ example: { status: 'ok' } });
const ReadinessSchema = z
  .object({ status: z.literal('ready'), database: z.enum(['postgres', 'embedded']) })
  .meta({ example: { status: 'ready', database: 'postgres' } });

/** Probes for orchestrators and the Prometheus scrape endpoint. Not rate limited. */
export const operationsRoutes: FastifyPluginAsyncZod<OperationsRoutesOptions> = async (
  app,
  { database, metrics, readinessTimeoutMs },
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
        summary: 'Readiness: the database answers a round trip',
        response: { 200: ReadinessSchema, ...problemResponses(503) },
      },
    },
    async (request) => {
      try {
        await database.ping(readinessTimeoutMs);
      } catch (err) {
        // The database module logs the outage once; probes repeat every few seconds.
        request.log.debug({ err }, 'readiness check failed');
        throw new ServiceUnavailableError('The database is not reachable.', 'database_unavailable');
      }
      return { status: 'ready' as const, database: database.engine };
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
