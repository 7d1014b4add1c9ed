import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, PageQuery, pageOf } from '../../http/schemas.js';
import {
  ApiKeySchema,
  CreateApiKeyBody,
  CreatedApiKeySchema,
  toApiKey,
} from './api-keys.schemas.js';
import type { ApiKeysService } from './api-keys.service.js';

/** `/v1/api-keys`: created and revoked by owners and admins, never by another key. */
export const apiKeysRoutes: FastifyPluginAsyncZod<{ apiKeys: ApiKeysService }> = async (
  app,
  { apiKeys },
) => {
  const security = BEARER;

  app.get(
    '/api-keys',
    {
      config: { auth: { permission: 'api-keys:read' } },
      schema: {
        operationId: 'listApiKeys',
        tags: ['api-keys'],
        summary: 'List API keys (prefix, scopes, last use)',
        security,
        querystring: PageQuery.extend({
          includeRevoked: z
            .enum(['true', 'false'])
            .default('false')
            .transform((v) => v === 'true'),
        }),
        answers: { 200: { description: 'One page of API keys (never the keys themselves).' } },
        response: { 200: pageOf(ApiKeySchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await apiKeys.list(accountIdOf(request), request.query);
      return { data: page.rows.map(toApiKey), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/api-keys',
    {
      config: { auth: { permission: 'api-keys:write' } },
      schema: {
        operationId: 'createApiKey',
        tags: ['api-keys'],
        summary: 'Create a scoped API key (the key is shown once)',
        security,
        body: CreateApiKeyBody,
        answers: { 201: { description: 'The new key, shown in full this once.' } },
        response: { 201: CreatedApiKeySchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const { row, key } = await apiKeys.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      reply.code(201);
      return { ...toApiKey(row), key };
    },
  );

  app.get(
    '/api-keys/:id',
    {
      config: { auth: { permission: 'api-keys:read' } },
      schema: {
        operationId: 'getApiKey',
        tags: ['api-keys'],
        summary: 'One API key',
        security,
        params: IdParams,
        answers: { 200: { description: 'The API key (never the key itself).' } },
        response: { 200: ApiKeySchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toApiKey(await apiKeys.get(accountIdOf(request), request.params.id)),
  );

  app.delete(
    '/api-keys/:id',
    {
      config: { auth: { permission: 'api-keys:write' } },
      schema: {
        operationId: 'revokeApiKey',
        tags: ['api-keys'],
        summary: 'Revoke an API key (idempotent)',
        security,
        params: IdParams,
        response: {
          204: z.undefined().describe('Revoked.'),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      await apiKeys.revoke(requestContext(request), accountIdOf(request), request.params.id);
      return reply.code(204).send();
    },
  );
};
