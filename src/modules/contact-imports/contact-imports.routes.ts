import { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../errors.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, pageOf } from '../../http/schemas.js';
import {
  ContactImportErrorsPage,
  ContactImportSchema,
  errorCountsOf,
  ListImportErrorsQuery,
  ListImportsQuery,
  StartImportBody,
  StartImportHeaders,
  StartImportQuery,
  toContactImport,
  toContactImportError,
} from './contact-imports.schemas.js';
import type { ContactImportsService } from './contact-imports.service.js';

const CONTENT_TYPES = ['application/x-ndjson', 'text/csv'];

function unsupportedMediaType() {
  return new AppError(
    415,
    'unsupported_media_type',
    'Unsupported media type',
    'Send the file as the raw body with Content-Type application/x-ndjson or text/csv.',
  );
}

/**
 * `/v1/contact-imports`: bulk contact imports from a streamed NDJSON or CSV body, their
 * progress and their per-row error report. Receives its service from the route table.
 */
export const contactImportsRoutes: FastifyPluginAsyncZod<{
  imports: ContactImportsService;
  /** IMPORT_MAX_BYTES: the body limit of an upload. */
  maxBytes: number;
}> = async (app, { imports, maxBytes }) => {
  const security = BEARER_OR_API_KEY;
  const tags = ['contact-imports'];

  // The body stays a stream: the parser reads it at its own pace, so memory stays bounded
  // whatever the file size. Registered in this plugin only (encapsulated).
  app.addContentTypeParser(CONTENT_TYPES, (_request, payload, done) => done(null, payload));

  app.post(
    '/contact-imports',
    {
      bodyLimit: maxBytes,
      // The file streams in while it is imported: IMPORT_BODY_TIMEOUT_MS, not BODY_TIMEOUT_MS.
      // The import resumes by its Idempotency-Key, so it handles the key itself.
      config: { auth: { permission: 'contacts:write' }, longBody: true, idempotency: 'handler' },
      schema: {
        operationId: 'startContactImport',
        tags,
        summary: 'Import contacts from a streamed NDJSON or CSV file',
        description:
          'Send the file as the raw body (`Content-Type: application/x-ndjson` or `text/csv`): ' +
          'NDJSON lines and CSV records are `ContactImportRow`s (see the request body). ' +
          'Rows are written in batches of 1,000, each in one transaction ' +
          'with its row errors and the job counters, so an interruption leaves only whole ' +
          'batches. Contacts are upserted by email (absent fields keep their value, attributes ' +
          'merge); a consent event already recorded is not recorded again, so re-running a file ' +
          'duplicates nothing. Suppressed (erased) addresses are refused unless pending double ' +
          'opt-in; restricted contacts are left unchanged. Rows with problems are listed at ' +
          '`GET /v1/contact-imports/{id}/errors` (row, field, code; never the value). A file that ' +
          'cannot be read further (not text, broken CSV header or quoting) fails the job with ' +
          '422. Rows are written while the body streams in (no copy of the file is kept), and ' +
          'the response comes when the file is consumed; watch progress meanwhile at ' +
          '`GET /v1/contact-imports/{id}` (the `Location` of the job is also in the list). If ' +
          'the connection or the server dies, the job becomes `interrupted`: upload the same ' +
          'file again with the same `Idempotency-Key` and it resumes after the last committed ' +
          'row, once its first bytes prove to be the ones already imported (else 422 ' +
          '`import_content_mismatch`, nothing written, the job left as it was). Limits: a body ' +
          'over `IMPORT_MAX_BYTES` is refused with 413 `payload_too_large` (up front from ' +
          '`Content-Length`, else the job fails when it gets there); an upload running longer ' +
          'than `IMPORT_MAX_DURATION_MS` stops with 408 `too_slow`; once more than ' +
          '`IMPORT_MAX_ERROR_RATE` of the rows read (after `IMPORT_ERROR_RATE_MIN_ROWS`) were ' +
          'rejected it stops with 422 `too_many_errors`; in each case the job is `failed` with ' +
          'that code and keeps its whole batches. Only the first `IMPORT_MAX_STORED_ERRORS` row ' +
          'errors are stored (the job counts them all).',
        security,
        querystring: StartImportQuery,
        headers: StartImportHeaders,
        streamedBody: StartImportBody,
        answers: {
          201: {
            description: 'The import, finished: its counts, and its errors to list.',
            headers: ['Location'],
          },
        },
        response: {
          201: ContactImportSchema,
          ...problemResponses(400, 401, 403, 408, 409, 413, 415, 422),
        },
      },
    },
    async (request, reply) => {
      const body = request.body as unknown;
      if (!(body instanceof Readable)) throw unsupportedMediaType();
      const contentType = (request.headers['content-type'] ?? '').toLowerCase();
      const format =
        request.query.format ?? (contentType.startsWith('text/csv') ? 'csv' : 'ndjson');
      const length = request.headers['content-length'];
      const { job, replayed } = await imports.run(
        requestContext(request),
        accountIdOf(request),
        {
          format,
          missingConsent: request.query.missingConsent,
          purpose: request.query.purpose,
          noticeVersion: request.query.noticeVersion,
          idempotencyKey: request.headers['idempotency-key'],
          declaredBytes: length === undefined ? undefined : Number(length),
        },
        body,
      );
      if (replayed) reply.header('idempotent-replayed', 'true');
      request.log.info(
        {
          importId: job.id,
          processed: job.processed_rows,
          created: job.created_count,
          updated: job.updated_count,
          rejected: job.rejected_count,
          attempts: job.attempts,
          replayed,
        },
        'contact import completed',
      );
      reply.header('location', `/v1/contact-imports/${job.id}`).code(201);
      return toContactImport(job);
    },
  );

  app.get(
    '/contact-imports',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'listContactImports',
        tags,
        summary: 'List import jobs, oldest first (cursor-paginated, filter by status)',
        security,
        querystring: ListImportsQuery,
        answers: { 200: { description: 'One page of import jobs.' } },
        response: { 200: pageOf(ContactImportSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await imports.list(accountIdOf(request), request.query);
      return { data: page.rows.map(toContactImport), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/contact-imports/:id',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'getContactImport',
        tags,
        summary: 'Get an import job: status and counts',
        security,
        params: IdParams,
        answers: { 200: { description: 'The import job.' } },
        response: { 200: ContactImportSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toContactImport(await imports.get(accountIdOf(request), request.params.id)),
  );

  app.get(
    '/contact-imports/:id/errors',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'listContactImportErrors',
        tags,
        summary: 'List an import’s row errors (in file order, cursor-paginated)',
        security,
        params: IdParams,
        querystring: ListImportErrorsQuery,
        answers: { 200: { description: 'One page of row errors, with the counts.' } },
        response: {
          200: ContactImportErrorsPage,
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const page = await imports.listErrors(accountIdOf(request), request.params.id, request.query);
      return {
        data: page.rows.map(toContactImportError),
        nextCursor: page.nextCursor,
        ...errorCountsOf(page.job),
      };
    },
  );
};
