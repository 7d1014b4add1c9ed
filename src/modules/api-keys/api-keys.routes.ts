import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiKeyRow } from '../../db/schema.js';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { Id, IdParams, PageQuery, pageOf, Timestamp, toIso } from '../../http/schemas.js';
import { API_KEY_SCOPES } from '../identity/actor.js';
import type { ApiKeysService } from './api-keys.service.js';

const ApiKeySchema = z
  .object({
    id: Id,
    name: z.string(),
    prefix: z.string().describe('Public part of the key (`cst_<prefix>_…`), to recognise it.'),
    scopes: z.array(z.enum(API_KEY_SCOPES)),
    createdAt: Timestamp,
    expiresAt: Timestamp.nullable(),
    lastUsedAt: Timestamp.nullable().describe('Updated at most once a minute.'),
    revokedAt: Timestamp.nullable(),
  })
  .meta({
    id: 'ApiKey',
    example: {
      id: '2f1e0d9c-8b7a-4654-9321-0fedcba98765',
      name: 'CRM sync',
      prefix: '3f9a1c0b7d2e4a56',
      scopes: ['contacts:read', 'contacts:write'],
      createdAt: '2026-11-25T14:00:00.000Z',
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    },
  });

const CreatedApiKeySchema = ApiKeySchema.extend({
  key: z.string().describe('The full key. Shown only in this response: store it now.'),
}).meta({ id: 'CreatedApiKey' });

const CreateApiKeyBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    scopes: z.array(z.enum(API_KEY_SCOPES)).min(1),
    expiresAt: Timestamp.optional().refine((v) => v === undefined || new Date(v) > new Date(), {
      message: 'must be in the future',
    }),
  })
  .meta({ example: { name: 'CRM sync', scopes: ['contacts:read', 'contacts:write'] } });

function toApiKey(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes as (typeof API_KEY_SCOPES)[number][],
    createdAt: toIso(row.created_at),
    expiresAt: toIso(row.expires_at),
    lastUsedAt: toIso(row.last_used_at),
    revokedAt: toIso(row.revoked_at),
  };
}

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
