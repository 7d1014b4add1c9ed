import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { decryptExport } from '../../src/lib/export-encryption.js';
import { createDataSubjectRequestsService } from '../../src/modules/data-subject-requests/data-subject-requests.service.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { whereIs } from '../fixtures/where-is.js';
import { build } from '../helper.js';

/**
 * Completing a data-subject request performs its action and closes it in one transaction:
 * each type's effect is read back from the database; a failure leaves everything as it was.
 */

const BASE = '/v1/data-subject-requests';
type App = Awaited<ReturnType<typeof build>>;

async function setup(t: Test) {
  const clock = new TestClock('2026-12-02T10:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const purpose = await call(app, owner, 'POST', '/v1/purposes', {
    key: 'newsletter',
    name: 'Newsletter',
    category: 'Marketing',
  });
  const notice = await call(app, owner, 'POST', `/v1/purposes/${purpose.json().id}/notices`, {
    language: 'en',
    text: 'A monthly newsletter.',
  });
  if (notice.statusCode !== 201) throw new Error(notice.body);
  return { app, clock, owner, purposeId: purpose.json().id as string };
}

function call(
  app: FastifyInstance,
  owner: SignedUp,
  method: 'GET' | 'POST',
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) {
  return app.inject({
    method,
    url,
    headers: { ...bearer(owner.accessToken), ...headers },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
}

async function contactWithConsent(app: App, owner: SignedUp, purposeId: string, email: string) {
  const contact = await call(app, owner, 'POST', '/v1/contacts', { email, firstName: 'Jane' });
  if (contact.statusCode !== 201) throw new Error(contact.body);
  const id = contact.json().id as string;
  const granted = await call(app, owner, 'POST', `/v1/contacts/${id}/consents`, {
    purposeId,
    event: 'granted',
    method: 'form',
    noticeVersion: 1,
    evidence: { ip: '203.0.113.7' },
  });
  if (granted.statusCode !== 201) throw new Error(granted.body);
  return id;
}

/** A verified request of `type` about `email`. */
async function verifiedRequest(app: App, owner: SignedUp, body: Record<string, unknown>) {
  const created = await call(app, owner, 'POST', BASE, body);
  if (created.statusCode !== 201) throw new Error(created.body);
  const id = created.json().id as string;
  const verified = await call(app, owner, 'POST', `${BASE}/${id}/verify-identity`, {
    method: 'manual',
    evidence: 'Known sender',
  });
  if (verified.statusCode !== 200) throw new Error(verified.body);
  return id;
}

async function snapshot(app: App, owner: SignedUp) {
  const db = app.database.owner;
  const verify = await call(app, owner, 'GET', '/v1/audit-events/verify');
  const tables = ['contacts', 'consent_events', 'events', 'suppressions', 'erasures'] as const;
  const counts: Record<string, number> = { checked: verify.json().checked };
  for (const table of tables) {
    const row = await db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    counts[table] = Number(row.n);
  }
  return counts;
}

t.test('erasure: the contact is erased and only the keyed hash remains', async (t) => {
  const { app, owner, purposeId } = await setup(t);
  const contactId = await contactWithConsent(app, owner, purposeId, 'erase.me@example.com');
  const id = await verifiedRequest(app, owner, {
    type: 'erasure',
    subject: { email: 'erase.me@example.com', customerId: 'crm-erase-1' },
    notes: 'Asked by phone: erase.me@example.com',
  });
  const missing = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {});
  const problem = assertProblem(t, missing, {
    status: 400,
    code: 'validation_failed',
    instance: `${BASE}/${id}/complete`,
  });
  t.equal(problem.errors?.[0]?.field, 'body.recipientsInformed', 'Art. 19 answer required');

  const done = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
    recipientsInformed: [{ name: 'Acme CRM', informedAt: '2026-12-02T09:00:00Z' }],
  });
  t.equal(done.statusCode, 200, done.body);
  t.match(done.json(), {
    status: 'completed',
    contactId,
    subject: { email: null, customerId: null },
    notes: null,
    decision: { outcome: 'completed', late: false },
    result: { noDataHeld: false, suppressed: true },
    recipientsInformed: [{ name: 'Acme CRM' }],
  });
  const db = app.database.owner;
  t.same(await db.selectFrom('contacts').select('id').where('id', '=', contactId).execute(), []);
  const erasure = await db
    .selectFrom('erasures')
    .select(['data_subject_request_id'])
    .where('contact_id', '=', contactId)
    .executeTakeFirstOrThrow();
  t.equal(erasure.data_subject_request_id, id, 'the erasure names the request');
  t.same(await whereIs(db, 'erase.me@example.com'), [], 'the address is stored nowhere');
  t.same(await whereIs(db, 'crm-erase-1'), [], 'nor the customer id');
  const check = await call(app, owner, 'POST', '/v1/suppressions/check', {
    email: 'erase.me@example.com',
  });
  t.equal(check.json().suppressed, true, 'the address is suppressed');
  const feed = await call(app, owner, 'GET', '/v1/events');
  const completed = feed
    .json()
    .data.find((e: { type: string }) => e.type === 'data_subject_request.completed');
  t.match(completed, {
    contactId: null,
    data: { requestId: id, requestType: 'erasure', contactId },
  });
});

t.test('erasure without a contact: no data held, the address is suppressed', async (t) => {
  const { app, owner } = await setup(t);
  const id = await verifiedRequest(app, owner, {
    type: 'erasure',
    subject: { email: 'nobody@example.com' },
  });
  const done = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
    recipientsNotInformedReason: 'No recipients.',
  });
  t.equal(done.statusCode, 200, done.body);
  t.match(done.json(), { result: { noDataHeld: true }, subject: { email: null } });
  const check = await call(app, owner, 'POST', '/v1/suppressions/check', {
    email: 'nobody@example.com',
  });
  t.equal(check.json().suppressed, true);
  t.same(await whereIs(app.database.owner, 'nobody@example.com'), []);
});

t.test('a contact erased directly clears its open requests’ plaintext', async (t) => {
  const { app, owner, purposeId } = await setup(t);
  const contactId = await contactWithConsent(app, owner, purposeId, 'direct@example.com');
  const created = await call(app, owner, 'POST', BASE, {
    type: 'access',
    subject: { email: 'direct@example.com', customerId: 'crm-direct' },
    notes: 'direct@example.com wrote in',
  });
  const id = created.json().id;
  const del = await app.inject({
    method: 'DELETE',
    url: `/v1/contacts/${contactId}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(del.statusCode, 204);
  const after = await call(app, owner, 'GET', `${BASE}/${id}`);
  t.match(after.json(), {
    type: 'access',
    status: 'received',
    subject: { email: null, customerId: null },
    notes: null,
  });
  t.same(await whereIs(app.database.owner, 'direct@example.com'), []);
  t.same(await whereIs(app.database.owner, 'crm-direct'), []);
});

t.test('rectification applies the requested corrections', async (t) => {
  const { app, owner, purposeId } = await setup(t);
  const contactId = await contactWithConsent(app, owner, purposeId, 'rect@example.com');
  const id = await verifiedRequest(app, owner, {
    type: 'rectification',
    subject: { email: 'rect@example.com' },
    corrections: { firstName: 'Janet', email: 'janet@example.com' },
  });
  const done = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
    recipientsNotInformedReason: 'None.',
  });
  t.equal(done.statusCode, 200, done.body);
  const row = await app.database.owner
    .selectFrom('contacts')
    .select(['email', 'first_name'])
    .where('id', '=', contactId)
    .executeTakeFirstOrThrow();
  t.same(row, { email: 'janet@example.com', first_name: 'Janet' });
  t.equal(done.json().corrections, null, 'the requested values are not kept after completion');
});

t.test(
  'a failure mid-completion leaves request, contact, audit and feed as they were',
  async (t) => {
    const { app, owner, purposeId } = await setup(t);
    const contactId = await contactWithConsent(app, owner, purposeId, 'keep@example.com');
    const erasedContact = await contactWithConsent(app, owner, purposeId, 'gone@example.com');
    await app.inject({
      method: 'DELETE',
      url: `/v1/contacts/${erasedContact}`,
      headers: bearer(owner.accessToken),
    });
    // Rectifying to an erased (suppressed) address fails inside the completion.
    const id = await verifiedRequest(app, owner, {
      type: 'rectification',
      subject: { email: 'keep@example.com' },
      corrections: { email: 'gone@example.com', firstName: 'Changed' },
    });
    const before = await snapshot(app, owner);
    const request = (await call(app, owner, 'GET', `${BASE}/${id}`)).json();
    const failed = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
      recipientsNotInformedReason: 'None.',
    });
    assertProblem(t, failed, {
      status: 422,
      code: 'suppressed',
      instance: `${BASE}/${id}/complete`,
    });
    t.same(await snapshot(app, owner), before, 'no row, audit entry or event changed');
    t.same(
      (await call(app, owner, 'GET', `${BASE}/${id}`)).json(),
      request,
      'the request is as it was',
    );
    const contact = await app.database.owner
      .selectFrom('contacts')
      .select(['email', 'first_name', 'version'])
      .where('id', '=', contactId)
      .executeTakeFirstOrThrow();
    t.same(contact, { email: 'keep@example.com', first_name: 'Jane', version: 1 });
  },
);

t.test('restriction restricts the contact', async (t) => {
  const { app, owner, purposeId } = await setup(t);
  const contactId = await contactWithConsent(app, owner, purposeId, 'restrict@example.com');
  const id = await verifiedRequest(app, owner, {
    type: 'restriction',
    subject: { email: 'restrict@example.com' },
  });
  const done = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
    recipientsNotInformedReason: 'None.',
  });
  t.equal(done.statusCode, 200, done.body);
  const row = await app.database.owner
    .selectFrom('contacts')
    .select(['restricted_at', 'restriction_reason'])
    .where('id', '=', contactId)
    .executeTakeFirstOrThrow();
  t.ok(row.restricted_at, 'restricted');
  t.match(row.restriction_reason, id);
});

t.test('objection withdraws consent with method data_subject_request', async (t) => {
  const { app, owner, purposeId } = await setup(t);
  const contactId = await contactWithConsent(app, owner, purposeId, 'object@example.com');
  const id = await verifiedRequest(app, owner, {
    type: 'objection',
    subject: { email: 'object@example.com' },
  });
  const extra = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {
    recipientsNotInformedReason: 'x',
  });
  assertProblem(t, extra, {
    status: 400,
    code: 'validation_failed',
    instance: `${BASE}/${id}/complete`,
  });
  const done = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {});
  t.equal(done.statusCode, 200, done.body);
  t.same(done.json().result.withdrawnPurposeIds, [purposeId]);
  const newest = await app.database.owner
    .selectFrom('consent_events')
    .select(['event', 'method'])
    .where('contact_id', '=', contactId)
    .orderBy('recorded_at', 'desc')
    .executeTakeFirstOrThrow();
  t.same(newest, { event: 'withdrawn', method: 'data_subject_request' });
});

t.test(
  'access: an encrypted export with the Art. 15(1) facts, kept until it expires',
  async (t) => {
    const { app, clock, owner, purposeId } = await setup(t);
    const contactId = await contactWithConsent(app, owner, purposeId, 'access@example.com');
    const id = await verifiedRequest(app, owner, {
      type: 'access',
      subject: { email: 'access@example.com' },
    });
    const unprotected = await call(app, owner, 'POST', `${BASE}/${id}/complete`, {});
    assertProblem(t, unprotected, {
      status: 400,
      code: 'export_protection_required',
      instance: `${BASE}/${id}/complete`,
    });
    t.equal((await call(app, owner, 'GET', `${BASE}/${id}`)).json().status, 'identity_verified');

    const passphrase = 'correct horse battery staple';
    const done = await call(
      app,
      owner,
      'POST',
      `${BASE}/${id}/complete`,
      {},
      { 'x-export-passphrase': passphrase },
    );
    t.equal(done.statusCode, 200, done.body);
    const { export: file } = done.json().result;
    t.match(file, { sha256: /^[0-9a-f]{64}$/, bytes: Number, url: `${BASE}/${id}/export` });
    const fetched = await call(app, owner, 'GET', `${BASE}/${id}/export`);
    t.equal(fetched.statusCode, 200);
    const plain = JSON.parse(
      Buffer.from(await decryptExport(fetched.body, { passphrase })).toString('utf8'),
    );
    t.equal(plain.contact.id, contactId);
    t.equal(plain.consents.events.length, 1);
    t.match(plain.facts, { purposes: [{ purposeId, legalBasis: 'consent', state: 'granted' }] });
    t.ok(plain.facts.rights.length >= 6, 'the rights are listed');
    t.match(plain.dataSubjectRequests, [{ id, type: 'access' }], 'the export lists the request');

    clock.set(new Date(new Date(file.expiresAt).getTime() + 1));
    const gone = await call(app, owner, 'GET', `${BASE}/${id}/export`);
    assertProblem(t, gone, {
      status: 410,
      code: 'export_expired',
      instance: `${BASE}/${id}/export`,
    });
    // The sweep drops the ciphertext; the digest and size stay.
    const sweeper = createDataSubjectRequestsService({
      db: app.database.owner,
      hashSecret: 'x'.repeat(32),
      clock,
      contacts: {} as never,
      consents: {} as never,
      verificationTtlHours: 1,
      exportTtlDays: 1,
    });
    t.equal(await sweeper.sweepExpiredExports(), 1, 'one export dropped');
    const stored = await app.database.owner
      .selectFrom('data_subject_requests')
      .select(['export_ciphertext', 'outcome'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    t.equal(stored.export_ciphertext, null);
    t.equal((stored.outcome as { export: { sha256: string } }).export.sha256, file.sha256);
  },
);

t.test('access without a contact: no data held', async (t) => {
  const { app, owner } = await setup(t);
  const id = await verifiedRequest(app, owner, {
    type: 'portability',
    subject: { email: 'unknown@example.com' },
  });
  const done = await call(
    app,
    owner,
    'POST',
    `${BASE}/${id}/complete`,
    {},
    { 'x-export-passphrase': 'a long passphrase here' },
  );
  t.equal(done.statusCode, 200, done.body);
  const read = await call(app, owner, 'GET', `${BASE}/${id}`);
  t.match(read.json(), { status: 'completed', result: { noDataHeld: true } });
  const file = await call(app, owner, 'GET', `${BASE}/${id}/export`);
  assertProblem(t, file, {
    status: 404,
    code: 'export_not_available',
    instance: `${BASE}/${id}/export`,
  });
});
