import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { pino } from 'pino';
import type { Database } from '../../src/db/database.js';
import type { DB } from '../../src/db/schema.js';
import type { Clock } from '../../src/lib/clock.js';
import type { ResolveHost } from '../../src/modules/webhooks/webhook-sender.js';
import {
  type WebhookWorker,
  webhookWorkerFromConfig,
} from '../../src/modules/webhooks/webhook-worker.js';
import { bearer, type SignedUp } from '../fixtures/identity.js';
import { testConfig } from '../helper.js';
import { consentWorld, insertContact, mustRecord } from './consents-fixtures.js';

export type App = FastifyInstance & { database: Database };

/** Settings of the tests' apps and workers: a local receiver, and retries in seconds. */
export const WEBHOOK_ENV = {
  WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
  WEBHOOK_BACKOFF_BASE_MS: '1000',
  WEBHOOK_BACKOFF_MAX_MS: '8000',
  WEBHOOK_RETRY_FOR_MS: '60000',
  WEBHOOK_TIMEOUT_MS: '2000',
  WEBHOOK_LEASE_SECONDS: '30',
};

export interface Received {
  headers: Record<string, string>;
  body: string;
  path: string;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1: records every request, and answers what `answer` says (a
 * status, or a function of the request number that may also hold the request open).
 */
export async function receiver(
  t: { teardown(fn: () => unknown): void },
  answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => unknown = () => 200,
): Promise<Receiver> {
  const received: Received[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    received.push({
      headers: req.headers as Record<string, string>,
      body: Buffer.concat(chunks).toString('utf8'),
      path: req.url ?? '',
    });
    const status = await answer(received.length, req, res);
    if (typeof status === 'number') res.writeHead(status).end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    server.closeAllConnections();
    server.close();
  };
  t.teardown(close);
  return { url: `http://127.0.0.1:${port}/hook`, port, received, close };
}

/** A worker on the app's database, configured like the app plus `env`. */
export function worker(
  db: Kysely<DB>,
  clock: Clock,
  env: Record<string, string> = {},
  extra: { resolve?: ResolveHost; freshForMs?: number } = {},
): WebhookWorker {
  const config = testConfig({ ...WEBHOOK_ENV, ...env });
  return webhookWorkerFromConfig({
    db,
    config,
    clock,
    hashSecret: config.HASH_SECRET!,
    log: pino({ level: 'silent' }),
    // No jitter: a retry is due exactly its back-off later.
    random: () => 0,
    ...extra,
  });
}

export async function createWebhook(
  app: App,
  owner: SignedUp,
  url: string,
  eventTypes: string[] = ['consent.granted', 'consent.withdrawn'],
): Promise<{ id: string; secret: string }> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(owner.accessToken),
    payload: { url, eventTypes },
  });
  if (res.statusCode !== 201) throw new Error(`webhook: ${res.statusCode} ${res.body}`);
  return res.json();
}

export async function deliveries(app: App, owner: SignedUp, webhookId: string, query = '') {
  const res = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${webhookId}/deliveries${query}`,
    headers: bearer(owner.accessToken),
  });
  if (res.statusCode !== 200) throw new Error(`deliveries: ${res.statusCode} ${res.body}`);
  return res.json().data as {
    id: string;
    eventId: string;
    eventSeq: number;
    status: string;
    attempts: number;
    nextAttemptAt: string | null;
    lastAttempt: {
      at: string;
      statusCode: number | null;
      errorCode: string | null;
      durationMs: number;
    } | null;
  }[];
}

/** An account with a purpose; `grant()` records a consent of a new contact (one event). */
export async function consentingWorld(app: App) {
  const world = await consentWorld(app);
  return {
    ...world,
    async grant(email = `c-${Math.random().toString(36).slice(2)}@example.com`) {
      const contactId = await insertContact(app, world.owner.accountId, { email });
      await mustRecord(app, world.headers, contactId, {
        purposeId: world.purposeId,
        noticeVersion: 1,
        event: 'granted',
        method: 'form',
      });
      return contactId;
    },
  };
}
