import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, pageOf } from '../../http/schemas.js';
import { PurposeParams } from '../purposes/purposes.schemas.js';
import type { PurposesService } from '../purposes/purposes.service.js';
import { ConsentReceiptSchema } from './consent-receipt.js';
import {
  AudienceMemberSchema,
  AudienceQuery,
  ConsentsQuery,
  ContactConsentsSchema,
  RecordConsentBody,
  RecordedConsentSchema,
  toConsentEvent,
  toCurrentConsent,
} from './consents.schemas.js';
import type { ConsentsService } from './consents.service.js';

/**
 * `/v1/contacts/{id}/consents` (the ledger), `/v1/contacts/{id}/consent-receipt` and
 * `/v1/purposes/{id}/audience` (who may be mailed for a purpose).
 */
export const consentsRoutes: FastifyPluginAsyncZod<{
  consents: ConsentsService;
  /** Resolves a purpose named by its key in a path. */
  purposes: Pick<PurposesService, 'resolveId'>;
}> = async (app, { consents, purposes }) => {
  const security = BEARER_OR_API_KEY;

  app.post(
    '/contacts/:id/consents',
    {
      config: { auth: { permission: 'consents:write' } },
      schema: {
        operationId: 'recordConsentEvent',
        tags: ['consents'],
        summary: 'Append a consent event (granted or withdrawn) to a contact’s ledger',
        description:
          'The ledger is append-only (Art. 7(1)); the current state is derived from it. A grant ' +
          'names the notice version the person saw and returns a single-use withdrawal link ' +
          '(Art. 7(3)); a double opt-in grant is `pending` and also returns a confirmation ' +
          'link. Both tokens are shown only in this response: send them with your mail system. ' +
          'A restricted contact (Art. 18) may withdraw but not grant (409 `restricted`). A ' +
          'contact re-admitted at an erased address (Art. 17), or holding one, accepts only a ' +
          '`double_opt_in` grant until the person confirms one; other grants are 422 ' +
          '`suppressed`, whatever its address became meanwhile.',
        security,
        params: IdParams,
        body: RecordConsentBody,
        answers: {
          201: { description: 'The recorded event, the consent’s state after it, and its links.' },
        },
        response: {
          201: RecordedConsentSchema,
          ...problemResponses(400, 401, 403, 404, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const recorded = await consents.record(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
      );
      request.log.info(
        { contactId: request.params.id, consentEventId: recorded.event.id },
        `consent ${recorded.event.event}`,
      );
      reply.code(201);
      return {
        ...toConsentEvent(recorded.event),
        state: recorded.state,
        ...(recorded.confirmation ? { confirmation: recorded.confirmation } : {}),
        ...(recorded.withdrawal ? { withdrawal: recorded.withdrawal } : {}),
      };
    },
  );

  app.get(
    '/contacts/:id/consents',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'getContactConsents',
        tags: ['consents'],
        summary: 'A contact’s current consent per purpose and its ledger, newest first',
        security,
        params: IdParams,
        querystring: ConsentsQuery,
        answers: {
          200: { description: 'The current state per purpose and one page of the ledger.' },
        },
        response: { 200: ContactConsentsSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const ledger = await consents.ledger(accountIdOf(request), request.params.id, request.query);
      return {
        current: ledger.current.map(({ row, state }) => toCurrentConsent(row, state)),
        events: ledger.events.map(toConsentEvent),
        nextCursor: ledger.nextCursor,
      };
    },
  );

  app.get(
    '/contacts/:id/consent-receipt',
    {
      config: { auth: { permission: 'consents:read' } },
      schema: {
        operationId: 'getConsentReceipt',
        tags: ['consents'],
        summary: 'A consent receipt for the contact (Kantara CR v1.1 / ISO/IEC 27560 fields)',
        security,
        params: IdParams,
        answers: { 200: { description: 'The consent receipt.' } },
        response: { 200: ConsentReceiptSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => consents.receipt(accountIdOf(request), request.params.id),
  );

  app.get(
    '/purposes/:id/audience',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'getPurposeAudience',
        tags: ['consents'],
        summary: 'Contacts that may be mailed for a purpose now, by contact id',
        description:
          'Contacts whose current consent for the purpose is granted and verified (a pending ' +
          'double opt-in is not), who are active (not unsubscribed or bounced) and not ' +
          'restricted (Art. 18). Ask before every send.',
        security,
        params: PurposeParams,
        querystring: AudienceQuery,
        answers: { 200: { description: 'One page of the contacts that may be mailed.' } },
        response: {
          200: pageOf(AudienceMemberSchema),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const accountId = accountIdOf(request);
      const purposeId = await purposes.resolveId(accountId, request.params.id);
      const page = await consents.audience(accountId, purposeId, request.query);
      return {
        data: page.rows.map((row) => ({
          contactId: row.contact_id,
          email: row.email,
          language: row.language,
        })),
        nextCursor: page.nextCursor,
      };
    },
  );
};
