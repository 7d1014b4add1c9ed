import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { assertProblem } from '../app/assert-problem.js';
import { addUser, bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

const NOTICE_V1 = 'We send you our newsletter once a month. You can unsubscribe at any time.';
const NOTICE_V2 = 'We send you our newsletter once a week. Unsubscribe at any time: one click.';

function sha256(text: string) {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

async function createPurpose(app: FastifyInstance, owner: SignedUp, key: string) {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(owner.accessToken),
    payload: { key, name: `Purpose ${key}` },
  });
  if (res.statusCode !== 201) throw new Error(`create purpose: ${res.statusCode} ${res.body}`);
  return res.json() as { id: string; key: string };
}

t.test('a purpose is created with a slug key unique per account', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const other = await signup(app);

  const created = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(owner.accessToken),
    payload: { key: 'newsletter', name: 'Monthly newsletter', description: 'Once a month.' },
  });
  t.equal(created.statusCode, 201);
  t.match(created.headers['content-type'], /^application\/json/);
  t.match(created.json(), {
    id: /^[0-9a-f-]{36}$/,
    key: 'newsletter',
    name: 'Monthly newsletter',
    description: 'Once a month.',
    category: 'Marketing',
    latestNoticeVersion: null,
  });

  const taken = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(owner.accessToken),
    payload: { key: 'newsletter', name: 'Again' },
  });
  assertProblem(t, taken, { status: 409, code: 'purpose_key_taken', instance: '/v1/purposes' });

  const elsewhere = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(other.accessToken),
    payload: { key: 'newsletter', name: 'Their newsletter', category: 'Personalized Experience' },
  });
  t.equal(elsewhere.statusCode, 201, 'keys are unique per account, not globally');
  t.equal(elsewhere.json().category, 'Personalized Experience');

  for (const key of ['News Letter', 'UPPER', '-leading', 'trailing-', 'a--b', '']) {
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/purposes',
      headers: bearer(owner.accessToken),
      payload: { key, name: 'Bad key' },
    });
    const body = assertProblem(t, bad, {
      status: 400,
      code: 'validation_failed',
      instance: '/v1/purposes',
    });
    t.equal(body.errors?.[0]?.field, 'body.key', `key ${JSON.stringify(key)} refused`);
  }

  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=purpose.created',
    headers: bearer(owner.accessToken),
  });
  t.equal(trail.json().data.length, 1, 'the creation is audited once');
  t.equal(trail.json().data[0].entity.id, created.json().id);
});

t.test('two concurrent creations with one key: one wins, the other is told', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const create = () =>
    app.inject({
      method: 'POST',
      url: '/v1/purposes',
      headers: bearer(owner.accessToken),
      payload: { key: 'race', name: 'Race' },
    });
  const results = await Promise.all([create(), create(), create()]);
  t.same(results.map((r) => r.statusCode).sort(), [201, 409, 409]);
  for (const loser of results.filter((r) => r.statusCode === 409)) {
    assertProblem(t, loser, { status: 409, code: 'purpose_key_taken', instance: '/v1/purposes' });
  }
});

t.test('purposes are listed by key, a page at a time, and read one by one', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  for (const key of ['offers', 'newsletter', 'surveys']) await createPurpose(app, owner, key);

  const first = await app.inject({
    method: 'GET',
    url: '/v1/purposes?limit=2',
    headers: bearer(owner.accessToken),
  });
  t.equal(first.statusCode, 200);
  t.match(first.headers['content-type'], /^application\/json/);
  t.same(
    first.json().data.map((p: { key: string }) => p.key),
    ['newsletter', 'offers'],
  );
  t.type(first.json().nextCursor, 'string');
  const second = await app.inject({
    method: 'GET',
    url: `/v1/purposes?limit=2&cursor=${first.json().nextCursor}`,
    headers: bearer(owner.accessToken),
  });
  t.same(
    second.json().data.map((p: { key: string }) => p.key),
    ['surveys'],
  );
  t.equal(second.json().nextCursor, null);

  const id = first.json().data[0].id;
  const one = await app.inject({
    method: 'GET',
    url: `/v1/purposes/${id}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(one.statusCode, 200);
  t.equal(one.json().key, 'newsletter');
});

t.test('a purpose can be renamed and described, never re-keyed', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const purpose = await createPurpose(app, owner, 'newsletter');
  const url = `/v1/purposes/${purpose.id}`;

  const renamed = await app.inject({
    method: 'PATCH',
    url,
    headers: bearer(owner.accessToken),
    payload: { name: 'Weekly newsletter', description: 'Once a week.' },
  });
  t.equal(renamed.statusCode, 200);
  t.match(renamed.headers['content-type'], /^application\/json/);
  t.match(renamed.json(), {
    id: purpose.id,
    key: 'newsletter',
    name: 'Weekly newsletter',
    description: 'Once a week.',
  });

  const cleared = await app.inject({
    method: 'PATCH',
    url,
    headers: bearer(owner.accessToken),
    payload: { description: null },
  });
  t.equal(cleared.json().description, null);

  const rekey = await app.inject({
    method: 'PATCH',
    url,
    headers: bearer(owner.accessToken),
    payload: { key: 'offers' },
  });
  assertProblem(t, rekey, { status: 400, code: 'validation_failed', instance: url });
  const empty = await app.inject({
    method: 'PATCH',
    url,
    headers: bearer(owner.accessToken),
    payload: {},
  });
  assertProblem(t, empty, { status: 400, code: 'validation_failed', instance: url });

  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=purpose.updated',
    headers: bearer(owner.accessToken),
  });
  t.same(
    trail.json().data.map((e: { changedFields: string[] }) => e.changedFields),
    [['description'], ['description', 'name']],
    'field names only, newest first',
  );
  t.notOk(trail.body.includes('Once a week'), 'no values in the trail');
});

t.test('notice versions are numbered, hashed, kept, and never edited', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const purpose = await createPurpose(app, owner, 'newsletter');
  const notices = `/v1/purposes/${purpose.id}/notices`;

  const v1 = await app.inject({
    method: 'POST',
    url: notices,
    headers: bearer(owner.accessToken),
    payload: { text: NOTICE_V1, language: 'en' },
  });
  t.equal(v1.statusCode, 201);
  t.match(v1.headers['content-type'], /^application\/json/);
  t.match(v1.json(), {
    purposeId: purpose.id,
    version: 1,
    language: 'en',
    text: NOTICE_V1,
    textSha256: sha256(NOTICE_V1),
    firstUsedAt: null,
  });
  const v2 = await app.inject({
    method: 'POST',
    url: notices,
    headers: bearer(owner.accessToken),
    payload: { text: NOTICE_V2, language: 'sl' },
  });
  t.equal(v2.json().version, 2, 'the next version is n + 1');
  t.equal(v2.json().textSha256, sha256(NOTICE_V2));

  const list = await app.inject({
    method: 'GET',
    url: notices,
    headers: bearer(owner.accessToken),
  });
  t.equal(list.statusCode, 200);
  t.same(
    list.json().data.map((n: { version: number }) => n.version),
    [1, 2],
  );
  t.notOk('text' in list.json().data[0], 'the list leaves the texts out');

  const one = await app.inject({
    method: 'GET',
    url: `${notices}/1`,
    headers: bearer(owner.accessToken),
  });
  t.equal(one.statusCode, 200);
  t.equal(one.json().text, NOTICE_V1, 'the text is kept exactly');
  const missing = await app.inject({
    method: 'GET',
    url: `${notices}/3`,
    headers: bearer(owner.accessToken),
  });
  assertProblem(t, missing, { status: 404, code: 'not_found', instance: `${notices}/3` });

  const purposeNow = await app.inject({
    method: 'GET',
    url: `/v1/purposes/${purpose.id}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(purposeNow.json().latestNoticeVersion, 2);

  for (const method of ['PUT', 'PATCH', 'DELETE'] as const) {
    const edit = await app.inject({
      method,
      url: `${notices}/1`,
      headers: bearer(owner.accessToken),
      payload: method === 'DELETE' ? undefined : { text: 'Changed.' },
    });
    assertProblem(t, edit, { status: 405, code: 'method_not_allowed', instance: `${notices}/1` });
  }

  const badLanguage = await app.inject({
    method: 'POST',
    url: notices,
    headers: bearer(owner.accessToken),
    payload: { text: NOTICE_V1, language: 'english please' },
  });
  assertProblem(t, badLanguage, { status: 400, code: 'validation_failed', instance: notices });

  const db = app.database.owner;
  await t.rejects(
    db
      .updateTable('notice_versions')
      .set({ text: 'Rewritten behind the API' })
      .where('purpose_id', '=', purpose.id)
      .execute(),
    /immutable/,
    'the database refuses a changed text even before first use',
  );
});

t.test('a used notice version records its first use and cannot be deleted', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const purpose = await createPurpose(app, owner, 'newsletter');
  const notices = `/v1/purposes/${purpose.id}/notices`;
  for (const text of [NOTICE_V1, NOTICE_V2]) {
    await app.inject({
      method: 'POST',
      url: notices,
      headers: bearer(owner.accessToken),
      payload: { text, language: 'en' },
    });
  }
  const db = app.database.owner;
  const contact = await db
    .insertInto('contacts')
    .values({ account_id: owner.accountId, email: 'jane@example.com' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const granted = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contact.id}/consents`,
    headers: bearer(owner.accessToken),
    payload: { purposeId: purpose.id, noticeVersion: 1, event: 'granted', method: 'form' },
  });
  t.equal(granted.statusCode, 201, granted.body);

  const v1 = await app.inject({
    method: 'GET',
    url: `${notices}/1`,
    headers: bearer(owner.accessToken),
  });
  t.equal(
    v1.json().firstUsedAt,
    granted.json().recordedAt,
    'first use is the time the first event was recorded',
  );
  const v2 = await app.inject({
    method: 'GET',
    url: `${notices}/2`,
    headers: bearer(owner.accessToken),
  });
  t.equal(v2.json().firstUsedAt, null, 'an unreferenced version stays unused');

  const again = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contact.id}/consents`,
    headers: bearer(owner.accessToken),
    payload: { purposeId: purpose.id, noticeVersion: 1, event: 'withdrawn', method: 'api' },
  });
  t.equal(again.statusCode, 201);
  const v1Later = await app.inject({
    method: 'GET',
    url: `${notices}/1`,
    headers: bearer(owner.accessToken),
  });
  t.equal(v1Later.json().firstUsedAt, v1.json().firstUsedAt, 'first use is recorded once');

  await t.rejects(
    app.database.db
      .deleteFrom('notice_versions')
      .where('purpose_id', '=', purpose.id)
      .where('version', '=', 1)
      .execute(),
    /permission denied/,
    'the service may not delete a notice version',
  );
  await t.rejects(
    db
      .updateTable('notice_versions')
      .set({ first_used_at: null })
      .where('purpose_id', '=', purpose.id)
      .where('version', '=', 1)
      .execute(),
    /immutable/,
    'the first use cannot be erased either',
  );
});

t.test('another account’s purpose is a 404 everywhere', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const intruder = await signup(app);
  const purpose = await createPurpose(app, owner, 'newsletter');
  await app.inject({
    method: 'POST',
    url: `/v1/purposes/${purpose.id}/notices`,
    headers: bearer(owner.accessToken),
    payload: { text: NOTICE_V1, language: 'en' },
  });
  const base = `/v1/purposes/${purpose.id}`;
  const attempts = [
    { method: 'GET' as const, url: base },
    { method: 'PATCH' as const, url: base, payload: { name: 'Mine now' } },
    { method: 'GET' as const, url: `${base}/notices` },
    { method: 'POST' as const, url: `${base}/notices`, payload: { text: 'x', language: 'en' } },
    { method: 'GET' as const, url: `${base}/notices/1` },
    { method: 'GET' as const, url: `${base}/audience` },
  ];
  for (const attempt of attempts) {
    const res = await app.inject({ ...attempt, headers: bearer(intruder.accessToken) });
    assertProblem(t, res, { status: 404, code: 'not_found', instance: attempt.url });
  }
  const list = await app.inject({
    method: 'GET',
    url: '/v1/purposes',
    headers: bearer(intruder.accessToken),
  });
  t.same(list.json().data, [], 'nothing of the other account is listed');
  const unchanged = await app.inject({
    method: 'GET',
    url: base,
    headers: bearer(owner.accessToken),
  });
  t.equal(unchanged.json().name, 'Purpose newsletter');
  t.equal(unchanged.json().latestNoticeVersion, 1);
});

t.test('a path names a purpose by its id or by its key', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const intruder = await signup(app);
  const headers = bearer(owner.accessToken);
  const purpose = await createPurpose(app, owner, 'newsletter');

  const byKey = await app.inject({ method: 'GET', url: '/v1/purposes/newsletter', headers });
  t.equal(byKey.statusCode, 200, byKey.body);
  const byId = await app.inject({ method: 'GET', url: `/v1/purposes/${purpose.id}`, headers });
  t.same(byKey.json(), byId.json(), 'the same purpose');

  const notice = await app.inject({
    method: 'POST',
    url: '/v1/purposes/newsletter/notices',
    headers,
    payload: { text: NOTICE_V1, language: 'en' },
  });
  t.equal(notice.statusCode, 201, notice.body);
  t.equal(notice.json().purposeId, purpose.id);
  const renamed = await app.inject({
    method: 'PATCH',
    url: '/v1/purposes/newsletter',
    headers,
    payload: { name: 'Weekly newsletter' },
  });
  t.equal(renamed.json().name, 'Weekly newsletter');
  for (const url of [
    '/v1/purposes/newsletter/notices',
    '/v1/purposes/newsletter/notices/1',
    '/v1/purposes/newsletter/audience',
  ]) {
    const res = await app.inject({ method: 'GET', url, headers });
    t.equal(res.statusCode, 200, `${url}: ${res.body}`);
  }

  // Keys are per account: another account's key is unknown here.
  for (const url of ['/v1/purposes/newsletter', '/v1/purposes/newsletter/audience']) {
    const res = await app.inject({ method: 'GET', url, headers: bearer(intruder.accessToken) });
    assertProblem(t, res, { status: 404, code: 'not_found', instance: url });
  }
  const unknown = await app.inject({ method: 'GET', url: '/v1/purposes/no-such-key', headers });
  assertProblem(t, unknown, {
    status: 404,
    code: 'not_found',
    instance: '/v1/purposes/no-such-key',
  });
  const malformed = await app.inject({ method: 'GET', url: '/v1/purposes/Not_A-Key!', headers });
  assertProblem(t, malformed, {
    status: 400,
    code: 'validation_failed',
    instance: '/v1/purposes/Not_A-Key!',
  });

  // A key shaped like an id would be ambiguous in a path.
  const uuidKey = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers,
    payload: { key: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d', name: 'Ambiguous' },
  });
  assertProblem(t, uuidKey, { status: 400, code: 'validation_failed', instance: '/v1/purposes' });
});

t.test('writing purposes needs consents:write', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const reader = await createApiKey(app, owner, ['consents:read']);
  const writer = await createApiKey(app, owner, ['consents:write']);
  const member = await addUser(app, owner, 'member');

  const denied = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: { 'x-api-key': reader.key },
    payload: { key: 'newsletter', name: 'Newsletter' },
  });
  assertProblem(t, denied, { status: 403, code: 'missing_scope', instance: '/v1/purposes' });
  const memberDenied = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: bearer(member.accessToken),
    payload: { key: 'newsletter', name: 'Newsletter' },
  });
  assertProblem(t, memberDenied, {
    status: 403,
    code: 'role_forbidden',
    instance: '/v1/purposes',
  });

  const allowed = await app.inject({
    method: 'POST',
    url: '/v1/purposes',
    headers: { 'x-api-key': writer.key },
    payload: { key: 'newsletter', name: 'Newsletter' },
  });
  t.equal(allowed.statusCode, 201);
  const read = await app.inject({
    method: 'GET',
    url: '/v1/purposes',
    headers: { 'x-api-key': reader.key },
  });
  t.equal(read.statusCode, 200);
  t.equal(read.json().data.length, 1);
});
