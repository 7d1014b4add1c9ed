import type { FastifyInstance } from 'fastify';
import type { Database } from '../../src/db/database.js';
import type { ContactStatus } from '../../src/db/schema.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';

/** Shared set-up for the consent tests: an account with a purpose, notices and contacts. */

export const NOTICE_TEXT = 'We send you our newsletter once a month. Unsubscribe at any time.';

export interface ConsentWorld {
  owner: SignedUp;
  purposeId: string;
  headers: Record<string, string>;
}

export async function createPurposeWithNotice(
  app: FastifyInstance,
  owner: SignedUp,
  key = 'newsletter',
  notices: string[] = [NOTICE_TEXT],
): Promise<string> {
  const purpose = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(owner.accessToken),
    payload: { key, name: `Purpose ${key}` },
  });
  if (purpose.statusCode !== 201) throw new Error(`purpose: ${purpose.body}`);
  const purposeId: string = purpose.json().id;
  for (const text of notices) {
    const notice = await app.inject({
      method: 'POST',
      url: `/v1/purposes/${purposeId}/notices`,
      headers: bearer(owner.accessToken),
      payload: { text, language: 'en' },
    });
    if (notice.statusCode !== 201) throw new Error(`notice: ${notice.body}`);
  }
  return purposeId;
}

export async function consentWorld(
  app: FastifyInstance,
  accountName?: string,
): Promise<ConsentWorld> {
  const owner = await signup(app, accountName ? { accountName } : {});
  const purposeId = await createPurposeWithNotice(app, owner);
  return { owner, purposeId, headers: bearer(owner.accessToken) };
}

/** Contacts are inserted directly: the contacts API is another module's. */
export async function insertContact(
  app: FastifyInstance & { database: Database },
  accountId: string,
  values: { email?: string; status?: ContactStatus; language?: string } = {},
): Promise<string> {
  const row = await app.database.owner
    .insertInto('contacts')
    .values({
      account_id: accountId,
      email: values.email ?? `c-${Math.random().toString(36).slice(2)}@example.com`,
      language: values.language ?? 'en',
      ...(values.status ? { status: values.status } : {}),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function restrict(
  app: FastifyInstance & { database: Database },
  accountId: string,
  contactId: string,
) {
  await app.database.owner
    .updateTable('contacts')
    .set({ restricted_at: new Date(), restriction_reason: 'accuracy contested' })
    .where('account_id', '=', accountId)
    .where('id', '=', contactId)
    .execute();
}

export interface ConsentBody {
  purposeId: string;
  event: 'granted' | 'withdrawn';
  method: 'form' | 'import' | 'api' | 'double_opt_in';
  noticeVersion?: number;
  legalBasis?: string;
  occurredAt?: string;
  evidence?: { ip?: string; userAgent?: string; sourceUrl?: string };
}

export function recordConsent(
  app: FastifyInstance,
  headers: Record<string, string>,
  contactId: string,
  body: ConsentBody,
) {
  return app.inject({
    method: 'POST',
    url: `/v1/contacts/${contactId}/consents`,
    headers,
    payload: body,
  });
}

/** Records an event and fails loudly unless it was accepted. */
export async function mustRecord(
  app: FastifyInstance,
  headers: Record<string, string>,
  contactId: string,
  body: ConsentBody,
) {
  const res = await recordConsent(app, headers, contactId, body);
  if (res.statusCode !== 201) throw new Error(`record consent: ${res.statusCode} ${res.body}`);
  return res.json();
}
