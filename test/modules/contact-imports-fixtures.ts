import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import type { Database } from '../../src/db/database.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { createPurposeWithNotice } from './consents-fixtures.js';

/** Shared set-up for the bulk import tests: an account with a purpose, and upload helpers. */

export type App = FastifyInstance & { database: Database };

export const GRANTED_AT = '2025-03-01T10:15:00Z';
export const CONSENT = {
  purpose: 'newsletter',
  noticeVersion: 1,
  method: 'form',
  grantedAt: GRANTED_AT,
  ip: '192.0.2.10',
};

export interface World {
  app: App;
  owner: SignedUp;
  headers: Record<string, string>;
  purposeId: string;
}

export async function world(t: Test, app?: App): Promise<World> {
  const instance = app ?? (await build(t));
  const owner = await signup(instance);
  const purposeId = await createPurposeWithNotice(instance, owner, 'newsletter');
  return { app: instance, owner, headers: bearer(owner.accessToken), purposeId };
}

export function ndjson(rows: object[]): string {
  return `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
}

export function upload(
  w: World,
  body: string | Buffer,
  query = 'format=ndjson',
  contentType = 'application/x-ndjson',
  headers: Record<string, string> = {},
) {
  return w.app.inject({
    method: 'POST',
    url: `/v1/contact-imports?${query}`,
    headers: { ...w.headers, 'content-type': contentType, ...headers },
    payload: body,
  });
}

export async function errorsOf(w: World, id: string) {
  const res = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${id}/errors?limit=200`,
    headers: w.headers,
  });
  return res.json().data as { row: number; field: string | null; code: string; message: string }[];
}

export async function contactsOf(w: World) {
  return w.app.database.owner
    .selectFrom('contacts')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .orderBy('email')
    .execute();
}

export async function eventsOf(w: World) {
  return w.app.database.owner
    .selectFrom('consent_events')
    .selectAll()
    .where('account_id', '=', w.owner.accountId)
    .execute();
}

/** The request context of the world's owner, for calling the import service directly. */
export function ownerContext(w: World) {
  return {
    actor: {
      type: 'user' as const,
      id: w.owner.userId,
      accountId: w.owner.accountId,
      role: 'owner' as const,
      sessionId: 'test',
    },
    requestId: 'test',
    ip: '127.0.0.1',
  };
}
