import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import { pageByCreatedAt } from '../../db/keyset.js';
import type { DB } from '../../db/schema.js';
import { NotFoundError } from '../../errors.js';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { requestContext } from '../../http/request-context.js';
import { Email, IdParams, PageQuery, pageOf } from '../../http/schemas.js';
import { recordAudit } from '../audit/audit.service.js';
import type { AuthService } from '../identity/auth.service.js';
import {
  AccountSchema,
  Password,
  TimeZone,
  toAccount,
  toUser,
  UserSchema,
} from '../identity/identity.schemas.js';

const CreateAccountBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    timeZone: TimeZone.optional(),
    owner: z.object({ email: Email, password: Password }),
  })
  .meta({
    example: {
      name: 'Example Shop d.o.o.',
      timeZone: 'Europe/Ljubljana',
      owner: { email: 'dpo@example.com', password: 'staple orbit lantern quietly' },
    },
  });

/**
 * `/v1/ops/...`: the provider's operations staff. Their actions on an account are written to
 * that account's audit chain, so the customer can see what the provider did.
 */
export const opsRoutes: FastifyPluginAsyncZod<{ db: Kysely<DB>; auth: AuthService }> = async (
  app,
  { db, auth },
) => {
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
      const ctx = requestContext(request);
      const { account, owner } = await db.transaction().execute(async (trx) => {
        const created = await auth.createAccountWithOwner(
          trx,
          {
            accountName: request.body.name,
            timeZone: request.body.timeZone,
            email: request.body.owner.email,
            password: request.body.owner.password,
          },
          'body.owner.password',
        );
        await recordAudit(trx, ctx, {
          accountId: created.account.id,
          action: 'account.created',
          entityType: 'account',
          entityId: created.account.id,
          changedFields: ['name', 'timeZone'],
        });
        await recordAudit(trx, ctx, {
          accountId: created.account.id,
          action: 'user.created',
          entityType: 'user',
          entityId: created.owner.id,
          changedFields: ['email', 'role', 'password'],
        });
        return created;
      });
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
      const page = await pageByCreatedAt(db.selectFrom('accounts').selectAll(), request.query);
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
      const row = await db
        .selectFrom('accounts')
        .selectAll()
        .where('id', '=', request.params.id)
        .executeTakeFirst();
      if (!row) throw new NotFoundError('The account does not exist.');
      return toAccount(row);
    },
  );
};
