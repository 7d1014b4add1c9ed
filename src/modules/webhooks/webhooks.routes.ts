import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { expectedVersion, setEtag } from '../../http/concurrency.js';
import { BEARER } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf, requestContext } from '../../http/request-context.js';
import { IdParams, PageQuery, pageOf } from '../../http/schemas.js';
import type { Clock } from '../../lib/clock.js';
import {
  CreateWebhookBody,
  DeliveriesQuery,
  DeliveryParams,
  DeliverySchema,
  toDelivery,
  toWebhook,
  UpdateWebhookBody,
  WebhookIfMatchHeaders,
  WebhookSchema,
  WebhookWithSecretSchema,
} from './webhooks.schemas.js';
import type { WebhooksService } from './webhooks.service.js';

/**
 * `/v1/webhooks`: endpoints the account's events are pushed to, and their delivery log. Users
 * with `webhooks:*` only (owners and admins write, members read): an API key cannot carry
 * these permissions, so a leaked key cannot point the feed somewhere else.
 */
export const webhooksRoutes: FastifyPluginAsyncZod<{
  webhooks: WebhooksService;
  clock: Clock;
}> = async (app, { webhooks, clock }) => {
  const security = BEARER;
  const tags = ['webhooks'];

  app.get(
    '/webhooks',
    {
      config: { auth: { permission: 'webhooks:read' } },
      schema: {
        operationId: 'listWebhooks',
        tags,
        summary: 'List webhook endpoints, oldest first',
        security,
        querystring: PageQuery,
        answers: { 200: { description: 'One page of webhooks (never their secrets).' } },
        response: { 200: pageOf(WebhookSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await webhooks.list(accountIdOf(request), request.query);
      const now = clock.now();
      return { data: page.rows.map((row) => toWebhook(row, now)), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/webhooks',
    {
      config: { auth: { permission: 'webhooks:write' }, secretInResponse: true },
      schema: {
        operationId: 'createWebhook',
        tags,
        summary: 'Register a webhook endpoint (its signing secret is shown once)',
        description:
          'Events of the chosen types that happen from now on are POSTed to `url`, signed as ' +
          'Standard Webhooks 1.0 describes (`webhook-id`, `webhook-timestamp`, ' +
          '`webhook-signature`), and retried with back-off until answered with a 2xx. The URL ' +
          'must be https and its host public: loopback, private, link-local (metadata), ' +
          'shared and multicast addresses are refused (422 `webhook_url_forbidden`), here and ' +
          'again after DNS before each attempt; redirects are not followed.',
        security,
        body: CreateWebhookBody,
        answers: {
          201: { description: 'The new webhook, with its secret.', headers: ['ETag', 'Location'] },
        },
        response: { 201: WebhookWithSecretSchema, ...problemResponses(400, 401, 403, 422) },
      },
    },
    async (request, reply) => {
      const { row, secret } = await webhooks.create(
        requestContext(request),
        accountIdOf(request),
        request.body,
      );
      request.log.info({ webhookId: row.id }, 'webhook created');
      setEtag(reply, row.version);
      reply.header('location', `/v1/webhooks/${row.id}`).code(201);
      return { ...toWebhook(row, clock.now()), secret };
    },
  );

  app.get(
    '/webhooks/:id',
    {
      config: { auth: { permission: 'webhooks:read' } },
      schema: {
        operationId: 'getWebhook',
        tags,
        summary: 'One webhook endpoint (with its ETag)',
        security,
        params: IdParams,
        answers: { 200: { description: 'The webhook.', headers: ['ETag'] } },
        response: { 200: WebhookSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const row = await webhooks.get(accountIdOf(request), request.params.id);
      setEtag(reply, row.version);
      return toWebhook(row, clock.now());
    },
  );

  app.patch(
    '/webhooks/:id',
    {
      config: { auth: { permission: 'webhooks:write' } },
      schema: {
        operationId: 'updateWebhook',
        tags,
        summary: 'Change a webhook endpoint (send If-Match to avoid lost updates)',
        description:
          'A new `url` is checked like a new endpoint’s and used from the next attempt on, ' +
          'also for deliveries already queued. New `eventTypes` apply to events from then ' +
          'on. `disabled` pauses sending; events keep queueing and go out once `active`.',
        security,
        params: IdParams,
        headers: WebhookIfMatchHeaders,
        body: UpdateWebhookBody,
        answers: { 200: { description: 'The webhook as changed.', headers: ['ETag'] } },
        response: { 200: WebhookSchema, ...problemResponses(400, 401, 403, 404, 412, 422) },
      },
    },
    async (request, reply) => {
      const row = await webhooks.update(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.body,
        expectedVersion(request),
      );
      setEtag(reply, row.version);
      return toWebhook(row, clock.now());
    },
  );

  app.delete(
    '/webhooks/:id',
    {
      config: { auth: { permission: 'webhooks:write' } },
      schema: {
        operationId: 'deleteWebhook',
        tags,
        summary: 'Delete a webhook endpoint and its delivery log',
        description: 'Nothing more is sent to it, including deliveries still queued.',
        security,
        params: IdParams,
        headers: WebhookIfMatchHeaders,
        response: {
          204: z.undefined().describe('Deleted.'),
          ...problemResponses(400, 401, 403, 404, 412),
        },
      },
    },
    async (request, reply) => {
      await webhooks.delete(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        expectedVersion(request),
      );
      request.log.info({ webhookId: request.params.id }, 'webhook deleted');
      return reply.code(204).send();
    },
  );

  app.post(
    '/webhooks/:id/secret-rotation',
    {
      config: { auth: { permission: 'webhooks:write' }, secretInResponse: true },
      schema: {
        operationId: 'rotateWebhookSecret',
        tags,
        summary: 'Replace the signing secret (shown once); the old one signs for 24 more hours',
        description:
          'For 24 hours every message carries two signatures in `webhook-signature`, one per ' +
          'secret, so a receiver accepts it with either while it switches; then only the new ' +
          'secret signs. A second rotation within the 24 hours ends the oldest secret at once.',
        security,
        params: IdParams,
        headers: WebhookIfMatchHeaders,
        answers: {
          200: { description: 'The webhook, with its new secret.', headers: ['ETag'] },
        },
        response: {
          200: WebhookWithSecretSchema,
          ...problemResponses(400, 401, 403, 404, 412),
        },
      },
    },
    async (request, reply) => {
      const { row, secret } = await webhooks.rotateSecret(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        expectedVersion(request),
      );
      request.log.info({ webhookId: row.id }, 'webhook secret rotated');
      setEtag(reply, row.version);
      return { ...toWebhook(row, clock.now()), secret };
    },
  );

  app.get(
    '/webhooks/:id/deliveries',
    {
      config: { auth: { permission: 'webhooks:read' } },
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: 'The endpoint’s deliveries, newest first (codes and timings, never bodies)',
        security,
        params: IdParams,
        querystring: DeliveriesQuery,
        answers: { 200: { description: 'One page of deliveries.' } },
        response: { 200: pageOf(DeliverySchema), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const page = await webhooks.listDeliveries(
        accountIdOf(request),
        request.params.id,
        request.query,
      );
      return { data: page.rows.map(toDelivery), nextCursor: page.nextCursor };
    },
  );

  app.post(
    '/webhooks/:id/deliveries/:deliveryId/redelivery',
    {
      config: { auth: { permission: 'webhooks:write' } },
      schema: {
        operationId: 'redeliverWebhook',
        tags,
        summary: 'Send a delivery again (a replay), with a fresh retry window',
        description:
          'The event goes out again as the feed shows it now, with the same `webhook-id`, so ' +
          'a receiver that deduplicates on it ignores a copy it already has. 409 ' +
          '`delivery_in_progress` while it is being sent, `event_erased` when its event was ' +
          'erased with its contact.',
        security,
        params: DeliveryParams,
        answers: { 202: { description: 'The delivery, queued to be sent now.' } },
        response: { 202: DeliverySchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const row = await webhooks.redeliver(
        requestContext(request),
        accountIdOf(request),
        request.params.id,
        request.params.deliveryId,
      );
      reply.code(202);
      return toDelivery(row);
    },
  );
};
