import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';
import { bearer, type SignedUp } from '../fixtures/identity.js';

/** The least a valid incident needs, with a contact point so no account DPO is needed. */
export const MINIMAL_INCIDENT = {
  title: 'Lost backup drive',
  description: 'An unencrypted backup drive went missing in transit.',
  kinds: ['confidentiality'],
  contactPoint: { name: 'Privacy Desk', email: 'privacy@example.com' },
};

export async function createIncident(
  app: FastifyInstance,
  owner: SignedUp,
  body: Record<string, unknown> = {},
): Promise<Record<string, unknown> & { id: string; version: number }> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers: bearer(owner.accessToken),
    payload: { ...MINIMAL_INCIDENT, ...body },
  });
  if (res.statusCode !== 201) throw new Error(`create incident: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** The account's audit chain length and its incident count: "nothing written" compares them. */
export async function footprint(app: FastifyInstance, owner: SignedUp) {
  const headers = bearer(owner.accessToken);
  const verify = await app.inject({ method: 'GET', url: '/v1/audit-events/verify', headers });
  const list = await app.inject({ method: 'GET', url: '/v1/breach-incidents?limit=200', headers });
  const events = await app.inject({ method: 'GET', url: '/v1/events?limit=1000', headers });
  return {
    audit: verify.json().checked as number,
    incidents: list.json().data.length as number,
    events: events.json().data.length as number,
  };
}

/** A 4xx problem document naming `field` among its errors. */
export function assertFieldProblem(
  t: Test,
  res: LightMyRequestResponse,
  status: number,
  field: RegExp | string,
  code?: string,
) {
  t.equal(res.statusCode, status, `status ${status}: ${res.body.slice(0, 300)}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const body = res.json() as { code: string; errors?: { field: string }[] };
  if (code) t.equal(body.code, code);
  const fields = (body.errors ?? []).map((e) => e.field);
  t.ok(
    fields.some((f) => (typeof field === 'string' ? f === field : field.test(f))),
    `names ${field} (got ${fields.join(', ')})`,
  );
}
