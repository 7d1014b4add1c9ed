import { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, Instant, pageOf } from '../../http/schemas.js';
import type { Clock } from '../../lib/clock.js';
import {
  AssessmentBody,
  AuthorityNotificationSchema,
  BreachIncidentSchema,
  BreachRegisterEntrySchema,
  CloseBody,
  CreateBreachIncidentBody,
  CreateHeaders,
  IfMatchOnly,
  ListIncidentsQuery,
  NotificationBody,
  PatchBreachIncidentBody,
  REGISTER_CSV_HEADER,
  RegisterQuery,
  registerCsvRow,
  toAuthorityNotification,
  toBreachIncident,
} from './breach-incidents.schemas.js';
import type { BreachIncidentsService } from './breach-incidents.service.js';

const TimelineEntry = z.object({
  id: z.string(),
  occurredAt: Instant,
  action: z.string(),
  actor: z.object({ type: z.string(), id: z.string().nullable() }),
  changedFields: z.array(z.string()).describe('Field names only, never values.'),
});

const NotificationAnswer = z.object({
  notification: AuthorityNotificationSchema,
  incident: BreachIncidentSchema,
});

/**
 * `/v1/breach-incidents` and `/v1/breach-register`: a personal-data breach from the moment the
 * controller became aware (the 72-hour clock of Art. 33(1)) through its assessment and the
 * phases of its notification to the supervisory authority (Art. 33(4)) to its closing, and
 * the register of all of them (Art. 33(5)).
 */
export const breachIncidentsRoutes: FastifyPluginAsyncZod<{
  breaches: BreachIncidentsService;
  clock: Clock;
}> = async (app, { breaches, clock }) => {
  const security = BEARER_OR_API_KEY;
  const tags = ['breach-incidents'];
  const one = BreachIncidentSchema;
  const show = (row: Parameters<typeof toBreachIncident>[0]) => toBreachIncident(row, clock.now());

  app.post(
    '/breach-incidents',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'createBreachIncident',
        tags,
        summary: 'Record a personal-data breach (starts the 72-hour clock of Art. 33(1))',
        description:
          '`authorityDeadlineAt` is `awareAt` + 72 hours on the instant (never three local ' +
          'days), computed here and stored. `awareAt` defaults to now; it may not be in the ' +
          'future, nor before `occurredAt`. Without `contactPoint` the account’s DPO fields ' +
          'are copied (none set: 422 `contact_point_required`). Send `Idempotency-Key` to ' +
          'make retries safe.',
        security,
        headers: CreateHeaders,
        body: CreateBreachIncidentBody,
        answers: {
          201: { description: 'The recorded incident.', headers: ['ETag', 'Location'] },
        },
        response: { 201: one, ...problemResponses(400, 401, 403, 409, 422) },
      },
    },
    async (request, reply) => {
      const row = await breaches.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      request.log.info({ incidentId: row.id }, 'breach incident recorded');
      setEtag(reply, row.version);
      reply.header('location', `/v1/breach-incidents/${row.id}`).code(201);
      return show(row);
    },
  );

  app.get(
    '/breach-incidents',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'listBreachIncidents',
        tags,
        summary: 'List incidents, oldest first (filter by status, or the overdue ones)',
        security,
        querystring: ListIncidentsQuery,
        answers: { 200: { description: 'One page of incidents.' } },
        response: { 200: pageOf(one), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await breaches.list(accountIdOf(request), request.query);
      const now = clock.now();
      return {
        data: page.rows.map((row) => toBreachIncident(row, now)),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.get(
    '/breach-incidents/:id',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'getBreachIncident',
        tags,
        summary: 'One incident (with its ETag, hours remaining and overdue flag)',
        security,
        params: IdParams,
        answers: { 200: { description: 'The incident.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await breaches.get(accountIdOf(request), request.params.id);
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.patch(
    '/breach-incidents/:id',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'updateBreachIncident',
        tags,
        summary: 'Change an incident’s facts (send If-Match); correct awareAt with a reason',
        description:
          'Changing other fields never moves `authorityDeadlineAt`. A new `awareAt` needs ' +
          '`awareAtCorrectionReason` (422 `correction_reason_required`): the deadline is ' +
          'computed again from it in the same transaction, the correction is kept in ' +
          '`awareAtCorrections`, and the audit entry names both fields. A closed incident ' +
          'cannot change (409 `invalid_transition`).',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: PatchBreachIncidentBody,
        answers: { 200: { description: 'The incident as changed.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const row = await breaches.update(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.get(
    '/breach-incidents/:id/timeline',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'getBreachIncidentTimeline',
        tags,
        summary: 'What happened to the incident, oldest first (its audit entries)',
        security,
        params: IdParams,
        response: {
          200: z.object({ data: z.array(TimelineEntry) }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const rows = await breaches.timeline(accountIdOf(request), request.params.id);
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
    '/breach-incidents/:id/assessment',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'assessBreachIncident',
        tags,
        summary: 'Record the risk to people and why (open → assessed)',
        description:
          'May be repeated while the incident is not closed (the latest stands; the timeline ' +
          'keeps each). A closed incident answers 409 `invalid_transition`.',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: AssessmentBody,
        answers: { 200: { description: 'The incident, assessed.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404, 409, 412) },
      },
    },
    async (request, reply) => {
      const row = await breaches.assess(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.get(
    '/breach-incidents/:id/authority-notifications',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'listBreachAuthorityNotifications',
        tags,
        summary: 'The phases of the notification to the supervisory authority, in order',
        security,
        params: IdParams,
        response: {
          200: z.object({ data: z.array(AuthorityNotificationSchema) }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const rows = await breaches.notifications(accountIdOf(request), request.params.id);
      return { data: rows.map(toAuthorityNotification) };
    },
  );

  app.post(
    '/breach-incidents/:id/authority-notifications',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'notifyBreachAuthority',
        tags,
        summary: 'Record a phase of the notification to the supervisory authority (Art. 33(4))',
        description:
          'Phases are numbered in order and kept as sent (the database refuses to change ' +
          'them): `content` is the incident’s Art. 33(3) content at this moment. ' +
          '`notifiedAt` may not be in the future, before `awareAt` or before the previous ' +
          'phase (422 `phase_out_of_order`). A first phase after `authorityDeadlineAt` needs ' +
          '`delayReason` (422 `delay_reason_required`) and is marked `late`. `authority` ' +
          'defaults to the account’s `supervisoryAuthority` (none: 422 `authority_required`).',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: NotificationBody,
        answers: {
          201: {
            description: 'The phase, and the incident after it (its ETag).',
            headers: ['ETag', 'Location'],
          },
        },
        response: {
          201: NotificationAnswer,
          ...problemResponses(400, 401, 403, 404, 409, 412, 422),
        },
      },
    },
    async (request, reply) => {
      const { row, notification } = await breaches.notifyAuthority(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      reply.header('location', `/v1/breach-incidents/${row.id}/authority-notifications`).code(201);
      return { notification: toAuthorityNotification(notification), incident: show(row) };
    },
  );

  app.post(
    '/breach-incidents/:id/close',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'closeBreachIncident',
        tags,
        summary: 'Close the incident (notified, or at risk none with the reason)',
        description:
          'An incident that is still `open` (not assessed) or closed answers 409 ' +
          '`invalid_transition`. Without an authority notification only risk `none` may ' +
          'close (else 422 `notification_required`), and then `noNotificationReason` is ' +
          'required (422 `no_notification_reason_required`).',
        security,
        params: IdParams,
        headers: IfMatchOnly,
        body: CloseBody,
        answers: { 200: { description: 'The incident, closed.', headers: ['ETag'] } },
        response: { 200: one, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const row = await breaches.close(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return show(row);
    },
  );

  app.get(
    '/breach-register',
    {
      config: { auth: { permission: 'breaches:read' } },
      schema: {
        operationId: 'getBreachRegister',
        tags,
        summary: 'The register of every breach, notified or not (Art. 33(5)): JSON or CSV',
        description:
          '`format=json` (the default): one page, oldest first, each incident with every ' +
          'phase of its notification. `format=csv`: every incident, streamed, one record ' +
          'each (phases joined in one cell); cells that a spreadsheet would read as a ' +
          'formula (starting with `=`, `+`, `-`, `@`) get a leading apostrophe.',
        security,
        querystring: RegisterQuery,
        response: {
          200: {
            description: 'The register: a page of JSON, or the whole register as CSV.',
            content: {
              'application/json': { schema: pageOf(BreachRegisterEntrySchema) },
              'text/csv': { schema: z.string() },
            },
          },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const accountId = accountIdOf(request);
      if (request.query.format === 'csv') {
        const now = clock.now();
        const entries = breaches.registerAll(accountId);
        async function* lines() {
          yield REGISTER_CSV_HEADER;
          for await (const { row, phases } of entries) yield registerCsvRow(row, phases, now);
        }
        return (
          reply
            .type('text/csv; charset=utf-8')
            .header('content-disposition', 'attachment; filename="breach-register.csv"')
            // A stream: the type provider knows only the schema's string, which it stands for.
            .send(Readable.from(lines()) as unknown as string)
        );
      }
      const page = await breaches.registerPage(accountId, request.query);
      const now = clock.now();
      return reply.type('application/json; charset=utf-8').send({
        data: page.rows.map((row) => ({
          ...toBreachIncident(row, now),
          authorityNotifications: (page.phases.get(row.id) ?? []).map(toAuthorityNotification),
        })),
        nextCursor: page.nextCursor,
      });
    },
  );
};
