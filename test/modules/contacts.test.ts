import { domainToASCII } from 'node:url';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { decryptExport } from '../../src/lib/export-encryption.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { createPurposeWithNotice } from './consents-fixtures.js';

type Headers = Record<string, string>;
type App = Awaited<ReturnType<typeof build>>;

function createContact(app: FastifyInstance, headers: Headers, payload: object) {
  return app.inject({ method: 'POST', url: '/v1/contacts', headers, payload });
}

async function mustCreate(app: FastifyInstance, headers: Headers, payload: object) {
  const res = await createContact(app, headers, payload);
  if (res.statusCode !== 201) throw new Error(`create contact: ${res.statusCode} ${res.body}`);
  return res.json() as { id: string; email: string; version: number };
}

async function auditActions(app: App, owner: SignedUp, contactId: string) {
  const rows = await app.database.owner
    .selectFrom('audit_events')
    .select(['action', 'changed_fields'])
    .where('account_id', '=', owner.accountId)
    .where('entity_type', '=', 'contact')
    .where('entity_id', '=', contactId)
    .orderBy('seq')
    .execute();
  return rows.map((r) => ({ action: r.action, changedFields: r.changed_fields }));
}

function isJson(t: Test, res: LightMyRequestResponse) {
  t.match(res.headers['content-type'], /^application\/json/, 'application/json');
}

t.test('create, read, update: normalisation, ETag and audit', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);

  const created = await createContact(app, headers, {
    email: '  Jane.Doe@Example.COM ',
    firstName: ' Jane ',
    lastName: 'Doe',
    language: 'en',
    attributes: { plan: 'gold', visits: 3 },
  });
  t.equal(created.statusCode, 201, created.body);
  isJson(t, created);
  const contact = created.json();
  t.match(contact, {
    id: /^[0-9a-f-]{36}$/,
    email: 'jane.doe@example.com',
    firstName: 'Jane',
    lastName: 'Doe',
    language: 'en',
    attributes: { plan: 'gold', visits: 3 },
    status: 'active',
    restriction: null,
    version: 1,
  });
  t.equal(created.headers.etag, '"v1"');
  t.equal(created.headers.location, `/v1/contacts/${contact.id}`);

  const idn = await mustCreate(app, headers, { email: 'Ana@Žabe.si' });
  t.equal(idn.email, `ana@${domainToASCII('žabe.si')}`, 'IDN domains become their ASCII form');
  t.match(idn.email, /^ana@xn--/);

  const dup = await createContact(app, headers, { email: 'JANE.DOE@example.com' });
  assertProblem(t, dup, { status: 409, code: 'contact_exists', instance: '/v1/contacts' });
  t.notOk(dup.body.includes('jane.doe'), 'the problem does not echo the address');

  // The same address in another account is another contact.
  const other = await signup(app);
  const elsewhere = await createContact(app, bearer(other.accessToken), {
    email: 'jane.doe@example.com',
  });
  t.equal(elsewhere.statusCode, 201);

  const got = await app.inject({ method: 'GET', url: `/v1/contacts/${contact.id}`, headers });
  t.equal(got.statusCode, 200);
  isJson(t, got);
  t.equal(got.headers.etag, '"v1"');
  t.same(got.json(), contact);

  const patched = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${contact.id}`,
    headers: { ...headers, 'if-match': '"v1"' },
    payload: { firstName: 'Janet', attributes: { visits: 3, plan: 'gold' }, status: 'bounced' },
  });
  t.equal(patched.statusCode, 200, patched.body);
  isJson(t, patched);
  t.match(patched.json(), { firstName: 'Janet', status: 'bounced', version: 2 });
  t.equal(patched.headers.etag, '"v2"');

  const stale = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${contact.id}`,
    headers: { ...headers, 'if-match': '"v1"' },
    payload: { lastName: 'Lost' },
  });
  assertProblem(t, stale, {
    status: 412,
    code: 'precondition_failed',
    instance: `/v1/contacts/${contact.id}`,
  });

  const unchanged = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${contact.id}`,
    headers,
    payload: { firstName: 'Janet' },
  });
  t.equal(unchanged.json().version, 2, 'a patch that changes nothing keeps the version');

  // Rectification of the address (Art. 16), normalised; a taken address is refused.
  const rectified = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${contact.id}`,
    headers: { ...headers, 'if-match': '"v2"' },
    payload: { email: 'Janet.Doe@Example.com' },
  });
  t.equal(rectified.statusCode, 200);
  t.equal(rectified.json().email, 'janet.doe@example.com');
  const taken = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${contact.id}`,
    headers,
    payload: { email: idn.email.toUpperCase() },
  });
  assertProblem(t, taken, {
    status: 409,
    code: 'contact_exists',
    instance: `/v1/contacts/${contact.id}`,
  });

  t.same(await auditActions(app, owner, contact.id), [
    {
      action: 'contact.created',
      changedFields: ['attributes', 'email', 'firstName', 'language', 'lastName', 'status'],
    },
    { action: 'contact.updated', changedFields: ['firstName', 'status'] },
    { action: 'contact.updated', changedFields: ['email'] },
  ]);
});

t.test('list: keyset pagination and filters', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) {
    const c = await mustCreate(app, headers, {
      email: `list-${i}@example.com`,
      status: i === 6 ? 'unsubscribed' : 'active',
    });
    ids.push(c.id);
  }
  // Another account's contacts never show.
  const other = await signup(app);
  await mustCreate(app, bearer(other.accessToken), { email: 'list-0@example.com' });

  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `/v1/contacts?limit=3${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await app.inject({ method: 'GET', url, headers });
    t.equal(res.statusCode, 200, res.body);
    isJson(t, res);
    const body = res.json();
    t.ok(body.data.length <= 3);
    seen.push(...body.data.map((c: { id: string }) => c.id));
    cursor = body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  t.equal(pages, 3, 'three pages of at most three');
  t.same(seen, ids, 'every contact once, in creation order');

  const byEmail = await app.inject({
    method: 'GET',
    url: `/v1/contacts?email=${encodeURIComponent(' LIST-3@Example.com')}`,
    headers,
  });
  t.same(
    byEmail.json().data.map((c: { id: string }) => c.id),
    [ids[3]],
    'email filter is normalised',
  );

  const byStatus = await app.inject({
    method: 'GET',
    url: '/v1/contacts?status=unsubscribed',
    headers,
  });
  t.same(
    byStatus.json().data.map((c: { id: string }) => c.id),
    [ids[6]],
  );

  const restrictRes = await app.inject({
    method: 'PUT',
    url: `/v1/contacts/${ids[2]}/restriction`,
    headers,
    payload: { reason: 'Accuracy contested' },
  });
  t.equal(restrictRes.statusCode, 200);
  const restricted = await app.inject({
    method: 'GET',
    url: '/v1/contacts?restricted=true',
    headers,
  });
  t.same(
    restricted.json().data.map((c: { id: string }) => c.id),
    [ids[2]],
  );
  const notRestricted = await app.inject({
    method: 'GET',
    url: '/v1/contacts?restricted=false&limit=200',
    headers,
  });
  t.equal(notRestricted.json().data.length, 6);
  t.notOk(notRestricted.json().data.some((c: { id: string }) => c.id === ids[2]));

  const since = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 5));
  await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${ids[4]}`,
    headers,
    payload: { firstName: 'Changed' },
  });
  const updated = await app.inject({
    method: 'GET',
    url: `/v1/contacts?updatedSince=${encodeURIComponent(since)}`,
    headers,
  });
  t.same(
    updated.json().data.map((c: { id: string }) => c.id),
    [ids[4]],
    'updatedSince',
  );

  // Consent state per purpose, derived from the newest ledger event.
  const purposeId = await createPurposeWithNotice(app, owner, 'newsletter');
  const consent = async (contactId: string, body: object) => {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/contacts/${contactId}/consents`,
      headers,
      payload: { purposeId, ...body },
    });
    if (res.statusCode !== 201) throw new Error(`consent: ${res.body}`);
    return res.json();
  };
  await consent(ids[0]!, { noticeVersion: 1, event: 'granted', method: 'form' });
  await consent(ids[1]!, { noticeVersion: 1, event: 'granted', method: 'double_opt_in' });
  const confirmed = await consent(ids[3]!, {
    noticeVersion: 1,
    event: 'granted',
    method: 'double_opt_in',
  });
  const confirm = await app.inject({
    method: 'POST',
    url: confirmed.confirmation.url,
  });
  t.equal(confirm.statusCode, 200, confirm.body);
  await consent(ids[4]!, { noticeVersion: 1, event: 'granted', method: 'api' });
  await consent(ids[4]!, { event: 'withdrawn', method: 'api' });

  const byState = async (state: string) => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/contacts?consentPurposeId=${purposeId}&consentState=${state}`,
      headers,
    });
    t.equal(res.statusCode, 200, res.body);
    return res.json().data.map((c: { id: string }) => c.id);
  };
  t.same(await byState('granted'), [ids[0], ids[3]], 'granted: verified grants only');
  t.same(await byState('pending'), [ids[1]], 'pending: unconfirmed double opt-in');
  t.same(await byState('withdrawn'), [ids[4]], 'withdrawn: newest event is a withdrawal');

  const half = await app.inject({
    method: 'GET',
    url: `/v1/contacts?consentState=granted`,
    headers,
  });
  const problem = assertProblem(t, half, {
    status: 400,
    code: 'validation_failed',
    instance: '/v1/contacts',
  });
  t.match(problem.errors, [{ field: 'query.consentPurposeId' }]);

  const badCursor = await app.inject({ method: 'GET', url: '/v1/contacts?cursor=abc', headers });
  assertProblem(t, badCursor, { status: 400, code: 'invalid_cursor', instance: '/v1/contacts' });
});

t.test(
  'restriction (Art. 18): refuses edits, accepts rectification, lifting is audited',
  async (t) => {
    const app = await build(t);
    const owner = await signup(app);
    const headers = bearer(owner.accessToken);
    const contact = await mustCreate(app, headers, { email: 'restrict@example.com' });
    const url = `/v1/contacts/${contact.id}`;

    const empty = await app.inject({
      method: 'PUT',
      url: `${url}/restriction`,
      headers,
      payload: { reason: '  ' },
    });
    const problem = assertProblem(t, empty, {
      status: 400,
      code: 'validation_failed',
      instance: `${url}/restriction`,
    });
    t.match(problem.errors, [{ field: 'body.reason' }]);
    const tooLong = await app.inject({
      method: 'PUT',
      url: `${url}/restriction`,
      headers,
      payload: { reason: 'x'.repeat(501) },
    });
    t.equal(tooLong.statusCode, 400);

    const restricted = await app.inject({
      method: 'PUT',
      url: `${url}/restriction`,
      headers,
      payload: { reason: 'Accuracy contested' },
    });
    t.equal(restricted.statusCode, 200, restricted.body);
    isJson(t, restricted);
    t.match(restricted.json(), {
      restriction: { restrictedAt: /^\d{4}-/, reason: 'Accuracy contested' },
      version: 2,
    });

    for (const payload of [{ attributes: { plan: 'silver' } }, { status: 'unsubscribed' }]) {
      const refused = await app.inject({ method: 'PATCH', url, headers, payload });
      assertProblem(t, refused, { status: 409, code: 'restricted', instance: url });
    }
    const mixed = await app.inject({
      method: 'PATCH',
      url,
      headers,
      payload: { firstName: 'Ok', attributes: { a: 1 } },
    });
    assertProblem(t, mixed, { status: 409, code: 'restricted', instance: url });
    t.equal(
      (await app.inject({ method: 'GET', url, headers })).json().firstName,
      null,
      'nothing applied',
    );

    const rectify = await app.inject({
      method: 'PATCH',
      url,
      headers,
      payload: { email: 'Restrict.Fixed@example.com', firstName: 'Rita', language: 'de' },
    });
    t.equal(rectify.statusCode, 200, rectify.body);
    t.match(rectify.json(), {
      email: 'restrict.fixed@example.com',
      firstName: 'Rita',
      language: 'de',
      restriction: { reason: 'Accuracy contested' },
    });

    const lifted = await app.inject({ method: 'DELETE', url: `${url}/restriction`, headers });
    t.equal(lifted.statusCode, 200);
    isJson(t, lifted);
    t.equal(lifted.json().restriction, null);
    const again = await app.inject({ method: 'DELETE', url: `${url}/restriction`, headers });
    t.equal(again.statusCode, 200, 'lifting twice is harmless');
    t.equal(again.json().version, lifted.json().version, 'and changes nothing');

    const edit = await app.inject({
      method: 'PATCH',
      url,
      headers,
      payload: { status: 'bounced' },
    });
    t.equal(edit.statusCode, 200, 'edits work again once lifted');

    t.same(
      (await auditActions(app, owner, contact.id)).map((e) => e.action),
      [
        'contact.created',
        'contact.restricted',
        'contact.updated',
        'contact.restriction_lifted',
        'contact.updated',
      ],
    );
    t.same((await auditActions(app, owner, contact.id))[1]?.changedFields, [
      'restrictedAt',
      'restrictionReason',
    ]);
  },
);

t.test('export (Art. 15, 20): JSON, and age-encrypted on request', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const contact = await mustCreate(app, headers, {
    email: 'export@example.com',
    firstName: 'Ex',
    attributes: { shoeSize: 42 },
  });
  const purposeId = await createPurposeWithNotice(app, owner, 'newsletter');
  const granted = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contact.id}/consents`,
    headers,
    payload: {
      purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'form',
      evidence: { ip: '203.0.113.9', userAgent: 'UA/1', sourceUrl: 'https://example.com/f' },
    },
  });
  t.equal(granted.statusCode, 201);
  await app.inject({
    method: 'PUT',
    url: `/v1/contacts/${contact.id}/restriction`,
    headers,
    payload: { reason: 'Objection pending' },
  });

  const url = `/v1/contacts/${contact.id}/export`;
  const res = await app.inject({ method: 'GET', url, headers });
  t.equal(res.statusCode, 200, res.body);
  isJson(t, res);
  const body = res.json();
  t.match(body, {
    generatedAt: /^\d{4}-\d{2}-\d{2}T/,
    contact: {
      id: contact.id,
      email: 'export@example.com',
      firstName: 'Ex',
      attributes: { shoeSize: 42 },
      restriction: { reason: 'Objection pending' },
    },
    consents: {
      current: [{ purposeId, purposeKey: 'newsletter', state: 'granted', method: 'form' }],
      events: [
        {
          purposeId,
          event: 'granted',
          evidence: { ip: '203.0.113.9', userAgent: 'UA/1', sourceUrl: 'https://example.com/f' },
        },
      ],
    },
  });
  t.same(
    body.auditEvents.map((e: { action: string }) => e.action),
    ['contact.created', 'consent.granted', 'contact.restricted'],
  );
  t.notOk(JSON.stringify(body.auditEvents).includes('export@'), 'audit entries hold no values');
  t.match(
    body.notifications,
    [{ type: 'consent.granted', purposeId, occurredAt: /^\d{4}-/ }],
    'what the feed told the controller’s systems',
  );

  const passphrase = 'correct horse battery staple';
  const encrypted = await app.inject({
    method: 'GET',
    url,
    headers: { ...headers, 'x-export-passphrase': passphrase },
  });
  t.equal(encrypted.statusCode, 200, encrypted.body.slice(0, 200));
  t.match(encrypted.headers['content-type'], /^text\/plain; charset=utf-8/);
  t.equal(
    encrypted.headers['content-disposition'],
    `attachment; filename="contact-${contact.id}.json.age"`,
  );
  t.match(encrypted.body, /^-----BEGIN AGE ENCRYPTED FILE-----/);
  t.notOk(encrypted.body.includes('export@example.com'), 'the address is not in clear');
  const plain = JSON.parse(
    new TextDecoder().decode(await decryptExport(encrypted.body, { passphrase })),
  );
  t.equal(plain.contact.email, 'export@example.com', 'the passphrase opens it');
  t.equal(plain.consents.events.length, 1);

  const short = await app.inject({
    method: 'GET',
    url,
    headers: { ...headers, 'x-export-passphrase': 'too short' },
  });
  assertProblem(t, short, { status: 400, code: 'passphrase_too_short', instance: url });
  const badKey = await app.inject({
    method: 'GET',
    url,
    headers: { ...headers, 'x-export-recipient': 'age1notakey' },
  });
  assertProblem(t, badKey, { status: 400, code: 'invalid_recipient', instance: url });

  const actions = (await auditActions(app, owner, contact.id)).map((e) => e.action);
  t.same(actions.slice(-2), ['contact.exported', 'contact.exported'], 'exports are audited');
});

t.test('permissions, tenancy and malformed input', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const contact = await mustCreate(app, headers, { email: 'perm@example.com' });
  const url = `/v1/contacts/${contact.id}`;

  const readKey = await createApiKey(app, owner, ['contacts:read']);
  const asReader = { 'x-api-key': readKey.key };
  t.equal((await app.inject({ method: 'GET', url, headers: asReader })).statusCode, 200);
  const writes = [
    { method: 'POST' as const, url: '/v1/contacts', payload: { email: 'new@example.com' } },
    { method: 'PATCH' as const, url, payload: { firstName: 'X' } },
    { method: 'DELETE' as const, url },
    { method: 'PUT' as const, url: `${url}/restriction`, payload: { reason: 'r' } },
    { method: 'DELETE' as const, url: `${url}/restriction` },
  ];
  for (const write of writes) {
    const res = await app.inject({ ...write, headers: asReader });
    assertProblem(t, res, { status: 403, code: 'missing_scope', instance: write.url });
  }
  const writeKey = await createApiKey(app, owner, ['contacts:read', 'contacts:write']);
  const byKey = await createContact(app, { 'x-api-key': writeKey.key }, { email: 'k@example.com' });
  t.equal(byKey.statusCode, 201, 'a key with contacts:write may create');

  const stranger = await signup(app);
  for (const [method, path] of [
    ['GET', url],
    ['PATCH', url],
    ['DELETE', url],
    ['GET', `${url}/export`],
    ['PUT', `${url}/restriction`],
    ['DELETE', `${url}/restriction`],
  ] as const) {
    const res = await app.inject({
      method,
      url: path,
      headers: bearer(stranger.accessToken),
      ...(method === 'PATCH' ? { payload: { firstName: 'Evil' } } : {}),
      ...(method === 'PUT' ? { payload: { reason: 'Evil' } } : {}),
    });
    assertProblem(t, res, { status: 404, code: 'not_found', instance: path });
    t.notOk(res.body.includes('perm@example.com'));
  }
  t.equal((await app.inject({ method: 'GET', url, headers })).json().firstName, null);

  const cases: [string, object, string][] = [
    ['bad email', { email: 'not-an-address' }, 'body.email'],
    ['email with spaces inside', { email: 'a b@example.com' }, 'body.email'],
    ['unknown field', { email: 'u@example.com', favouriteColour: 'red' }, 'body'],
    [
      'oversize attributes',
      { email: 'big@example.com', attributes: { blob: 'x'.repeat(8 * 1024) } },
      'body.attributes',
    ],
    [
      'attributes not an object',
      { email: 'arr@example.com', attributes: [1, 2] },
      'body.attributes',
    ],
    ['bad status', { email: 's@example.com', status: 'deleted' }, 'body.status'],
    ['bad language', { email: 'l@example.com', language: 'english!' }, 'body.language'],
  ];
  for (const [label, payload, field] of cases) {
    const res = await createContact(app, headers, payload);
    const problem = assertProblem(t, res, {
      status: 400,
      code: 'validation_failed',
      instance: '/v1/contacts',
    });
    t.ok(
      problem.errors?.some((e) => e.field === field),
      `${label}: names ${field} (${JSON.stringify(problem.errors)})`,
    );
  }
  const patchUnknown = await app.inject({
    method: 'PATCH',
    url,
    headers,
    payload: { email: 'ok@example.com', id: contact.id },
  });
  assertProblem(t, patchUnknown, { status: 400, code: 'validation_failed', instance: url });
  const patchBig = await app.inject({
    method: 'PATCH',
    url,
    headers,
    payload: { attributes: { blob: 'é'.repeat(4100) } },
  });
  const big = assertProblem(t, patchBig, { status: 400, code: 'validation_failed', instance: url });
  t.match(big.errors, [{ field: 'body.attributes' }], 'bytes are counted, not characters');
  const badId = await app.inject({ method: 'GET', url: '/v1/contacts/123', headers });
  assertProblem(t, badId, { status: 400, code: 'validation_failed', instance: '/v1/contacts/123' });
  const badIfMatch = await app.inject({
    method: 'PATCH',
    url,
    headers: { ...headers, 'if-match': 'nonsense' },
    payload: { firstName: 'X' },
  });
  assertProblem(t, badIfMatch, { status: 412, code: 'precondition_failed', instance: url });
  const text = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: { ...headers, 'content-type': 'text/plain' },
    payload: 'email=x@example.com',
  });
  assertProblem(t, text, { status: 415, code: 'unsupported_media_type', instance: '/v1/contacts' });
});
