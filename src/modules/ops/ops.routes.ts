import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { requestContext } from '../../http/request-context.js';
import { IdParams, PageQuery, pageOf } from '../../http/schemas.js';
import { AccountSchema, toAccount, toUser, UserSchema } from '../identity/identity.schemas.js';
import { CreateAccountBody } from './ops.schemas.js';
import type { OpsService } from './ops.service.js';

/**
 * `/v1/ops/...`: the provider's operations staff. Their actions on an account are written to
 * that account's audit chain, so the customer can see what the provider did.
 */
export const opsRoutes: FastifyPluginAsyncZod<{ ops: OpsService }> = async (app, { ops }) => {
  const security = BEARER;

  app.post(
    '/ops/accounts',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsCreateAccount',
        tags: ['ops'],
        summary: 'Create a customer account and its first owner',
        security,
        body: CreateAccountBody,
        response: {
          201: z.object({ account: AccountSchema, owner: UserSchema }),
          ...problemResponses(400, 401, 403, 409),
        },
      },
    },
    async (request, reply) => {
      const { account, owner } = await ops.createAccount(requestContext(request), request.body);
      reply.code(201);
      return { account: toAccount(account), owner: toUser(owner) };
    },
  );

  app.get(
    '/ops/accounts',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsListAccounts',
        tags: ['ops'],
        summary: 'List customer accounts',
        security,
        querystring: PageQuery,
        response: { 200: pageOf(AccountSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await ops.listAccounts(request.query);
      return { data: page.rows.map(toAccount), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/ops/accounts/:id',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsGetAccount',
        tags: ['ops'],
        summary: 'One customer account',
        security,
        params: IdParams,
        response: { 200: AccountSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const row = await ops.getAccount(request.params.id);
      return toAccount(row);
    },
  );
};
