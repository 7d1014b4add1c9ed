import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { setEtag } from '../../http/concurrency.js';
import { BEARER, BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams } from '../../http/schemas.js';
import type { Clock } from '../../lib/clock.js';
import { BreachIncidentSchema, toBreachIncident } from './breach-incidents.schemas.js';
import {
  ProcessorIncidentBody,
  ProcessorIncidentSchema,
  PublicCommunicationBody,
  toProcessorIncident,
} from './processor-incidents.schemas.js';
import { FAN_OUT_BATCH, type ProcessorIncidentsService } from './processor-incidents.service.js';

/**
 * Art. 33(2): `/v1/ops/breach-incidents`, a breach at the provider as processor, told to each
 * affected account (operators only); and the account's acknowledgement of what it was told.
 */
export const processorIncidentsRoutes: FastifyPluginAsyncZod<{
  processorIncidents: ProcessorIncidentsService;
  clock: Clock;
}> = async (app, { processorIncidents, clock }) => {
  app.post(
    '/ops/breach-incidents',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsCreateProcessorBreachIncident',
        tags: ['ops'],
        summary: 'Report a breach at the provider to the accounts it affects (Art. 33(2))',
        description:
          `Named accounts: the first ${FAN_OUT_BATCH} are told within this request, the rest by ` +
          'the worker; `all`: every account, by the worker, in resumable batches. Each account ' +
          'gets its own incident (`source: processor`, `awareAt` the moment it was told), the ' +
          'event `breach_incident.reported_by_processor` and an entry in its audit chain with ' +
          'the operator as actor. An unknown account is 422 `account_not_found`.',
        security: BEARER,
        body: ProcessorIncidentBody,
        answers: { 201: { description: 'The processor incident and the accounts told so far.' } },
        response: { 201: ProcessorIncidentSchema, ...problemResponses(400, 401, 403, 422) },
      },
    },
    async (request, reply) => {
      const created = await processorIncidents.create(requestContext(request), request.body);
      request.log.info(
        { processorIncidentId: created.row.id, told: created.accounts.length },
        'processor breach incident reported',
      );
      reply.code(201);
      return toProcessorIncident(created);
    },
  );

  app.get(
    '/ops/breach-incidents/:id',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsGetProcessorBreachIncident',
        tags: ['ops'],
        summary: 'Who was told, when, reached by webhook, acknowledged; who needs another call',
        security: BEARER,
        params: IdParams,
        answers: { 200: { description: 'The processor incident with each account’s state.' } },
        response: { 200: ProcessorIncidentSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => toProcessorIncident(await processorIncidents.get(request.params.id)),
  );

  app.post(
    '/ops/breach-incidents/:id/public-communication',
    {
      config: { auth: 'operator' },
      schema: {
        operationId: 'opsRecordProcessorBreachPublicCommunication',
        tags: ['ops'],
        summary: 'Record the public communication for customers who could not be reached',
        security: BEARER,
        params: IdParams,
        body: PublicCommunicationBody,
        answers: { 200: { description: 'The processor incident, with its communication.' } },
        response: { 200: ProcessorIncidentSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) =>
      toProcessorIncident(
        await processorIncidents.recordPublicCommunication(request.params.id, request.body),
      ),
  );

  app.post(
    '/breach-incidents/:id/acknowledgement',
    {
      config: { auth: { permission: 'breaches:write' } },
      schema: {
        operationId: 'acknowledgeProcessorBreachIncident',
        tags: ['breach-incidents'],
        summary: 'Acknowledge a breach the provider, as processor, reported',
        description:
          'Once; a repeat answers the incident unchanged. An incident the account recorded ' +
          'itself answers 409 `not_from_processor`.',
        security: BEARER_OR_API_KEY,
        params: IdParams,
        answers: { 200: { description: 'The incident, acknowledged.', headers: ['ETag'] } },
        response: { 200: BreachIncidentSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const row = await processorIncidents.acknowledge(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
      );
      setEtag(reply, row.version);
      return toBreachIncident(row, clock.now());
    },
  );
};
