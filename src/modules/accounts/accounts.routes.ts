import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER, BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { Email } from '../../http/schemas.js';
import { AccountSchema, TimeZone, toAccount } from '../identity/identity.schemas.js';
import type { AccountsService } from './accounts.service.js';

const AccountPatchBody = z
  .object({
    name: z.string().trim().min(1).max(200).optional(),
    timeZone: TimeZone.optional(),
    dpo: z
      .object({
        name: z.string().trim().min(1).max(200).nullable().optional(),
        email: Email.nullable().optional(),
        phone: z.string().trim().min(3).max(40).nullable().optional(),
      })
      .optional(),
  })
  .strict()
  .meta({
    example: {
      timeZone: 'Europe/Ljubljana',
      dpo: { name: 'Privacy Officer', email: 'dpo@example.com', phone: '+386 1 000 0000' },
    },
  });

const IfMatchHeaders = z.object({
  'if-match': z.string().max(100).optional().describe('ETag from a previous read; 412 if stale.'),
});

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
        summary: 'Your account: name, time zone, DPO contact',
        security: BEARER_OR_API_KEY,
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
