import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { PageQuery, pageOf } from '../../http/schemas.js';
import {
  CreateNoticeBody,
  CreatePurposeBody,
  NoticeParams,
  NoticeVersionSchema,
  NoticeVersionSummarySchema,
  PurposeParams,
  PurposeSchema,
  toNoticeVersion,
  toNoticeVersionSummary,
  toPurpose,
  UpdatePurposeBody,
} from './purposes.schemas.js';
import type { PurposesService } from './purposes.service.js';

/** `/v1/purposes`: purposes of processing and their versioned notice texts. */
export const purposesRoutes: FastifyPluginAsyncZod<{ purposes: PurposesService }> = async (
  app,
  { purposes },
) => {
  const security = BEARER_OR_API_KEY;

  app.get(
    '/purposes',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'listPurposes',
        tags: ['purposes'],
        summary: 'List purposes, by key',
        security,
        querystring: PageQuery,
        answers: { 200: { description: 'One page of purposes.' } },
        response: { 200: pageOf(PurposeSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await purposes.list(accountIdOf(request), request.query);
      return { data: page.rows.map(toPurpose), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/purposes',
    {
      config: { auth: { permission: 'consents:write' } },
      schema: {
        operationId: 'createPurpose',
        tags: ['purposes'],
        summary: 'Create a purpose (its key is unique in the account)',
        security,
        body: CreatePurposeBody,
        answers: { 201: { description: 'The new purpose.' } },
        response: { 201: PurposeSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const row = await purposes.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      reply.code(201);
      return toPurpose(row);
    },
  );

  app.get(
    '/purposes/:id',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'getPurpose',
        tags: ['purposes'],
        summary: 'One purpose, by its id or its key',
        security,
        params: PurposeParams,
        answers: { 200: { description: 'The purpose.' } },
        response: { 200: PurposeSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toPurpose(await purposes.get(accountIdOf(request), request.params.id)),
  );

  app.patch(
    '/purposes/:id',
    {
      config: { auth: { permission: 'consents:write' } },
      schema: {
        operationId: 'updatePurpose',
        tags: ['purposes'],
        summary: 'Rename or describe a purpose (the key never changes)',
        security,
        params: PurposeParams,
        body: UpdatePurposeBody,
        answers: { 200: { description: 'The purpose as changed.' } },
        response: { 200: PurposeSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      toPurpose(
        await purposes.update(
          requestContext(request),
          accountIdOf(request),
          request.params.id,
          request.body,
        ),
      ),
  );

  app.get(
    '/purposes/:id/notices',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'listNoticeVersions',
        tags: ['purposes'],
        summary: 'List the notice versions of a purpose, oldest first (without their text)',
        security,
        params: PurposeParams,
        querystring: PageQuery,
        answers: { 200: { description: 'One page of notice versions.' } },
        response: {
          200: pageOf(NoticeVersionSummarySchema),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const page = await purposes.listNotices(
        accountIdOf(request),
        request.params.id,
        request.query,
      );
      return { data: page.rows.map(toNoticeVersionSummary), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/purposes/:id/notices',
    {
      config: { auth: { permission: 'consents:write' } },
      schema: {
        operationId: 'createNoticeVersion',
        tags: ['purposes'],
        summary: 'Write the next version of a purpose’s notice text',
        description:
          'Versions are numbered 1, 2, 3, … and never edited: there is no endpoint to change or ' +
          'delete one. A new wording is a new version; consents keep pointing at the version ' +
          'the person saw (Art. 7(1)).',
        security,
        params: PurposeParams,
        body: CreateNoticeBody,
        answers: { 201: { description: 'The new notice version.' } },
        response: { 201: NoticeVersionSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await purposes.createNotice(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
      );
      reply.code(201);
      return toNoticeVersion(row);
    },
  );

  app.get(
    '/purposes/:id/notices/:version',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'getNoticeVersion',
        tags: ['purposes'],
        summary: 'One notice version, with its text and SHA-256',
        security,
        params: NoticeParams,
        answers: { 200: { description: 'The notice version.' } },
        response: { 200: NoticeVersionSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      toNoticeVersion(
        await purposes.getNotice(accountIdOf(request), request.params.id, request.params.version),
      ),
  );
};
