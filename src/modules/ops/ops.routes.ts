import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { requestContext } from '../../http/request-context.js';
import { IdParams, PageQuery, pageOf } from '../../http/schemas.js';
import { AccountSchema, toAccount, toUser, UserSchema } from '../identity/identity.schemas.js';
import {
  PasswordSetupLinkSchema,
  toPasswordSetupLink,
} from '../password-setups/password-setups.schemas.js';
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
        description:
          'The owner gets no password: the response carries, once, a single-use link with which ' +
          'they choose it (`POST /v1/public/password-setups/{token}`), valid for ' +
          'PASSWORD_SETUP_TTL_HOURS (72 by default). Until then they cannot sign in. Only the ' +
          'token’s hash is stored; pass the link to the owner alone.',
        body: CreateAccountBody,
        response: {
          201: z.object({
            account: AccountSchema,
            owner: UserSchema,
            passwordSetup: PasswordSetupLinkSchema,
          }),
          ...problemResponses(400, 401, 403, 409),
        },
      },
    },
    async (request, reply) => {
      const { account, owner, passwordSetup } = await ops.createAccount(
        requestContext(request),
        request.body,
      );
      reply.code(201);
      return {
        account: toAccount(account),
        owner: toUser(owner),
        passwordSetup: toPasswordSetupLink(passwordSetup),
      };
    },
  );

  app.post(
    '/ops/accounts/:id/owner-password-setups',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsReissueOwnerPasswordSetup',
        tags: ['ops'],
        summary: 'Issue a new set-password link for an account’s owner',
        description:
          'For an owner who has not set a password yet (the link expired or was lost): a new ' +
          'single-use link, returned once; the older one stops working. 409 ' +
          '`password_already_set` once the owner has a password.',
        security,
        params: IdParams,
        response: {
          201: z.object({ owner: UserSchema, passwordSetup: PasswordSetupLinkSchema }),
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const { owner, passwordSetup } = await ops.reissueOwnerPasswordSetup(
        requestContext(request),
        request.params.id,
      );
      reply.code(201);
      return { owner: toUser(owner), passwordSetup: toPasswordSetupLink(passwordSetup) };
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
