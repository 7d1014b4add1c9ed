import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { emailFingerprint } from '../../src/lib/keyed-hash.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer, signup } from '../fixtures/identity.js';
import { whereIs } from '../fixtures/where-is.js';
import { build, testConfig } from '../helper.js';
import { createPurposeWithNotice } from './consents-fixtures.js';
import { CONSENT, errorsOf, ndjson, upload, world } from './contact-imports-fixtures.js';

const HASH_SECRET = testConfig().HASH_SECRET!;

async function createContact(
  app: FastifyInstance,
  headers: Record<string, string>,
  payload: object,
) {
  return app.inject({ method: 'POST', url: '/v1/contacts', headers, payload });
}

t.test('erasure (Art. 17) leaves only the keyed hash, everywhere', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const purposeId = await createPurposeWithNotice(app, owner, 'newsletter');

  const email = 'erase.me@example.com';
  const created = await createContact(
    app,
    { ...headers, 'idempotency-key': 'create-erase-me' },
    {
      email: 'Erase.Me@Example.com',
      firstName: 'Quixotica',
      lastName: 'Zarathustrova',
      attributes: { note: 'Marker-7781-personal' },
    },
  );
  t.equal(created.statusCode, 201, created.body);
  const contactId: string = created.json().id;
  // A second contact that must survive untouched.
  const keep = await createContact(app, headers, { email: 'keep.me@example.com' });
  const keepId: string = keep.json().id;

  const doi = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contactId}/consents`,
    headers,
    payload: {
      purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'double_opt_in',
      evidence: { ip: '198.51.100.77', userAgent: 'Quixotica-Browser/1.0' },
    },
  });
  t.equal(doi.statusCode, 201, doi.body);
  const confirmed = await app.inject({
    method: 'POST',
    url: doi.json().confirmation.url,
    remoteAddress: '198.51.100.78',
  });
  t.equal(confirmed.statusCode, 200, confirmed.body);
  for (const id of [contactId, keepId]) {
    const grant = await app.inject({
      method: 'POST',
      url: `/v1/contacts/${id}/consents`,
      headers,
      payload: { purposeId, noticeVersion: 1, event: 'granted', method: 'form' },
    });
    t.equal(grant.statusCode, 201);
  }
  await app.inject({
    method: 'PUT',
    url: `/v1/contacts/${contactId}/restriction`,
    headers,
    payload: { reason: 'Zarathustrova asked' },
  });

  // The search can fail: before erasure it finds the data where it lives.
  const before = await whereIs(db, email);
  t.ok(before.includes('contacts.email'), `found before: ${before.join(', ')}`);
  t.ok(before.includes('idempotency_keys.response_body'), 'the stored idempotent response too');
  t.ok((await whereIs(db, 'Zarathustrova')).length >= 2);
  const tokensBefore = await db
    .selectFrom('consent_tokens')
    .select('token_hash')
    .where('contact_id', '=', contactId)
    .execute();
  t.ok(tokensBefore.length > 0, 'the contact has consent links');

  const erased = await app.inject({ method: 'DELETE', url: `/v1/contacts/${contactId}`, headers });
  t.equal(erased.statusCode, 204, erased.body);
  t.equal(erased.body, '');

  for (const needle of [
    email,
    'Quixotica',
    'Zarathustrova',
    'Marker-7781',
    '198.51.100.77',
    '198.51.100.78',
  ]) {
    t.same(await whereIs(db, needle), [], `${needle}: found nowhere after erasure`);
  }
  // The search still works after erasure: the contact's random id remains in the audit trail
  // (and in the erasure record's uuid column), which accountability needs; nothing personal.
  t.same(await whereIs(db, contactId), ['audit_events.entity_id']);

  const fingerprint = emailFingerprint(HASH_SECRET, email);
  const suppression = await db
    .selectFrom('suppressions')
    .selectAll()
    .where('account_id', '=', owner.accountId)
    .execute();
  t.same(
    suppression.map((row) => [row.email_hash, row.reason]),
    [[fingerprint, 'erased']],
    'the keyed hash is on the suppression list',
  );
  const erasure = await db
    .selectFrom('erasures')
    .selectAll()
    .where('account_id', '=', owner.accountId)
    .executeTakeFirstOrThrow();
  t.match(erasure, { contact_id: contactId, email_hash: fingerprint, request_id: /\S/ });
  t.equal(erasure.request_id, erased.headers['x-request-id']);
  t.same(
    await db
      .selectFrom('consent_events')
      .select('id')
      .where('contact_id', '=', contactId)
      .execute(),
    [],
  );
  t.same(
    await db
      .selectFrom('consent_tokens')
      .select('token_hash')
      .where('contact_id', '=', contactId)
      .execute(),
    [],
  );

  // The other contact and its ledger are untouched; the ledger is append-only again.
  const kept = await app.inject({ method: 'GET', url: `/v1/contacts/${keepId}`, headers });
  t.equal(kept.statusCode, 200);
  t.equal(
    (await db.selectFrom('consent_events').select('id').where('contact_id', '=', keepId).execute())
      .length,
    1,
  );
  await t.rejects(
    app.database.db.deleteFrom('consent_events').where('contact_id', '=', keepId).execute(),
    /permission denied/,
    'the service still may not delete from the ledger',
  );

  const gone = await app.inject({ method: 'GET', url: `/v1/contacts/${contactId}`, headers });
  assertProblem(t, gone, { status: 404, code: 'not_found', instance: `/v1/contacts/${contactId}` });
  const twice = await app.inject({ method: 'DELETE', url: `/v1/contacts/${contactId}`, headers });
  assertProblem(t, twice, {
    status: 404,
    code: 'not_found',
    instance: `/v1/contacts/${contactId}`,
  });

  const audit = await db
    .selectFrom('audit_events')
    .select(['action', 'changed_fields'])
    .where('account_id', '=', owner.accountId)
    .where('entity_id', '=', contactId)
    .where('action', '=', 'contact.erased')
    .execute();
  t.equal(audit.length, 1, 'the erasure is audited');
  const verify = await app.inject({ method: 'GET', url: '/v1/audit-events/verify', headers });
  t.equal(verify.json().valid, true, 'the audit chain still verifies');
});

t.test('an erased address is suppressed: re-creation refused, check stores nothing', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const email = 'gone@example.com';
  const first = await createContact(app, headers, { email });
  const erased = await app.inject({
    method: 'DELETE',
    url: `/v1/contacts/${first.json().id}`,
    headers,
  });
  t.equal(erased.statusCode, 204);

  const again = await createContact(app, headers, { email: '  GONE@example.com' });
  const problem = assertProblem(t, again, {
    status: 422,
    code: 'suppressed',
    instance: '/v1/contacts',
  });
  t.notOk(JSON.stringify(problem).includes('gone@'), 'the problem does not echo the address');

  const check = async (value: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/suppressions/check',
      headers,
      payload: { email: value },
    });
    t.equal(res.statusCode, 200, res.body);
    t.match(res.headers['content-type'], /^application\/json/);
    return res.json();
  };
  t.same(await check('Gone@Example.com'), { suppressed: true });
  const neverSeen = 'never.seen.address@example.com';
  t.same(await check(neverSeen), { suppressed: false });
  t.same(await whereIs(db, neverSeen), [], 'checking stores nothing');
  t.same(await whereIs(db, 'gone@example.com'), [], 'nor does a refused re-creation');

  const readKeyRes = await app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers,
    payload: { name: 'reader', scopes: ['contacts:read'] },
  });
  const reader = { 'x-api-key': readKeyRes.json().key as string };
  const byReader = await app.inject({
    method: 'POST',
    url: '/v1/suppressions/check',
    headers: reader,
    payload: { email },
  });
  t.same(byReader.json(), { suppressed: true }, 'contacts:read may check');
  const bad = await app.inject({
    method: 'POST',
    url: '/v1/suppressions/check',
    headers,
    payload: { email: 'nope' },
  });
  const badProblem = assertProblem(t, bad, {
    status: 400,
    code: 'validation_failed',
    instance: '/v1/suppressions/check',
  });
  t.match(badProblem.errors, [{ field: 'body.email' }]);

  // Rectifying another contact to the erased address would bring it back.
  const other = await createContact(app, headers, { email: 'other@example.com' });
  const rectify = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${other.json().id}`,
    headers,
    payload: { email },
  });
  assertProblem(t, rectify, {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${other.json().id}`,
  });

  // The suppression list is per account.
  const stranger = await signup(app);
  const elsewhere = await createContact(app, bearer(stranger.accessToken), { email });
  t.equal(elsewhere.statusCode, 201, 'another account may hold the address');

  // With a fresh consent through double opt-in, the address may come back.
  const withDoi = await createContact(app, headers, { email, doubleOptIn: true });
  t.equal(withDoi.statusCode, 201, withDoi.body);
  t.equal(withDoi.json().email, email);
  t.same(await check(email), { suppressed: true }, 'the suppression itself stays');
});

t.test('erasure suppresses every address the contact held, keeping no plaintext', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const first = 'first.address@example.com';
  const second = 'second.address@example.com';
  const createFirst = {
    email: first,
    firstName: 'Ottoline',
    attributes: { phone: '+386 1 555 0199', city: 'Smallville-4411' },
  };
  const created = await createContact(
    app,
    { ...headers, 'idempotency-key': 'create-first-address' },
    createFirst,
  );
  t.equal(created.statusCode, 201, created.body);
  const id: string = created.json().id;
  const moved = await app.inject({
    method: 'PATCH',
    url: `/v1/contacts/${id}`,
    headers,
    payload: { email: second },
  });
  t.equal(moved.statusCode, 200, moved.body);
  const history = await db
    .selectFrom('contact_address_history')
    .select('email_hash')
    .where('contact_id', '=', id)
    .execute();
  t.same(
    history.map((row) => row.email_hash),
    [emailFingerprint(HASH_SECRET, first)],
    'the earlier address is kept as its keyed hash while the contact lives',
  );
  t.same(
    await whereIs(db, first),
    ['idempotency_keys.response_body'],
    'and not in plaintext (only the stored response of the first creation has it)',
  );

  const erased = await app.inject({ method: 'DELETE', url: `/v1/contacts/${id}`, headers });
  t.equal(erased.statusCode, 204);
  const suppressed = await db
    .selectFrom('suppressions')
    .select('email_hash')
    .where('account_id', '=', owner.accountId)
    .orderBy('email_hash')
    .execute();
  t.same(
    suppressed.map((row) => row.email_hash),
    [emailFingerprint(HASH_SECRET, first), emailFingerprint(HASH_SECRET, second)].sort(),
    'both addresses are on the suppression list',
  );

  // A replay of the first creation (its stored answer went with the erasure) runs again and
  // meets the suppression list, as does any fresh creation of either address.
  const replay = await createContact(
    app,
    { ...headers, 'idempotency-key': 'create-first-address' },
    createFirst,
  );
  assertProblem(t, replay, { status: 422, code: 'suppressed', instance: '/v1/contacts' });
  for (const email of [first, second]) {
    const again = await createContact(app, headers, { email });
    assertProblem(t, again, { status: 422, code: 'suppressed', instance: '/v1/contacts' });
  }
  for (const needle of [first, second, 'Ottoline', '555 0199', 'Smallville-4411']) {
    t.same(await whereIs(db, needle), [], `${needle}: found nowhere after erasure`);
  }
  t.same(
    await db.selectFrom('contact_address_history').select('contact_id').execute(),
    [],
    'the address history went with the contact',
  );
});

t.test(
  'keys that name an erased address are forgotten, and a replay creates nothing',
  async (t) => {
    const w = await world(t);
    const db = w.app.database.owner;
    const email = 'jana@example.com';
    const file = ndjson([{ email, firstName: 'Jaroslava-8812', consent: CONSENT }]);
    const importKey = { 'idempotency-key': 'import-Jana@Example.com' };
    const imported = await upload(w, file, 'format=ndjson', 'application/x-ndjson', importKey);
    t.equal(imported.statusCode, 201, imported.body);
    t.equal(imported.json().counts.created, 1);
    // A creation retried after the import made the contact: its stored answer (409) does not
    // mention the contact, but its key does.
    const createKey = { ...w.headers, 'idempotency-key': `create-${email}` };
    const exists = await createContact(w.app, createKey, { email });
    t.equal(exists.statusCode, 409, exists.body);
    const mine = db.selectFrom('contacts').select('id').where('account_id', '=', w.owner.accountId);
    const id = (await mine.executeTakeFirstOrThrow()).id;
    // The key names the earlier address, which only its keyed hash remembers after this.
    const moved = await w.app.inject({
      method: 'PATCH',
      url: `/v1/contacts/${id}`,
      headers: w.headers,
      payload: { email: 'jana.novak@example.com' },
    });
    t.equal(moved.statusCode, 200, moved.body);
    t.same(
      await whereIs(db, email),
      ['contact_imports.idempotency_key', 'idempotency_keys.key'],
      'before erasure the keys hold the earlier address',
    );

    const erased = await w.app.inject({
      method: 'DELETE',
      url: `/v1/contacts/${id}`,
      headers: w.headers,
    });
    t.equal(erased.statusCode, 204);
    t.same(await whereIs(db, email), [], 'no key holds the address after erasure');
    t.same(await whereIs(db, 'jana.novak@example.com'), []);
    t.same(await whereIs(db, 'Jaroslava-8812'), []);
    const job = await db
      .selectFrom('contact_imports')
      .select(['id', 'idempotency_key', 'created_count'])
      .where('account_id', '=', w.owner.accountId)
      .executeTakeFirstOrThrow();
    t.match(job, { idempotency_key: null, created_count: 1 }, 'the job itself is kept');

    // Replays with the same keys run again, and the suppression list stops them.
    const again = await upload(w, file, 'format=ndjson', 'application/x-ndjson', importKey);
    t.equal(again.statusCode, 201, again.body);
    t.equal(again.headers['idempotent-replayed'], undefined, 'not answered from the old job');
    t.match(again.json().counts, { created: 0, rejected: 1 });
    t.match(await errorsOf(w, again.json().id), [{ row: 1, field: 'email', code: 'suppressed' }]);
    const replayed = await createContact(w.app, createKey, { email });
    assertProblem(t, replayed, { status: 422, code: 'suppressed', instance: '/v1/contacts' });
    t.same(await mine.execute(), [], 'nothing came back');
  },
);
