import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { PUBLIC } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { HealthSchema, ReadinessSchema } from './health.schemas.js';
import type { HealthService } from './health.service.js';

export interface HealthRoutesOptions {
  health: HealthService;
  metrics: Registry;
}

/** Probes for orchestrators and the Prometheus scrape endpoint. Not rate limited. */
export const healthRoutes: FastifyPluginAsyncZod<HealthRoutesOptions> = async (
  app,
  { health, metrics },
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
        summary: 'Readiness: the database answers and its schema is current',
        description:
          'Ready when the database answers a round trip and has every migration this version ' +
          'ships. Redis is only reported (`checks.redis`), never failing readiness.',
        response: {
          200: ReadinessSchema,
          503: {
            ...problemResponses(503)[503],
            description:
              'Not ready: the database does not answer (`database_unavailable`), or its schema ' +
              'is behind this version (`migrations_pending`: run `npm run migrate`).',
          },
        },
      },
    },
    async (request) => health.readiness(request.log),
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
