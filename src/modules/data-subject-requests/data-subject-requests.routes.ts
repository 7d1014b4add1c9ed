import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BadRequestError } from '../../errors.js';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, Instant, pageOf } from '../../http/schemas.js';
import type { Clock } from '../../lib/clock.js';
import type { ExportProtection } from '../../lib/export-encryption.js';
import { authorize } from '../identity/auth.plugin.js';
import {
  CancelBody,
  CompleteBody,
  CompleteHeaders,
  CreateHeaders,
  CreateRequestBody,
  DataSubjectRequestSchema,
  DataSubjectRequestSummarySchema,
  ExtendBody,
  IfMatchOnly,
  ListRequestsQuery,
  RejectBody,
  toDataSubjectRequest,
  toDataSubjectRequestSummary,
  VerifyIdentityBody,
} from './data-subject-requests.schemas.js';
import {
  COMPLETION_PERMISSION,
  type DataSubjectRequestsService,
} from './data-subject-requests.service.js';

const TimelineEntry = z.object({
  id: z.string(),
  occurredAt: Instant,
  action: z.string(),
  actor: z.object({ type: z.string(), id: z.string().nullable() }),
  changedFields: z.array(z.string()).describe('Field names only, never values.'),
});

const VerifyIdentityAnswer = z.object({
  request: DataSubjectRequestSchema,
  link: z
    .object({
      token: z.string(),
      url: z
        .string()
        .describe(
          'The link’s path (prefix it with the service’s public base URL): opening it shows ' +
            'the subject a page whose button confirms the request.',
        ),
      expiresAt: Instant,
    })
    .nullable()
    .describe('For `method: link`: shown only here, and (sealed) on the event feed.'),
});

function protectionOf(request: FastifyRequest): ExportProtection | undefined {
  const passphrase = request.headers['x-export-passphrase'];
  const recipient = request.headers['x-export-recipient'];
  if (typeof passphrase === 'string' && typeof recipient === 'string') {
    throw new BadRequestError(
      'export_protection_ambiguous',
      'Send either X-Export-Passphrase or X-Export-Recipient, not both.',
    );
  }
  if (typeof passphrase === 'string') return { passphrase };
  if (typeof recipient === 'string') return { recipient };
  return undefined;
}

/**
 * `/v1/data-subject-requests`: receive a request (Art. 12), verify who asked, extend the
 * deadline once, then complete it (the action runs in the request's transaction) or refuse it
 * with reasons. Receives its service from the route table.
 */
export const dataSubjectRequestsRoutes: FastifyPluginAsyncZod<{
  requests: DataSubjectRequestsService;
  clock: Clock;
}> = async (app, { requests, clock }) => {
  const security = BEARER_OR_API_KEY;
  const tags = ['data-subject-requests'];
  const one = DataSubjectRequestSchema;
  const show = (row: Parameters<typeof toDataSubjectRequest>[0]) =>
    toDataSubjectRequest(row, clock.now());

  app.post(
    '/data-subject-requests',
    {
      config: { auth: { permission: 'requests:write' } },
      schema: {
        operationId: 'createDataSubjectRequest',
        tags,
        summary: 'Record a data-subject request (starts the Art. 12(3) clock)',
        description:
          'The due date is one month from the local day of `receivedAt` in the account’s time ' +
          'zone; a weekend or (with `holidayCountry` set on the account) a public holiday moves ' +
          'it to the next working day. The subject is matched to a contact by `contactId` or ' +
          'address; none found is valid (no data held). A reused `externalId` is 409 ' +
          '`request_exists`. Send `Idempotency-Key` to make retries safe.',
        security,
        headers: CreateHeaders,
        body: CreateRequestBody,
        answers: {
          201: {
            description: 'The recorded request, with its due date.',
            headers: ['ETag', 'Location'],
          },
        },
        response: { 201: one, ...problemResponses(400, 401, 403, 409, 422) },
      },
    },
    async (request, reply) => {
      const row = await requests.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      request.log.info({ requestId: row.id, type: row.type }, 'data-subject request received');
      setEtag(reply, row.version);
      reply.header('location', `/v1/data-subject-requests/${row.id}`).code(201);
      return show(row);
    },
  );

  app.get(
    '/data-subject-requests',
    {
      config: { auth: { permission: 'requests:read' } },
      schema: {
        operationId: 'listDataSubjectRequests',
        tags,
        summary: 'List requests (by creation or by deadline; filterable)',
        description:
          'Each item is a summary (deadline and state); the subject’s address, notes and ' +
          'decision details are read one request at a time with `GET …/{id}`.',
        security,
        querystring: ListRequestsQuery,
        answers: { 200: { description: 'One page of requests.' } },
        response: {
          200: pageOf(DataSubjectRequestSummarySchema),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const page = await requests.list(accountIdOf(request), request.query);
      // One instant for the whole page: every row's daysRemaining is counted from it.
      const now = clock.now();
      return {
        data: page.rows.map((row) => toDataSubjectRequestSummary(row, now)),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.get(
    '/data-subject-requests/:id',
    {
      config: { auth: { permission: 'requests:read' } },
      schema: {
        operationId: 'getDataSubjectRequest',
        tags,
        summary: 'One request (with its ETag, days remaining and overdue flag)',
        security,
        params: IdParams,
        answers: { 200: { description: 'The request.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await requests.get(accountIdOf(request), request.params.id);
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.get(
    '/data-subject-requests/:id/timeline',
    {
      config: { auth: { permission: 'requests:read' } },
      schema: {
        operationId: 'getDataSubjectRequestTimeline',
        tags,
        summary: 'What happened to the request, oldest first (its audit entries)',
        security,
        params: IdParams,
        response: {
          200: z.object({ data: z.array(TimelineEntry) }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const rows = await requests.timeline(accountIdOf(request), request.params.id);
      return {
        data: rows.map((row) => ({
          id: String(row.id),
          occurredAt: row.occurred_at.toISOString(),
          action: row.action,
          actor: { type: row.actor_type, id: row.actor_id },
          changedFields: row.changed_fields,
        })),
      };
    },
  );

  app.post(
    '/data-subject-requests/:id/verify-identity',
    {
      config: { auth: { permission: 'requests:write' } },
      schema: {
        operationId: 'verifyDataSubjectRequestIdentity',
        tags,
        summary: 'Verify who asked: record a manual check, or issue a verification link',
        description:
          '`manual` moves the request to `identity_verified`. `link` issues a single-use link ' +
          '(REQUEST_VERIFICATION_TTL_HOURS; a new one replaces the old), put on the event feed ' +
          'as `data_subject_request.identity_verification_requested` for your systems to send. ' +
          'Opening it (`GET /v1/public/data-subject-request-verifications/{token}`) shows the ' +
          'subject a page whose button confirms; programs may POST to it directly.',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: VerifyIdentityBody,
        answers: { 200: { description: 'The request, its identity verified.', headers: ['ETag'] } },
        response: { 200: VerifyIdentityAnswer, ...problemResponses(400, 401, 403, 404, 409, 412) },
      },
    },
    async (request, reply) => {
      const { row, link } = await requests.verifyIdentity(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return { request: show(row), link };
    },
  );

  /** A decision on an open request: POST …/{id}/<action>, If-Match honoured, the request back. */
  function transition<B extends z.ZodType>(
    action: string,
    doc: { operationId: string; summary: string; description?: string },
    body: B,
    run: (
      ctx: ReturnType<typeof requestContext>,
      accountId: string,
      id: string,
      input: z.output<B>,
      version: number | undefined,
    ) => Promise<Parameters<typeof show>[0]>,
  ) {
    app.post(
      `/data-subject-requests/:id/${action}`,
      {
        config: { auth: { permission: 'requests:write' } },
        schema: {
          ...doc,
          tags,
          security,
          params: IdParams,
          headers: IfMatchOnly,
          body,
          answers: { 200: { description: 'The request after the decision.', headers: ['ETag'] } },
          response: { 200: one, ...problemResponses(400, 401, 403, 404, 409, 412) },
        },
      },
      async (request, reply) => {
        const row = await run(
          requestContext(request),
          accountIdOf(request),
          request.params.id,
          request.body as z.output<B>,
          expectedVersion(request),
        );
        setEtag(reply, row.version);
        return show(row);
      },
    );
  }

  transition(
    'extend',
    {
      operationId: 'extendDataSubjectRequest',
      summary: 'Extend the deadline once by 1 or 2 months (Art. 12(3))',
      description:
        'Counted again from the receipt. Only while open and at or before the original due ' +
        'time (409 `extension_too_late`), once (409 `already_extended`). Tell the subject, ' +
        'with the reason, by `extension.subjectMustBeInformedBy`.',
    },
    ExtendBody,
    (ctx, accountId, id, input, version) => requests.extend(ctx, accountId, id, input, version),
  );

  transition(
    'reject',
    {
      operationId: 'rejectDataSubjectRequest',
      summary: 'Refuse the request, with reasons (Art. 12(4))',
      description:
        'The subject must have been told why and of the right to complain to a supervisory ' +
        'authority and to seek a judicial remedy (`complaintInformationGiven: true`). An ' +
        'objection to direct marketing cannot be refused (409 `objection_absolute`, Art. ' +
        '21(3)). A decision after the due time is kept and marked `late`.',
    },
    RejectBody,
    (ctx, accountId, id, input, version) => requests.reject(ctx, accountId, id, input, version),
  );

  transition(
    'cancel',
    {
      operationId: 'cancelDataSubjectRequest',
      summary: 'Close the request because the subject withdrew it',
    },
    CancelBody,
    (ctx, accountId, id, input, version) =>
      requests.cancel(ctx, accountId, id, input.reason, version),
  );

  app.post(
    '/data-subject-requests/:id/complete',
    {
      config: { auth: { permission: 'requests:write' } },
      schema: {
        operationId: 'completeDataSubjectRequest',
        tags,
        summary: 'Carry out the request and close it, in one transaction',
        description:
          'erasure: the contact is erased (its address suppressed; with no contact, the ' +
          'address is suppressed all the same). rectification: the request’s `corrections` ' +
          'are applied. restriction: the contact is restricted. objection: a `withdrawn` ' +
          'ledger event per purpose named (all current ones when none). access/portability: ' +
          'the export plus the Art. 15(1) facts, encrypted with X-Export-Passphrase or ' +
          'X-Export-Recipient (400 `export_protection_required`), kept for ' +
          'REQUEST_EXPORT_TTL_DAYS at `GET …/export`. Rectification, erasure and restriction ' +
          'record the recipients told (Art. 19) or why none were. Needs, besides ' +
          '`requests:write`, the action’s own permission (`contacts:write`, `consents:write` ' +
          'or `contacts:read`). A failure rolls everything back and leaves the request open.',
        security,
        params: IdParams,
        headers: CompleteHeaders,
        body: CompleteBody,
        answers: { 200: { description: 'The request, completed.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const row = await requests.complete(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        {
          protection: protectionOf(request),
          expectedVersion: expectedVersion(request),
          authorizeAction: (type) =>
            authorize(request.actor!, { permission: COMPLETION_PERMISSION[type] }),
        },
      );
      request.log.info({ requestId: row.id, type: row.type }, 'data-subject request completed');
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.get(
    '/data-subject-requests/:id/export',
    {
      config: { auth: { permission: 'requests:read' } },
      schema: {
        operationId: 'getDataSubjectRequestExport',
        tags,
        summary: 'The encrypted answer to an access or portability request',
        description:
          'An ASCII-armored age file (open it with `age -d`), kept REQUEST_EXPORT_TTL_DAYS ' +
          'after completion (then 410 `export_expired`); its SHA-256 and size stay in the ' +
          'request’s `result.export`. Needs `contacts:read` as well.',
        security,
        params: IdParams,
        response: {
          200: {
            description: 'The armored age file.',
            content: { 'text/plain': { schema: z.string() } },
          },
          ...problemResponses(400, 401, 403, 404, 410),
        },
      },
    },
    async (request, reply) => {
      authorize(request.actor!, { permission: 'contacts:read' });
      const { armored } = await requests.exportFile(accountIdOf(request), request.params.id);
      return reply
        .type('text/plain; charset=utf-8')
        .header(
          'content-disposition',
          `attachment; filename="data-subject-request-${request.params.id}.json.age"`,
        )
        .send(armored);
    },
  );
};
