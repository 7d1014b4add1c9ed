import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER, BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { AccountSchema, toAccount } from '../identity/identity.schemas.js';
import { AccountPatchBody, IfMatchHeaders } from './accounts.schemas.js';
import type { AccountsService } from './accounts.service.js';

/** `GET|PATCH /v1/account`: the caller's own account settings. */
export const accountRoutes: FastifyPluginAsyncZod<{ accounts: AccountsService }> = async (
  app,
  { accounts },
) => {
  app.get(
    '/account',
    {
      config: { auth: { permission: 'account:read' } },
      schema: {
        operationId: 'getAccount',
        tags: ['account'],
        summary: 'Your account: name, time zone, holiday country, DPO contact',
        security: BEARER_OR_API_KEY,
        answers: { 200: { description: 'Your account.', headers: ['ETag'] } },
        response: { 200: AccountSchema, ...problemResponses(401, 403) },
      },
    },
    async (request, reply) => {
      const account = await accounts.get(accountIdOf(request));
      setEtag(reply, account.version);
      return toAccount(account);
    },
  );

  app.patch(
    '/account',
    {
      config: { auth: { permission: 'account:write' } },
      schema: {
        operationId: 'updateAccount',
        tags: ['account'],
        summary: 'Change the account settings (send If-Match to avoid lost updates)',
        security: BEARER,
        headers: IfMatchHeaders,
        body: AccountPatchBody,
        answers: { 200: { description: 'The account as changed.', headers: ['ETag'] } },
        response: { 200: AccountSchema, ...problemResponses(400, 401, 403, 412) },
      },
    },
    async (request, reply) => {
      const account = await accounts.update(
        requestContext(request),
        accountIdOf(request),
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, account.version);
      return toAccount(account);
    },
  );
};
