import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { sql } from 'kysely';
import t from 'tap';
import { parse } from 'yaml';
import { OPENAPI_PATH } from '../../scripts/lib/openapi.js';
import { idempotencyModesOf } from '../../src/http/idempotency.js';
import { createOperator } from '../../src/modules/ops/operators.js';
import { bearer, GOOD_PASSWORD, login, signup } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';
import { consentWorld, insertContact } from '../modules/consents-fixtures.js';
import { assertProblem } from './assert-problem.js';

t.test('Idempotency-Key on POST /v1/contacts', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const post = (key: string | undefined, payload: object, extra: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/v1/contacts',
      headers: { ...headers, ...(key === undefined ? {} : { 'idempotency-key': key }), ...extra },
      payload,
    });
  const contactCount = async () =>
    (
      await db
        .selectFrom('contacts')
        .select('id')
        .where('account_id', '=', owner.accountId)
        .execute()
    ).length;

  const body = { email: 'retry@example.com', firstName: 'Retry' };
  const first = await post('key-1', body);
  t.equal(first.statusCode, 201, first.body);
  t.match(first.headers['content-type'], /^application\/json/);
  t.notOk(first.headers['idempotent-replayed'], 'the first answer is not a replay');

  const replay = await post('key-1', { firstName: 'Retry', email: 'retry@example.com' });
  t.equal(replay.statusCode, 201, 'same key, same body (keys in another order): replayed');
  t.match(replay.headers['content-type'], /^application\/json/);
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.same(replay.json(), first.json(), 'the stored response, byte for byte');
  t.equal(replay.body, first.body);
  t.equal(await contactCount(), 1, 'nothing was created twice');

  const reused = await post('key-1', { email: 'someone.else@example.com' });
  assertProblem(t, reused, {
    status: 422,
    code: 'idempotency_key_reused',
    instance: '/v1/contacts',
  });
  t.equal(await contactCount(), 1);

  // Without a key, a retry is a duplicate; with a new key, too — idempotency is per key.
  const noKey = await post(undefined, body);
  assertProblem(t, noKey, { status: 409, code: 'contact_exists', instance: '/v1/contacts' });
  // Client errors from the handler are remembered and replayed like successes.
  const conflict = await post('key-2', body);
  t.equal(conflict.statusCode, 409);
  const conflictAgain = await post('key-2', body);
  t.equal(conflictAgain.statusCode, 409);
  t.equal(conflictAgain.headers['idempotent-replayed'], 'true');
  t.match(conflictAgain.headers['content-type'], /^application\/problem\+json/);
  t.equal(conflictAgain.json().code, 'contact_exists');

  // Invalid requests never claim a key: after fixing the body, the same key works.
  const invalid = await post('key-3', { email: 'broken' });
  t.equal(invalid.statusCode, 400);
  const fixed = await post('key-3', { email: 'fixed@example.com' });
  t.equal(fixed.statusCode, 201, fixed.body);
  t.notOk(fixed.headers['idempotent-replayed']);

  // A request whose first attempt is still running: 409, nothing done.
  await db
    .insertInto('idempotency_keys')
    .values({
      account_id: owner.accountId,
      key: 'key-in-flight',
      method: 'POST',
      path: '/v1/contacts',
      request_hash: 'x'.repeat(64),
    })
    .execute();
  const inFlight = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: { ...headers, 'idempotency-key': 'key-in-flight' },
    payload: { email: 'flight@example.com' },
  });
  t.equal(inFlight.statusCode, 422, 'another request under the key is a reuse, even in flight');
  const stored = await db
    .selectFrom('idempotency_keys')
    .select('request_hash')
    .where('account_id', '=', owner.accountId)
    .where('key', '=', 'key-1')
    .executeTakeFirstOrThrow();
  await db
    .updateTable('idempotency_keys')
    .set({ request_hash: stored.request_hash })
    .where('account_id', '=', owner.accountId)
    .where('key', '=', 'key-in-flight')
    .execute();
  const sameInFlight = await post('key-in-flight', body);
  assertProblem(t, sameInFlight, {
    status: 409,
    code: 'idempotency_key_in_progress',
    instance: '/v1/contacts',
  });

  // A claim abandoned long ago (process killed mid-request) can be taken over.
  await sql`update idempotency_keys set created_at = now() - interval '10 minutes'
    where account_id = ${owner.accountId}::uuid and key = 'key-in-flight'`.execute(db);
  const takenOver = await post('key-in-flight', { email: 'flight@example.com' });
  t.equal(takenOver.statusCode, 201, takenOver.body);

  // Keys are per account: another account's same key is a new request.
  const other = await signup(app);
  const otherFirst = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: { ...bearer(other.accessToken), 'idempotency-key': 'key-1' },
    payload: body,
  });
  t.equal(otherFirst.statusCode, 201);
  t.notOk(otherFirst.headers['idempotent-replayed']);
  t.not(otherFirst.json().id, first.json().id);

  const tooLong = await post('k'.repeat(256), { email: 'long@example.com' });
  const problem = assertProblem(t, tooLong, {
    status: 400,
    code: 'validation_failed',
    instance: '/v1/contacts',
  });
  t.match(problem.errors, [{ field: 'header.idempotency-key' }]);
  const empty = await post('', { email: 'empty@example.com' });
  t.equal(empty.statusCode, 400, 'an empty key is refused');

  // The request body is never stored, only a keyed hash of it.
  const rows = await db
    .selectFrom('idempotency_keys')
    .select(['request_hash', 'status'])
    .where('account_id', '=', owner.accountId)
    .execute();
  t.ok(
    rows.every(
      (row) => /^[0-9a-f]{64}$/.test(row.request_hash) || row.request_hash === 'x'.repeat(64),
    ),
  );
});

t.test('two concurrent requests with one key: one does the work', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = { ...bearer(owner.accessToken), 'idempotency-key': 'race' };
  const payload = { email: 'race@example.com' };
  const results = await Promise.all(
    [0, 1, 2].map(() => app.inject({ method: 'POST', url: '/v1/contacts', headers, payload })),
  );
  const statuses = results.map((r) => r.statusCode).sort();
  const fresh = results.filter((r) => r.statusCode === 201 && !r.headers['idempotent-replayed']);
  t.equal(fresh.length, 1, `exactly one did the work (${statuses.join(', ')})`);
  for (const r of results) {
    if (r === fresh[0]) continue;
    if (r.statusCode === 409) t.equal(r.json().code, 'idempotency_key_in_progress');
    else {
      t.equal(r.statusCode, 201);
      t.equal(r.headers['idempotent-replayed'], 'true');
      t.equal(r.json().id, fresh[0]?.json().id);
    }
  }
  const rows = await app.database.owner
    .selectFrom('contacts')
    .select('id')
    .where('account_id', '=', owner.accountId)
    .execute();
  t.equal(rows.length, 1);
});

t.test('a consent event: one key, one ledger event', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  const body = { purposeId, event: 'granted', method: 'form', noticeVersion: 1 };
  const post = () =>
    app.inject({
      method: 'POST',
      url: `/v1/contacts/${contactId}/consents`,
      headers: { ...headers, 'idempotency-key': 'consent-form-7' },
      payload: body,
    });
  const first = await post();
  t.equal(first.statusCode, 201, first.body);
  const second = await post();
  t.equal(second.statusCode, 201);
  t.equal(second.headers['idempotent-replayed'], 'true');
  t.equal(second.body, first.body, 'the first answer, links included');
  const events = await app.database.owner
    .selectFrom('consent_events')
    .select('id')
    .where('account_id', '=', owner.accountId)
    .where('contact_id', '=', contactId)
    .execute();
  t.equal(events.length, 1, 'one event in the ledger');
});

t.test('a replayed creation keeps its Location and ETag', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const post = () =>
    app.inject({
      method: 'POST',
      url: '/v1/contacts',
      headers: { ...bearer(owner.accessToken), 'idempotency-key': 'create-9' },
      payload: { email: 'located@example.com' },
    });
  const first = await post();
  t.equal(first.statusCode, 201);
  const replay = await post();
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal(replay.headers.location, first.headers.location);
  t.equal(replay.headers.etag, first.headers.etag);
});

/** The contract's example request body of an operation, if it has one. */
function exampleBody(operation: Record<string, unknown> | undefined): unknown {
  const content = (operation?.requestBody as { content?: Record<string, { schema?: Json }> })
    ?.content;
  return content?.['application/json']?.schema?.example;
}
type Json = Record<string, unknown>;

/**
 * Walks the route table: every POST either keeps its answers by Idempotency-Key (a second
 * request with the key replays the first answer), or its handler does (the import), or it
 * refuses the header with 400. A new POST route falls under one of these by its `auth`, and
 * this test fails if it falls under none or the contract does not say so.
 */
t.test('every POST honours Idempotency-Key, or refuses it', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const operatorEmail = 'idempotency-operator@example.com';
  await createOperator(app.database.owner, testConfig(), {
    email: operatorEmail,
    password: GOOD_PASSWORD,
  });
  const operator = await login(app, operatorEmail);
  const document = parse(await readFile(OPENAPI_PATH, 'utf8')) as {
    paths: Record<string, Record<string, Json>>;
  };
  const modes = idempotencyModesOf(app);
  const posts = app.routeTable().filter((route) => route.method === 'POST');
  t.ok(posts.length >= 15, `${posts.length} POST routes`);

  for (const route of posts) {
    const mode = modes.get(`POST ${route.url}`);
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const operation = document.paths[path]?.post;
    const declared = ((operation?.parameters ?? []) as { in: string; name: string }[]).some(
      (p) => p.in === 'header' && p.name === 'idempotency-key',
    );
    t.ok(mode, `${route.url}: has an Idempotency-Key treatment`);
    const url = route.url.replace(/:[A-Za-z]+/g, () => randomUUID());
    const key = `walk-${randomBytes(6).toString('hex')}`;
    if (mode === 'refused') {
      t.notOk(declared, `${route.url}: the contract does not offer the header`);
      const token = route.auth === 'operator' ? operator.accessToken : owner.accessToken;
      const res = await app.inject({
        method: 'POST',
        url,
        headers: { ...bearer(token), 'idempotency-key': key },
        payload: exampleBody(operation) ?? {},
      });
      assertProblem(t, res, {
        status: 400,
        code: 'idempotency_key_unsupported',
        instance: url,
      });
      continue;
    }
    t.ok(declared, `${route.url}: the contract declares the header`);
    if (mode === 'handler') continue; // the import: see contact-imports-resume.test.ts
    // The example body of the contract, against ids that do not exist: whatever the first
    // answer (a 404 is an answer too), the second is its replay.
    // Logout ends the session it is sent with: a session of its own.
    const token =
      route.url === '/v1/auth/logout'
        ? (await login(app, owner.email)).accessToken
        : owner.accessToken;
    const send = () =>
      app.inject({
        method: 'POST',
        url,
        headers: { ...bearer(token), 'idempotency-key': key },
        payload: (exampleBody(operation) ?? {}) as object,
      });
    const first = await send();
    t.ok(first.statusCode < 500, `${route.url}: answered ${first.statusCode}`);
    const code = first.body ? first.json().code : undefined;
    t.not(code, 'validation_failed', `${route.url}: the example is valid`);
    const stored = await app.database.owner
      .selectFrom('idempotency_keys')
      .select(['status', 'response_status'])
      .where('account_id', '=', owner.accountId)
      .where('key', '=', key)
      .executeTakeFirst();
    t.same(stored, { status: 'completed', response_status: first.statusCode }, route.url);
    if (route.url === '/v1/auth/logout') continue; // the session has ended: 401 from now on
    const second = await send();
    t.equal(second.statusCode, first.statusCode, `${route.url}: same status`);
    t.equal(second.headers['idempotent-replayed'], 'true', `${route.url}: a replay`);
    t.equal(second.body, first.body, `${route.url}: same body`);
  }
});
