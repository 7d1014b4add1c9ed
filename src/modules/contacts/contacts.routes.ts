import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BadRequestError } from '../../errors.js';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, pageOf, Timestamp } from '../../http/schemas.js';
import {
  EXPORT_PASSPHRASE_MAX_LENGTH,
  type ExportProtection,
  encryptExport,
} from '../../lib/export-encryption.js';
import { ConsentEventSchema, CurrentConsentSchema } from '../consents/consents.schemas.js';
import {
  ContactSchema,
  CreateContactBody,
  IfMatchHeaders,
  ListContactsQuery,
  RestrictionBody,
  toContact,
  UpdateContactBody,
} from './contacts.schemas.js';
import type { ContactsService } from './contacts.service.js';

const ExportHeaders = z.looseObject({
  'x-export-passphrase': z
    .string()
    .max(EXPORT_PASSPHRASE_MAX_LENGTH * 4)
    .optional()
    .describe('Encrypt the export with this passphrase (age scrypt, at least 12 characters).'),
  'x-export-recipient': z
    .string()
    .max(200)
    .optional()
    .describe('Encrypt the export to this age X25519 public key (`age1…`, from age-keygen).'),
});

const ContactExportSchema = z
  .object({
    generatedAt: Timestamp,
    contact: ContactSchema,
    consents: z.object({
      current: z.array(CurrentConsentSchema).describe('Derived from the ledger, per purpose.'),
      events: z
        .array(ConsentEventSchema)
        .describe('The whole ledger, oldest first, with evidence.'),
    }),
    auditEvents: z
      .array(
        z.object({
          id: z.string(),
          occurredAt: Timestamp,
          action: z.string(),
          actor: z.object({ type: z.string(), id: z.string().nullable() }),
          changedFields: z.array(z.string()).describe('Field names only, never values.'),
        }),
      )
      .describe('What was done to this contact, oldest first.'),
    notifications: z
      .array(
        z.object({
          type: z.string(),
          occurredAt: Timestamp,
          purposeId: z.string().nullable(),
        }),
      )
      .describe(
        'What the controller’s systems were told about this contact on the event feed (e.g. ' +
          'to send a double opt-in message), oldest first.',
      ),
    dataSubjectRequests: z
      .array(
        z.object({
          id: z.string(),
          type: z.string(),
          status: z.string(),
          receivedAt: Timestamp,
          dueDate: z.string(),
          decidedAt: Timestamp.nullable(),
          overdue: z.boolean(),
        }),
      )
      .optional()
      .describe('The data-subject requests about this contact, oldest first.'),
  })
  .meta({
    id: 'ContactExport',
    description: 'Everything held about one contact (Art. 15 access, Art. 20 portability).',
  });

/**
 * `/v1/contacts`: create, read, list, change and erase contacts, restrict them (Art. 18) and
 * export them (Art. 15, 20). Receives its services from the route table.
 */
export const contactsRoutes: FastifyPluginAsyncZod<{ contacts: ContactsService }> = async (
  app,
  { contacts },
) => {
  const security = BEARER_OR_API_KEY;
  const tags = ['contacts'];

  app.post(
    '/contacts',
    {
      config: { auth: { permission: 'contacts:write' } },
      schema: {
        operationId: 'createContact',
        tags,
        summary: 'Create a contact',
        description:
          'The address is normalised (trimmed, lower-cased, ASCII domain) and unique per account ' +
          '(409 `contact_exists`). An erased address is on the suppression list and refused ' +
          '(422 `suppressed`) unless `doubleOptIn` is true: the contact then comes back only ' +
          'through a fresh double opt-in consent, which you record next with ' +
          '`POST /v1/contacts/{id}/consents` (method `double_opt_in`); until the person ' +
          'confirms it, any other grant is refused (422 `suppressed`). Send `Idempotency-Key` ' +
          'to make retries safe.',
        security,
        body: CreateContactBody,
        answers: { 201: { description: 'The new contact.', headers: ['ETag', 'Location'] } },
        response: {
          201: ContactSchema,
          ...problemResponses(400, 401, 403, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const row = await contacts.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      request.log.info({ contactId: row.id }, 'contact created');
      setEtag(reply, row.version);
      reply.header('location', `/v1/contacts/${row.id}`).code(201);
      return toContact(row);
    },
  );

  app.get(
    '/contacts',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'listContacts',
        tags,
        summary: 'List contacts (oldest first, cursor-paginated, filterable)',
        security,
        querystring: ListContactsQuery,
        answers: { 200: { description: 'One page of contacts.' } },
        response: { 200: pageOf(ContactSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await contacts.list(accountIdOf(request), request.query);
      return { data: page.rows.map(toContact), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/contacts/:id',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'getContact',
        tags,
        summary: 'One contact (with its ETag)',
        security,
        params: IdParams,
        answers: { 200: { description: 'The contact.', headers: ['ETag'] } },
        response: { 200: ContactSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await contacts.get(accountIdOf(request), request.params.id);
      setEtag(reply, row.version);
      return toContact(row);
    },
  );

  app.patch(
    '/contacts/:id',
    {
      config: { auth: { permission: 'contacts:write' } },
      schema: {
        operationId: 'updateContact',
        tags,
        summary: 'Change or rectify a contact (send If-Match to avoid lost updates)',
        description:
          'Changing the email is rectification (Art. 16). A restricted contact (Art. 18) only ' +
          'accepts rectification — email, firstName, lastName, language — and refuses other ' +
          'changes with 409 `restricted`.',
        security,
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateContactBody,
        answers: { 200: { description: 'The contact as changed.', headers: ['ETag'] } },
        response: { 200: ContactSchema, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const row = await contacts.update(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return toContact(row);
    },
  );

  app.delete(
    '/contacts/:id',
    {
      config: { auth: { permission: 'contacts:write' } },
      schema: {
        operationId: 'eraseContact',
        tags,
        summary: 'Erase a contact (Art. 17)',
        description:
          'Deletes the contact, its consent ledger and links in one transaction. Its address, ' +
          'and every earlier address it held, survive only as keyed hashes (HMAC-SHA256), in ' +
          'the erasure record and on the suppression list, so none can be added again by ' +
          'accident. Stored idempotent requests that mention the contact or whose ' +
          '`Idempotency-Key` names one of its addresses are forgotten (a retry runs again and ' +
          'meets the suppression list), and such keys are removed from import jobs. The ' +
          'touched tables are vacuumed shortly after (ERASURE_VACUUM_INTERVAL_MS).',
        security,
        params: IdParams,
        response: {
          204: z.undefined().describe('Erased.'),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      await contacts.erase(requestContext(request), accountIdOf(request), request.params.id);
      request.log.info({ contactId: request.params.id }, 'contact erased');
      return reply.code(204).send();
    },
  );

  app.put(
    '/contacts/:id/restriction',
    {
      config: { auth: { permission: 'contacts:write' } },
      schema: {
        operationId: 'restrictContact',
        tags,
        summary: 'Restrict processing of a contact (Art. 18)',
        description:
          'While restricted, the contact is only stored: not mailed, not in any audience, not ' +
          'edited except to rectify it. Restricting again updates the reason.',
        security,
        params: IdParams,
        body: RestrictionBody,
        answers: { 200: { description: 'The contact, restricted.', headers: ['ETag'] } },
        response: { 200: ContactSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await contacts.restrict(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body.reason,
      );
      request.log.info({ contactId: row.id }, 'contact restricted');
      setEtag(reply, row.version);
      return toContact(row);
    },
  );

  app.delete(
    '/contacts/:id/restriction',
    {
      config: { auth: { permission: 'contacts:write' } },
      schema: {
        operationId: 'liftContactRestriction',
        tags,
        summary: 'Lift the restriction of a contact (Art. 18(3))',
        security,
        params: IdParams,
        answers: { 200: { description: 'The contact, no longer restricted.', headers: ['ETag'] } },
        response: { 200: ContactSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await contacts.liftRestriction(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
      );
      request.log.info({ contactId: row.id }, 'contact restriction lifted');
      setEtag(reply, row.version);
      return toContact(row);
    },
  );

  app.get(
    '/contacts/:id/export',
    {
      config: { auth: { permission: 'contacts:read' } },
      schema: {
        operationId: 'exportContact',
        tags,
        summary: 'Everything held about a contact, as JSON (Art. 15, 20)',
        description:
          'Profile, restriction, consent ledger with evidence and current states, and the ' +
          'audit events about the contact. With `X-Export-Passphrase` or `X-Export-Recipient` ' +
          'the answer is an ASCII-armored age file (open it with `age -d`); it is built in ' +
          'memory and never written to disk.',
        security,
        params: IdParams,
        headers: ExportHeaders,
        response: {
          200: {
            description: 'The export: JSON, or an armored age file when encryption was asked.',
            content: {
              'application/json': { schema: ContactExportSchema },
              'text/plain': {
                schema: z.string().describe('`-----BEGIN AGE ENCRYPTED FILE-----` …'),
              },
            },
          },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const passphrase = request.headers['x-export-passphrase'];
      const recipient = request.headers['x-export-recipient'];
      if (passphrase !== undefined && recipient !== undefined) {
        throw new BadRequestError(
          'export_protection_ambiguous',
          'Send either X-Export-Passphrase or X-Export-Recipient, not both.',
        );
      }
      const protection: ExportProtection | undefined =
        passphrase !== undefined
          ? { passphrase }
          : recipient !== undefined
            ? { recipient }
            : undefined;
      const id = request.params.id;
      const data = await contacts.exportData(
        requestContext(request),
        accountIdOf(request),
        id,
        protection !== undefined,
      );
      request.log.info({ contactId: id, encrypted: protection !== undefined }, 'contact exported');
      if (!protection) return reply.type('application/json; charset=utf-8').send(data);
      const armored = await encryptExport(JSON.stringify(data), protection);
      return reply
        .type('text/plain; charset=utf-8')
        .header('content-disposition', `attachment; filename="contact-${id}.json.age"`)
        .send(armored);
    },
  );
};
