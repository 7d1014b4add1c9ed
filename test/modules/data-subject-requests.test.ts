import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { assertProblem } from '../app/assert-problem.js';
import { addUser, bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * Data-subject requests over HTTP: receipt and due date, the lifecycle and its refusals, who
 * may do what. Completion has its own file (data-subject-requests-complete.test.ts).
 */

const BASE = '/v1/data-subject-requests';

async function setup(t: Test, start: string) {
  const clock = new TestClock(start);
  const app = await build(t, { clock });
  const owner = await signup(app);
  return { app, clock, owner };
}

function post(app: FastifyInstance, owner: SignedUp, url: string, payload: unknown, headers = {}) {
  return app.inject({
    method: 'POST',
    url,
    headers: { ...bearer(owner.accessToken), ...headers },
    payload: payload as object,
  });
}

async function counts(app: FastifyInstance & { database: { owner: unknown } }, owner: SignedUp) {
  const verify = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  const db = (
    app as unknown as {
      database: { owner: import('kysely').Kysely<import('../../src/db/schema.js').DB> };
    }
  ).database.owner;
  const requests = await db
    .selectFrom('data_subject_requests')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  const events = await db
    .selectFrom('events')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return {
    checked: verify.json().checked as number,
    requests: Number(requests.n),
    events: Number(events.n),
  };
}

t.test('a request gets its due date from the local day of receipt', async (t) => {
  // 23:30 UTC on 30 Nov is 00:30 on 1 Dec in Ljubljana (the default zone): one month from
  // 1 Dec is Friday 1 Jan 2027, a working day by weekends only.
  const { app, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const res = await post(app, owner, BASE, {
    type: 'access',
    subject: { email: ' Jane.Doe@Example.com ' },
    receivedAt: '2026-11-30T23:30:00Z',
    externalId: 'DSR-1',
    channel: 'email',
  });
  t.equal(res.statusCode, 201, res.body);
  const body = res.json();
  t.match(body, {
    type: 'access',
    status: 'received',
    subject: { email: 'jane.doe@example.com', customerId: null },
    contactId: null,
    timeZone: 'Europe/Ljubljana',
    dueDate: '2027-01-01',
    overdue: false,
    extension: null,
    decision: null,
  });
  t.equal(body.dueAt, '2027-01-01T22:59:59.999Z', 'the end of the due day in the zone');
  t.equal(body.daysRemaining, 30);
  t.equal(res.headers.location, `${BASE}/${body.id}`);
  t.equal(res.headers.etag, '"v1"');

  const again = await post(app, owner, BASE, {
    type: 'erasure',
    subject: { email: 'other@example.com' },
    externalId: 'DSR-1',
  });
  assertProblem(t, again, { status: 409, code: 'request_exists', instance: BASE });

  // The feed carries the receipt without the address.
  const feed = await app.inject({
    method: 'GET',
    url: '/v1/events',
    headers: bearer(owner.accessToken),
  });
  const received = feed
    .json()
    .data.find((e: { type: string }) => e.type === 'data_subject_request.received');
  t.match(received, {
    contactId: null,
    data: { requestId: body.id, requestType: 'access', dueDate: '2027-01-01' },
  });
  t.notMatch(JSON.stringify(received), /jane\.doe/, 'no address on the feed');
});

t.test('bad input is a 400 naming the field, and nothing is written', async (t) => {
  const { app, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const before = await counts(app, owner);
  const cases: [unknown, string][] = [
    [
      { type: 'access', subject: { email: 'a@example.com' }, receivedAt: '2026-12-03T10:00:00Z' },
      'body.receivedAt',
    ],
    [{ type: 'forget-me', subject: { email: 'a@example.com' } }, 'body.type'],
    [{ type: 'access', subject: { email: 'not an address' } }, 'body.subject.email'],
    [{ type: 'rectification', subject: { email: 'a@example.com' } }, 'body.corrections'],
    [
      {
        type: 'rectification',
        subject: { email: 'a@example.com' },
        corrections: { status: 'bounced' },
      },
      'body.corrections',
    ],
    [
      {
        type: 'erasure',
        subject: { email: 'a@example.com' },
        purposeIds: ['3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4'],
      },
      'body.purposeIds',
    ],
  ];
  for (const [payload, field] of cases) {
    const res = await post(app, owner, BASE, payload);
    const problem = assertProblem(t, res, {
      status: 400,
      code: 'validation_failed',
      instance: BASE,
    });
    t.ok(
      problem.errors?.some((error) => error.field.startsWith(field)),
      `${field} named: ${JSON.stringify(problem.errors)}`,
    );
  }
  t.same(await counts(app, owner), before, 'no row, no audit entry, no event');
});

t.test('lifecycle: verify, extend once, reject; wrong transitions are 409', async (t) => {
  const { app, clock, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const created = await post(app, owner, BASE, {
    type: 'erasure',
    subject: { email: 'life@example.com' },
    receivedAt: '2026-12-02T09:00:00Z',
  });
  const id = created.json().id as string;
  t.equal(created.json().dueDate, '2027-01-04', '2 Jan 2027 is a Saturday: Monday 4 Jan');

  // Completing before the identity is verified is refused.
  const early = await post(app, owner, `${BASE}/${id}/complete`, {
    recipientsNotInformedReason: 'No recipients.',
  });
  assertProblem(t, early, {
    status: 409,
    code: 'invalid_transition',
    instance: `${BASE}/${id}/complete`,
  });

  const stale = await post(
    app,
    owner,
    `${BASE}/${id}/verify-identity`,
    { method: 'manual', evidence: 'x' },
    { 'if-match': '"v7"' },
  );
  assertProblem(t, stale, {
    status: 412,
    code: 'precondition_failed',
    instance: `${BASE}/${id}/verify-identity`,
  });

  const verified = await post(
    app,
    owner,
    `${BASE}/${id}/verify-identity`,
    {
      method: 'manual',
      evidence: 'Answered from the address on file',
    },
    { 'if-match': '"v1"' },
  );
  t.equal(verified.statusCode, 200, verified.body);
  t.match(verified.json().request, { status: 'identity_verified', identity: { method: 'manual' } });
  t.equal(verified.headers.etag, '"v2"');

  const twice = await post(app, owner, `${BASE}/${id}/verify-identity`, {
    method: 'manual',
    evidence: 'x',
  });
  assertProblem(t, twice, {
    status: 409,
    code: 'invalid_transition',
    instance: `${BASE}/${id}/verify-identity`,
  });

  const beforeRefusals = await counts(app, owner);
  const readBack = async () =>
    (
      await app.inject({ method: 'GET', url: `${BASE}/${id}`, headers: bearer(owner.accessToken) })
    ).json();
  const unrefused = await readBack();
  const threeMonths = await post(app, owner, `${BASE}/${id}/extend`, {
    months: 3,
    reason: 'Busy.',
  });
  const problem = assertProblem(t, threeMonths, {
    status: 400,
    code: 'validation_failed',
    instance: `${BASE}/${id}/extend`,
  });
  t.ok(
    problem.errors?.some((e) => e.field === 'body.months'),
    'body.months named',
  );
  const blank = await post(app, owner, `${BASE}/${id}/extend`, { months: 2, reason: '   ' });
  const blankProblem = assertProblem(t, blank, {
    status: 400,
    code: 'validation_failed',
    instance: `${BASE}/${id}/extend`,
  });
  t.ok(
    blankProblem.errors?.some((e) => e.field === 'body.reason'),
    'body.reason named',
  );

  t.same(await counts(app, owner), beforeRefusals, 'refused changes write nothing');
  t.same(await readBack(), unrefused, 'the request is as it was');
  const extended = await post(app, owner, `${BASE}/${id}/extend`, {
    months: 2,
    reason: 'Many systems hold the data.',
  });
  t.equal(extended.statusCode, 200, extended.body);
  // Counted from the receipt (2 Dec + 3 months = 2 Mar 2027, a Tuesday), not from 4 Jan.
  t.match(extended.json(), {
    dueDate: '2027-03-02',
    extension: { months: 2, subjectMustBeInformedBy: '2027-01-04T22:59:59.999Z' },
  });
  const second = await post(app, owner, `${BASE}/${id}/extend`, { months: 1, reason: 'More.' });
  assertProblem(t, second, {
    status: 409,
    code: 'already_extended',
    instance: `${BASE}/${id}/extend`,
  });

  clock.set('2027-03-03T09:00:00.000Z');
  const listed = await app.inject({
    method: 'GET',
    url: `${BASE}?overdue=true`,
    headers: bearer(owner.accessToken),
  });
  t.same(
    listed.json().data.map((r: { id: string }) => r.id),
    [id],
    'overdue filter',
  );
  t.equal(listed.json().data[0].daysRemaining, -1);

  const noReason = await post(app, owner, `${BASE}/${id}/reject`, {
    reason: '',
    basis: 'other',
    complaintInformationGiven: true,
  });
  const noReasonProblem = assertProblem(t, noReason, {
    status: 400,
    code: 'validation_failed',
    instance: `${BASE}/${id}/reject`,
  });
  t.ok(
    noReasonProblem.errors?.some((e) => e.field === 'body.reason'),
    'body.reason named',
  );

  const rejected = await post(app, owner, `${BASE}/${id}/reject`, {
    reason: 'The data is needed for a legal claim.',
    basis: 'erasure_exception',
    complaintInformationGiven: true,
  });
  t.equal(rejected.statusCode, 200, rejected.body);
  t.match(rejected.json(), {
    status: 'rejected',
    overdue: false,
    subject: { email: null },
    decision: { outcome: 'rejected', late: true, basis: 'erasure_exception' },
  });
  const cancel = await post(app, owner, `${BASE}/${id}/cancel`, { reason: 'Withdrawn.' });
  assertProblem(t, cancel, {
    status: 409,
    code: 'invalid_transition',
    instance: `${BASE}/${id}/cancel`,
  });

  const timeline = await app.inject({
    method: 'GET',
    url: `${BASE}/${id}/timeline`,
    headers: bearer(owner.accessToken),
  });
  t.same(
    timeline.json().data.map((e: { action: string }) => e.action),
    [
      'data_subject_request.received',
      'data_subject_request.identity_verified',
      'data_subject_request.extended',
      'data_subject_request.rejected',
    ],
  );
});

t.test('an extension must come within the original deadline', async (t) => {
  const { app, clock, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const created = await post(app, owner, BASE, {
    type: 'access',
    subject: { email: 'late@example.com' },
    receivedAt: '2026-12-01T09:00:00Z',
  });
  const { id, dueAt } = created.json();
  clock.set(dueAt);
  const onTime = await post(app, owner, `${BASE}/${id}/extend`, { months: 1, reason: 'Complex.' });
  t.equal(onTime.statusCode, 200, 'at the last millisecond of the due day');

  const other = await post(app, owner, BASE, {
    type: 'access',
    subject: { email: 'later@example.com' },
    receivedAt: '2026-12-01T09:00:00Z',
  });
  clock.set(new Date(new Date(dueAt).getTime() + 1));
  const late = await post(app, owner, `${BASE}/${other.json().id}/extend`, {
    months: 1,
    reason: 'Complex.',
  });
  assertProblem(t, late, {
    status: 409,
    code: 'extension_too_late',
    instance: `${BASE}/${other.json().id}/extend`,
  });
});

t.test('an objection to marketing cannot be refused', async (t) => {
  const { app, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const purpose = await post(app, owner, '/v1/purposes', {
    key: 'newsletter',
    name: 'Newsletter',
    category: 'Marketing',
  });
  t.equal(purpose.statusCode, 201, purpose.body);
  const created = await post(app, owner, BASE, {
    type: 'objection',
    subject: { email: 'objects@example.com' },
    purposeIds: [purpose.json().id],
  });
  t.equal(created.statusCode, 201, created.body);
  const id = created.json().id;
  const refused = await post(app, owner, `${BASE}/${id}/reject`, {
    reason: 'No.',
    basis: 'other',
    complaintInformationGiven: true,
  });
  assertProblem(t, refused, {
    status: 409,
    code: 'objection_absolute',
    instance: `${BASE}/${id}/reject`,
  });
  const cancelled = await post(app, owner, `${BASE}/${id}/cancel`, {
    reason: 'The subject withdrew it.',
  });
  t.equal(cancelled.json().status, 'cancelled');
});

t.test('verification links: tampered, reused, expired', async (t) => {
  const { app, clock, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const create = async () =>
    (
      await post(app, owner, BASE, { type: 'access', subject: { email: 'link@example.com' } })
    ).json().id as string;
  const id = await create();
  const issued = await post(app, owner, `${BASE}/${id}/verify-identity`, { method: 'link' });
  t.equal(issued.statusCode, 200, issued.body);
  const { token, url } = issued.json().link;
  t.equal(url, `/v1/public/data-subject-request-verifications/${token}`);
  const feed = await app.inject({
    method: 'GET',
    url: '/v1/events',
    headers: bearer(owner.accessToken),
  });
  const requested = feed
    .json()
    .data.find(
      (e: { type: string }) => e.type === 'data_subject_request.identity_verification_requested',
    );
  t.equal(requested.data.verification.url, url, 'the link reaches the customer on the feed');
  const raw = await app.database.owner.selectFrom('events').select('data').execute();
  t.notMatch(JSON.stringify(raw), new RegExp(token), 'stored sealed, not in clear');

  const tampered = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
  const bad = await app.inject({
    method: 'POST',
    url: `/v1/public/data-subject-request-verifications/${tampered}`,
  });
  assertProblem(t, bad, {
    status: 404,
    code: 'token_invalid',
    instance: `/v1/public/data-subject-request-verifications/${tampered}`,
  });

  const ok = await app.inject({ method: 'POST', url });
  t.equal(ok.statusCode, 200, ok.body);
  t.same(Object.keys(ok.json()).sort(), ['status', 'verifiedAt'], 'names no one');
  const reused = await app.inject({ method: 'POST', url });
  assertProblem(t, reused, { status: 409, code: 'token_used', instance: url });
  const after = await app.inject({
    method: 'GET',
    url: `${BASE}/${id}`,
    headers: bearer(owner.accessToken),
  });
  t.match(after.json(), { status: 'identity_verified', identity: { method: 'link' } });
  const trail = await app.database.owner
    .selectFrom('audit_events')
    .select(['actor_type', 'ip'])
    .where('entity_id', '=', id)
    .where('action', '=', 'data_subject_request.identity_verified')
    .executeTakeFirstOrThrow();
  t.same(trail, { actor_type: 'data_subject', ip: null }, 'audited as the subject, without IP');

  const second = await create();
  const link2 = (
    await post(app, owner, `${BASE}/${second}/verify-identity`, { method: 'link' })
  ).json().link;
  clock.set(new Date(new Date(link2.expiresAt).getTime() + 1));
  const expired = await app.inject({ method: 'POST', url: link2.url });
  assertProblem(t, expired, { status: 410, code: 'token_expired', instance: link2.url });
});

t.test('a member reads but cannot write; a key needs requests:write', async (t) => {
  const { app, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const created = await post(app, owner, BASE, {
    type: 'access',
    subject: { email: 'perm@example.com' },
  });
  const member = await addUser(app, owner, 'member');
  const read = await app.inject({ method: 'GET', url: BASE, headers: bearer(member.accessToken) });
  t.equal(read.statusCode, 200);
  t.equal(read.json().data.length, 1);
  const write = await app.inject({
    method: 'POST',
    url: BASE,
    headers: bearer(member.accessToken),
    payload: { type: 'access', subject: { email: 'perm@example.com' } },
  });
  assertProblem(t, write, { status: 403, code: 'role_forbidden', instance: BASE });
  const key = await createApiKey(app, owner, ['requests:read']);
  const keyed = await app.inject({
    method: 'POST',
    url: `${BASE}/${created.json().id}/cancel`,
    headers: { 'x-api-key': key.key },
    payload: { reason: 'x' },
  });
  assertProblem(t, keyed, {
    status: 403,
    code: 'missing_scope',
    instance: `${BASE}/${created.json().id}/cancel`,
  });
  // Completing an erasure also needs contacts:write.
  const writer = await createApiKey(app, owner, ['requests:read', 'requests:write']);
  const erasure = await app.inject({
    method: 'POST',
    url: BASE,
    headers: { 'x-api-key': writer.key },
    payload: { type: 'erasure', subject: { email: 'perm@example.com' } },
  });
  const eid = erasure.json().id;
  await app.inject({
    method: 'POST',
    url: `${BASE}/${eid}/verify-identity`,
    headers: { 'x-api-key': writer.key },
    payload: { method: 'manual', evidence: 'checked' },
  });
  const complete = await app.inject({
    method: 'POST',
    url: `${BASE}/${eid}/complete`,
    headers: { 'x-api-key': writer.key },
    payload: { recipientsNotInformedReason: 'None.' },
  });
  assertProblem(t, complete, {
    status: 403,
    code: 'missing_scope',
    instance: `${BASE}/${eid}/complete`,
  });
});

t.test('Idempotency-Key makes a retried creation safe', async (t) => {
  const { app, owner } = await setup(t, '2026-12-02T10:00:00.000Z');
  const body = { type: 'access', subject: { email: 'retry@example.com' } };
  const first = await post(app, owner, BASE, body, { 'idempotency-key': 'dsr-retry-1' });
  const second = await post(app, owner, BASE, body, { 'idempotency-key': 'dsr-retry-1' });
  t.equal(first.statusCode, 201);
  t.equal(second.statusCode, 201);
  t.equal(second.headers['idempotent-replayed'], 'true');
  t.equal(second.json().id, first.json().id, 'one request, not two');
  const list = await app.inject({ method: 'GET', url: BASE, headers: bearer(owner.accessToken) });
  t.equal(list.json().data.length, 1);
});
