import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, pageOf } from '../../http/schemas.js';
import type { Clock } from '../../lib/clock.js';
import {
  BreachIncidentSchema,
  CreateHeaders,
  IfMatchOnly,
  toBreachIncident,
} from './breach-incidents.schemas.js';
import {
  BatchParams,
  DeliveryReportsAnswer,
  DeliveryReportsBody,
  ExemptionBody,
  ListNoticesQuery,
  MAX_DELIVERY_REPORTS,
  NoticeBatchSchema,
  SubjectNoticeSchema,
  SubjectNoticesBody,
  toNoticeBatch,
  toSubjectNotice,
} from './subject-notices.schemas.js';
import type { SubjectNoticesService } from './subject-notices.service.js';

/**
 * `/v1/breach-incidents/{id}/subject-notices` and its exemption: telling the people affected by
 * a breach at high risk (Art. 34), or recording why they need not be told one by one (34(3)).
 * The customer's own sender delivers the notices: it reads the pending ones and reports back.
 */
export const subjectNoticesRoutes: FastifyPluginAsyncZod<{
  notices: SubjectNoticesService;
  clock: Clock;
}> = async (app, { notices, clock }) => {
  const security = BEARER_OR_API_KEY;
  const tags = ['breach-incidents'];

  app.post(
    '/breach-incidents/:id/subject-notice-exemption',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'recordBreachSubjectNoticeExemption',
        tags,
        summary: 'Record why the people affected need not be told one by one (Art. 34(3))',
        description:
          '`disproportionate_effort` needs `publicCommunication` (422 ' +
          '`public_communication_required`). Once recorded, subject notices are refused (409 ' +
          '`subject_notice_exempted`). A closed incident answers 409 `invalid_transition`.',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: ExemptionBody,
        answers: { 200: { description: 'The incident, with its exemption.', headers: ['ETag'] } },
        response: {
          200: BreachIncidentSchema,
          ...problemResponses(400, 401, 403, 404, 409, 412, 422),
        },
      },
    },
    async (request, reply) => {
      const row = await notices.recordExemption(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return toBreachIncident(row, clock.now());
    },
  );

  app.post(
    '/breach-incidents/:id/subject-notices',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'createBreachSubjectNotices',
        tags,
        summary: 'Notify the people affected: one batch, one notice per selected contact',
        description:
          'Art. 34: only at risk `high` (else 409 `subject_notice_not_required`) and without an ' +
          'Art. 34(3) exemption (409 `subject_notice_exempted`). The text’s four parts are ' +
          'each required (422 `notice_text_incomplete` naming each missing one); it is stored ' +
          'once with its SHA-256. Each notice is of kind `breach_notice`, outside every consent ' +
          'audience: unsubscribed contacts are told too. A selection of nobody is 422 ' +
          '`no_contacts_selected`. One `breach_incident.subject_notices_ready` event per ' +
          'batch. Send `Idempotency-Key` to make retries safe.',
        security,
        params: IdParams,
        headers: CreateHeaders,
        body: SubjectNoticesBody,
        answers: { 201: { description: 'The batch: its text, hash and notice count.' } },
        response: {
          201: NoticeBatchSchema,
          ...problemResponses(400, 401, 403, 404, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const created = await notices.createNotices(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
      );
      request.log.info(
        { incidentId: request.params.id, batchId: created.batch.id, notices: created.noticeCount },
        'breach subject notices created',
      );
      reply.code(201);
      return toNoticeBatch(created);
    },
  );

  app.get(
    '/breach-incidents/:id/subject-notices',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'listBreachSubjectNotices',
        tags,
        summary: 'The incident’s subject notices, oldest first (the sender reads `pending`)',
        description:
          'Each notice carries where to reach the person. A sender reads `status=pending` page ' +
          'by page and reports each delivery at `…/subject-notices/delivery-reports`.',
        security,
        params: IdParams,
        querystring: ListNoticesQuery,
        answers: { 200: { description: 'One page of notices.' } },
        response: { 200: pageOf(SubjectNoticeSchema), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const page = await notices.list(accountIdOf(request), request.params.id, request.query);
      return {
        data: page.rows.map(({ row, contact }) => toSubjectNotice(row, contact)),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.get(
    '/breach-incidents/:id/subject-notice-batches/:batchId',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'getBreachSubjectNoticeBatch',
        tags,
        summary: 'One batch of subject notices: the text to send, its hash, its selection',
        security,
        params: BatchParams,
        answers: { 200: { description: 'The batch.' } },
        response: { 200: NoticeBatchSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      toNoticeBatch(
        await notices.batch(accountIdOf(request), request.params.id, request.params.batchId),
      ),
  );

  app.post(
    '/breach-incidents/:id/subject-notices/delivery-reports',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'reportBreachSubjectNoticeDeliveries',
        tags,
        summary: `Report deliveries of subject notices (up to ${MAX_DELIVERY_REPORTS} at once)`,
        description:
          'All or none: an unknown notice (422 `notice_not_found`) or a delivered one reported ' +
          'failed (422 `invalid_transition`) refuses the whole request, naming each report. ' +
          '`pending` and `failed` notices may become `delivered` or `failed`; repeating ' +
          '`delivered` changes nothing (a retried report is harmless).',
        security,
        params: IdParams,
        body: DeliveryReportsBody,
        answers: { 200: { description: 'How many notices changed.' } },
        response: { 200: DeliveryReportsAnswer, ...problemResponses(400, 401, 403, 404, 422) },
      },
    },
    async (request) =>
      notices.reportDeliveries(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
      ),
  );
};
