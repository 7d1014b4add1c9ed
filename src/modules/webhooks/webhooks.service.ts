import type { Kysely, Transaction } from 'kysely';
import { cursors } from '../../db/keyset.js';
import type { DB, WebhookDeliveryStatus, WebhookEndpointRow } from '../../db/schema.js';
import {
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
} from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { newWebhookSecret } from '../../lib/standard-webhooks.js';
import { uuidV7 } from '../../lib/uuid-v7.js';
import { recordAudit } from '../audit/audit.service.js';
import { contactEventSeqs, findEventBySeq, latestEventSeq } from '../events/events.service.js';
import type { RequestContext } from '../identity/actor.js';
import type { EndpointSecretBox } from './webhook-secrets.js';
import { checkWebhookUrl } from './webhook-url.js';
import {
  cancelDeliveriesOfEvents,
  countEndpoints,
  deleteEndpoint,
  findEndpoint,
  insertEndpoint,
  lockDelivery,
  lockEndpoint,
  pageDeliveries,
  pageEndpoints,
  restartDelivery,
  updateEndpoint,
} from './webhooks.repository.js';

/** How long the previous secret keeps signing after a rotation. */
export const SECRET_ROTATION_OVERLAP_MS = 24 * 3_600_000;

/** Endpoints per account: enough for every system a customer runs, not a fan-out amplifier. */
export const MAX_ENDPOINTS_PER_ACCOUNT = 20;

export interface WebhookInput {
  url: string;
  eventTypes: string[];
  description?: string | null | undefined;
}

export interface WebhookPatch {
  url?: string | undefined;
  eventTypes?: string[] | undefined;
  description?: string | null | undefined;
  status?: 'active' | 'disabled' | undefined;
}

const notFound = () => new NotFoundError('The webhook does not exist.');

/**
 * Webhook endpoints and their delivery log. Registering an endpoint starts it at the account's
 * newest event, so it receives what happens from then on; the worker (webhook-worker.ts) turns
 * events into deliveries and sends them. Every change is audited by field name, never a URL
 * or a secret.
 */
export function createWebhooksService(deps: {
  db: Kysely<DB>;
  clock: Clock;
  secrets: EndpointSecretBox;
  allowPrivateTargets: boolean;
  retryForMs: number;
}) {
  const { db, clock, secrets } = deps;

  /** 422 `webhook_url_forbidden`, naming `body.url`, for a URL the rules refuse. */
  function checkUrl(url: string): void {
    const verdict = checkWebhookUrl(url, deps.allowPrivateTargets);
    if (verdict.ok) return;
    throw new UnprocessableError('webhook_url_forbidden', verdict.reason, [
      { field: 'body.url', message: verdict.reason, code: 'webhook_url_forbidden' },
    ]);
  }

  async function lockOrThrow(trx: Transaction<DB>, accountId: string, id: string) {
    const row = await lockEndpoint(trx, accountId, id);
    if (!row) throw notFound();
    return row;
  }

  function checkVersion(row: WebhookEndpointRow, expected: number | undefined) {
    if (expected !== undefined && expected !== row.version) {
      throw new PreconditionFailedError();
    }
  }

  return {
    async create(ctx: RequestContext, accountId: string, input: WebhookInput) {
      checkUrl(input.url);
      const secret = newWebhookSecret();
      const row = await db.transaction().execute(async (trx) => {
        if ((await countEndpoints(trx, accountId)) >= MAX_ENDPOINTS_PER_ACCOUNT) {
          throw new UnprocessableError(
            'webhook_limit_reached',
            `An account may have at most ${MAX_ENDPOINTS_PER_ACCOUNT} webhooks; delete one first.`,
          );
        }
        // The id is made here: the secret's ciphertext is bound to it.
        const id = uuidV7();
        const created = await insertEndpoint(trx, {
          account_id: accountId,
          id,
          url: input.url,
          description: input.description ?? null,
          event_types: input.eventTypes,
          secret_ciphertext: secrets.seal(accountId, id, secret),
          // From the newest event on: an endpoint is told what happens after it exists.
          cursor_seq: await latestEventSeq(trx, accountId),
        });
        await recordAudit(trx, ctx, {
          accountId,
          action: 'webhook.created',
          entityType: 'webhook',
          entityId: id,
          changedFields: ['url', 'eventTypes', 'description', 'secret'],
        });
        return created;
      });
      return { row, secret };
    },

    async list(accountId: string, page: { limit: number; cursor?: string | undefined }) {
      return pageEndpoints(db, accountId, page);
    },

    async get(accountId: string, id: string) {
      const row = await findEndpoint(db, accountId, id);
      if (!row) throw notFound();
      return row;
    },

    async update(
      ctx: RequestContext,
      accountId: string,
      id: string,
      patch: WebhookPatch,
      expectedVersion: number | undefined,
    ) {
      if (patch.url !== undefined) checkUrl(patch.url);
      return db.transaction().execute(async (trx) => {
        const current = await lockOrThrow(trx, accountId, id);
        checkVersion(current, expectedVersion);
        const values: Parameters<typeof updateEndpoint>[3] = {};
        const changed: string[] = [];
        if (patch.url !== undefined && patch.url !== current.url) {
          values.url = patch.url;
          changed.push('url');
        }
        if (
          patch.eventTypes !== undefined &&
          JSON.stringify([...patch.eventTypes].sort()) !==
            JSON.stringify([...current.event_types].sort())
        ) {
          values.event_types = patch.eventTypes;
          changed.push('eventTypes');
        }
        if (patch.description !== undefined && patch.description !== current.description) {
          values.description = patch.description;
          changed.push('description');
        }
        if (patch.status !== undefined && patch.status !== current.status) {
          values.status = patch.status;
          changed.push('status');
        }
        if (changed.length === 0) return current;
        const row = await updateEndpoint(trx, accountId, id, values);
        await recordAudit(trx, ctx, {
          accountId,
          action: 'webhook.updated',
          entityType: 'webhook',
          entityId: id,
          changedFields: changed,
        });
        return row;
      });
    },

    async delete(
      ctx: RequestContext,
      accountId: string,
      id: string,
      expectedVersion: number | undefined,
    ) {
      await db.transaction().execute(async (trx) => {
        const current = await lockOrThrow(trx, accountId, id);
        checkVersion(current, expectedVersion);
        await deleteEndpoint(trx, accountId, id);
        await recordAudit(trx, ctx, {
          accountId,
          action: 'webhook.deleted',
          entityType: 'webhook',
          entityId: id,
          changedFields: ['url', 'eventTypes', 'description', 'status', 'secret'],
        });
      });
    },

    /**
     * A new signing secret, returned once. The old one keeps signing beside it (a second
     * signature in `webhook-signature`) for SECRET_ROTATION_OVERLAP_MS, so receivers can
     * switch without losing a message; a second rotation within that time drops the oldest.
     */
    async rotateSecret(
      ctx: RequestContext,
      accountId: string,
      id: string,
      expectedVersion: number | undefined,
    ) {
      const secret = newWebhookSecret();
      const row = await db.transaction().execute(async (trx) => {
        const current = await lockOrThrow(trx, accountId, id);
        checkVersion(current, expectedVersion);
        const now = clock.now();
        const updated = await updateEndpoint(trx, accountId, id, {
          secret_ciphertext: secrets.seal(accountId, id, secret),
          previous_secret_ciphertext: current.secret_ciphertext,
          previous_secret_expires_at: new Date(now.getTime() + SECRET_ROTATION_OVERLAP_MS),
        });
        await recordAudit(trx, ctx, {
          accountId,
          action: 'webhook.secret_rotated',
          entityType: 'webhook',
          entityId: id,
          changedFields: ['secret'],
        });
        return updated;
      });
      return { row, secret };
    },

    async listDeliveries(
      accountId: string,
      endpointId: string,
      query: { limit: number; cursor?: string | undefined; status?: WebhookDeliveryStatus },
    ) {
      // A forged cursor is a 400 even for an endpoint that does not exist.
      cursors.eventSeq.decode(query.cursor);
      if (!(await findEndpoint(db, accountId, endpointId))) throw notFound();
      return pageDeliveries(db, accountId, endpointId, query);
    },

    /**
     * Sends a delivery again (a replay): due now, with a fresh retry window. Refused while it
     * is being sent, and for an event that is gone (erased with its contact).
     */
    async redeliver(ctx: RequestContext, accountId: string, endpointId: string, id: string) {
      return db.transaction().execute(async (trx) => {
        if (!(await lockEndpoint(trx, accountId, endpointId))) throw notFound();
        const delivery = await lockDelivery(trx, accountId, endpointId, id);
        if (!delivery) throw new NotFoundError('The delivery does not exist.');
        if (delivery.status === 'sending') {
          throw new ConflictError(
            'delivery_in_progress',
            'The delivery is being sent right now; retry once it has an outcome.',
          );
        }
        if (!(await findEventBySeq(trx, accountId, Number(delivery.event_seq)))) {
          throw new ConflictError(
            'event_erased',
            'The event is gone (erased with its contact, Art. 17); it cannot be sent again.',
          );
        }
        const now = clock.now();
        const row = await restartDelivery(trx, accountId, id, {
          now,
          giveUpAt: new Date(now.getTime() + deps.retryForMs),
        });
        await recordAudit(trx, ctx, {
          accountId,
          action: 'webhook.redelivery_requested',
          entityType: 'webhook',
          entityId: endpointId,
          changedFields: ['deliveries.status'],
        });
        return row;
      });
    },
  };
}

export type WebhooksService = ReturnType<typeof createWebhooksService>;

/**
 * Art. 17, for the contacts module's erasure (wired in the route table): cancels the webhook
 * deliveries of the erased contact's events in the erasure's transaction, before the events
 * themselves go. The worker reads each body from `events` at send time, so nothing erased is
 * sent afterwards either way; this keeps the log from showing them as still to come.
 */
export function webhookErasureForgetter(clock: Clock) {
  return async (trx: Transaction<DB>, accountId: string, subject: { contactId: string }) => {
    const seqs = await contactEventSeqs(trx, accountId, subject.contactId);
    await cancelDeliveriesOfEvents(trx, accountId, seqs, clock.now());
  };
}
