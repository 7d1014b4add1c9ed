import { sql } from 'kysely';
import t from 'tap';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { assertProblem } from './assert-problem.js';

t.test('Idempotency-Key on POST /v1/contacts', async (t) => {
  const app = await build(t);
  const db = app.database.db;
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
  const rows = await app.database.db
    .selectFrom('contacts')
    .select('id')
    .where('account_id', '=', owner.accountId)
    .execute();
  t.equal(rows.length, 1);
});
