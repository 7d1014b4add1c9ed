import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, pageOf } from '../../http/schemas.js';
import { toUser, UserSchema } from '../identity/identity.schemas.js';
import { ChangeRoleBody, createUserBody, ListUsersQuery } from './users.schemas.js';
import type { UsersService } from './users.service.js';

/** `/v1/users`: the account's people. Owners and admins manage; members read. */
export const usersRoutes: FastifyPluginAsyncZod<{
  users: UsersService;
  /** PASSWORD_MIN_LENGTH, stated in the contract. */
  passwordMinLength: number;
}> = async (app, { users, passwordMinLength }) => {
  const security = BEARER;

  app.get(
    '/users',
    {
      config: { auth: { permission: 'users:read' } },
      schema: {
        operationId: 'listUsers',
        tags: ['users'],
        summary: 'List the users of your account',
        security,
        querystring: ListUsersQuery,
        answers: { 200: { description: 'One page of users.' } },
        response: { 200: pageOf(UserSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await users.list(accountIdOf(request), request.query);
      return { data: page.rows.map(toUser), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/users',
    {
      config: { auth: { permission: 'users:write' } },
      schema: {
        operationId: 'createUser',
        tags: ['users'],
        summary: 'Add a user to your account',
        security,
        body: createUserBody(passwordMinLength),
        answers: { 201: { description: 'The new user.' } },
        response: { 201: UserSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const user = await users.create(requestContext(request), accountIdOf(request), request.body);
      reply.code(201);
      return toUser(user);
    },
  );

  app.get(
    '/users/:id',
    {
      config: { auth: { permission: 'users:read' } },
      schema: {
        operationId: 'getUser',
        tags: ['users'],
        summary: 'One user of your account',
        security,
        params: IdParams,
        answers: { 200: { description: 'The user.' } },
        response: { 200: UserSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toUser(await users.get(accountIdOf(request), request.params.id)),
  );

  app.patch(
    '/users/:id',
    {
      config: { auth: { permission: 'users:write' } },
      schema: {
        operationId: 'changeUserRole',
        tags: ['users'],
        summary: "Change a user's role",
        security,
        params: IdParams,
        body: ChangeRoleBody,
        answers: { 200: { description: 'The user with the new role.' } },
        response: { 200: UserSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) =>
      toUser(
        await users.changeRole(
          requestContext(request),
          accountIdOf(request),
          request.params.id,
          request.body.role,
        ),
      ),
  );

  app.delete(
    '/users/:id',
    {
      config: { auth: { permission: 'users:write' } },
      schema: {
        operationId: 'removeUser',
        tags: ['users'],
        summary: 'Remove a user (their sessions end)',
        security,
        params: IdParams,
        response: {
          204: z.undefined().describe('Removed.'),
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      await users.remove(requestContext(request), accountIdOf(request), request.params.id);
      return reply.code(204).send();
    },
  );
};
