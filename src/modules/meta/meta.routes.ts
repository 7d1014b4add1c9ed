import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PUBLIC } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';

export const ApiIndexSchema = z
  .object({
    name: z.string(),
    version: z.string(),
    documentation: z.string().describe('Interactive API documentation.'),
    openapi: z.string().describe('The OpenAPI 3.1 document.'),
  })
  .meta({
    id: 'ApiIndex',
    example: { name: 'custodian', version: 'v1', documentation: '/docs', openapi: '/openapi.json' },
  });

/** `GET /v1`: where to find the contract. */
export const metaRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/',
    {
      schema: {
        operationId: 'getApiIndex',
        tags: ['meta'],
        security: PUBLIC,
        summary: 'API index: version and where the documentation lives',
        answers: { 200: { description: 'The API index.' } },
        response: { 200: ApiIndexSchema, ...problemResponses(429) },
      },
    },
    async () => ({
      name: 'custodian',
      version: 'v1',
      documentation: '/docs',
      openapi: '/openapi.json',
    }),
  );
};
