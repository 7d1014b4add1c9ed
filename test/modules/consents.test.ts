import { createHash } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import t from 'tap';
import { withTenant } from '../../src/db/tenant.js';
import { assertProblem } from '../app/assert-problem.js';
import { createApiKey } from '../fixtures/identity.js';
import { build } from '../helper.js';
import {
  consentWorld,
  createPurposeWithNotice,
  insertContact,
  mustRecord,
  NOTICE_TEXT,
  recordConsent,
  restrict,
} from './consents-fixtures.js';

t.test('events are appended and the current state is derived from the newest', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  const url = `/v1/contacts/${contactId}/consents`;

  const granted = await recordConsent(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    occurredAt: '2026-01-10T09:00:00.000Z',
    evidence: {
      ip: '203.0.113.7',
      userAgent: 'Mozilla/5.0 test',
      sourceUrl: 'https://shop.example.com/newsletter',
    },
  });
  t.equal(granted.statusCode, 201);
  t.match(granted.headers['content-type'], /^application\/json/);
  t.match(granted.json(), {
    id: /^[0-9a-f-]{36}$/,
    contactId,
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    legalBasis: 'consent',
    occurredAt: '2026-01-10T09:00:00.000Z',
    evidence: {
      ip: '203.0.113.7',
      userAgent: 'Mozilla/5.0 test',
      sourceUrl: 'https://shop.example.com/newsletter',
    },
    recordedBy: { type: 'user', id: owner.userId },
    state: 'granted',
    withdrawal: { token: /^[A-Za-z0-9_-]{43}$/, url: /^\/v1\/public\/consent-withdrawals\// },
  });
  t.notOk('confirmation' in granted.json(), 'no confirmation link without double opt-in');

  const state = async () => {
    const res = await app.inject({ method: 'GET', url, headers });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    return res.json();
  };
  t.match((await state()).current, [
    { purposeId, purposeKey: 'newsletter', state: 'granted', noticeVersion: 1, method: 'form' },
  ]);

  const withdrawn = await recordConsent(app, headers, contactId, {
    purposeId,
    event: 'withdrawn',
    method: 'api',
  });
  t.equal(withdrawn.statusCode, 201);
  t.equal(withdrawn.json().state, 'withdrawn');
  t.equal(withdrawn.json().noticeVersion, null);
  t.notOk('withdrawal' in withdrawn.json(), 'a withdrawal hands out no links');
  t.match((await state()).current, [{ purposeId, state: 'withdrawn', method: 'api' }]);

  await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'double_opt_in',
  });
  t.match((await state()).current, [{ state: 'pending', method: 'double_opt_in' }]);

  await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'import',
  });
  const final = await state();
  t.match(final.current, [{ state: 'granted', method: 'import' }]);
  t.same(
    final.events.map((e: { event: string; method: string }) => `${e.event}:${e.method}`),
    ['granted:import', 'granted:double_opt_in', 'withdrawn:api', 'granted:form'],
    'the ledger keeps every event, newest first',
  );
  t.equal(final.nextCursor, null);
});

t.test('the ledger pages with a cursor and filters by purpose', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const offers = await createPurposeWithNotice(app, owner, 'offers');
  const contactId = await insertContact(app, owner.accountId);
  const written: string[] = [];
  for (let i = 0; i < 5; i++) {
    const event = await mustRecord(app, headers, contactId, {
      purposeId: i === 2 ? offers : purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'api',
    });
    written.unshift(event.id);
  }
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res: LightMyRequestResponse = await app.inject({
      method: 'GET',
      url: `/v1/contacts/${contactId}/consents?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      headers,
    });
    t.equal(res.statusCode, 200);
    const body = res.json() as {
      events: { id: string }[];
      current: unknown[];
      nextCursor: string | null;
    };
    t.ok(body.events.length <= 2);
    t.equal(body.current.length, 2, 'every page carries the current state of both purposes');
    seen.push(...body.events.map((e: { id: string }) => e.id));
    cursor = body.nextCursor;
    pages++;
  } while (cursor && pages < 10);
  t.equal(pages, 3);
  t.same(seen, written, 'every event once, newest first');

  const filtered = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consents?purposeId=${offers}`,
    headers,
  });
  t.same(
    filtered.json().events.map((e: { id: string }) => e.id),
    [written[2]],
  );

  const bad = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consents?cursor=${Buffer.from('["x","y"]').toString('base64url')}`,
    headers,
  });
  assertProblem(t, bad, {
    status: 400,
    code: 'invalid_cursor',
    instance: `/v1/contacts/${contactId}/consents`,
  });
});

t.test('a grant needs a notice version of its purpose', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const other = await createPurposeWithNotice(app, owner, 'offers', ['one', 'two']);
  const contactId = await insertContact(app, owner.accountId);
  const instance = `/v1/contacts/${contactId}/consents`;

  const missing = await recordConsent(app, headers, contactId, {
    purposeId,
    event: 'granted',
    method: 'form',
  });
  const body = assertProblem(t, missing, { status: 400, code: 'validation_failed', instance });
  t.equal(body.errors?.[0]?.field, 'body.noticeVersion');

  const unknown = await recordConsent(app, headers, contactId, {
    purposeId,
    noticeVersion: 2,
    event: 'granted',
    method: 'form',
  });
  assertProblem(t, unknown, { status: 422, code: 'unknown_notice_version', instance });
  t.equal(
    (
      await recordConsent(app, headers, contactId, {
        purposeId: other,
        noticeVersion: 2,
        event: 'granted',
        method: 'form',
      })
    ).statusCode,
    201,
    'version 2 exists for the other purpose only',
  );

  const future = await recordConsent(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    occurredAt: new Date(Date.now() + 3_600_000).toISOString(),
  });
  assertProblem(t, future, { status: 400, code: 'validation_failed', instance });

  const doiWithdrawal = await recordConsent(app, headers, contactId, {
    purposeId,
    event: 'withdrawn',
    method: 'double_opt_in',
  });
  assertProblem(t, doiWithdrawal, { status: 400, code: 'validation_failed', instance });

  const badEvidence = await recordConsent(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    evidence: { ip: 'not-an-ip', sourceUrl: 'javascript:alert(1)' },
  });
  const evidence = assertProblem(t, badEvidence, {
    status: 400,
    code: 'validation_failed',
    instance,
  });
  t.same(evidence.errors?.map((e) => e.field).sort(), [
    'body.evidence.ip',
    'body.evidence.sourceUrl',
  ]);

  const events = await app.database.owner
    .selectFrom('consent_events')
    .select('purpose_id')
    .where('contact_id', '=', contactId)
    .execute();
  t.same(
    events.map((e) => e.purpose_id),
    [other],
    'nothing refused was written',
  );
});

t.test('a restricted contact may withdraw but not grant', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  await restrict(app, owner.accountId, contactId);

  const grant = await recordConsent(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'api',
  });
  assertProblem(t, grant, {
    status: 409,
    code: 'restricted',
    instance: `/v1/contacts/${contactId}/consents`,
  });
  const withdraw = await recordConsent(app, headers, contactId, {
    purposeId,
    event: 'withdrawn',
    method: 'api',
  });
  t.equal(withdraw.statusCode, 201);
  t.equal(withdraw.json().state, 'withdrawn');
});

t.test('recording consent needs consents:write; reading needs consents:read', async (t) => {
  const app = await build(t);
  const { owner, purposeId } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  const reader = await createApiKey(app, owner, ['consents:read', 'contacts:write']);
  const writer = await createApiKey(app, owner, ['consents:write']);
  const body = {
    purposeId,
    noticeVersion: 1,
    event: 'granted' as const,
    method: 'api' as const,
  };

  const denied = await recordConsent(app, { 'x-api-key': reader.key }, contactId, body);
  assertProblem(t, denied, {
    status: 403,
    code: 'missing_scope',
    instance: `/v1/contacts/${contactId}/consents`,
  });
  const allowed = await recordConsent(app, { 'x-api-key': writer.key }, contactId, body);
  t.equal(allowed.statusCode, 201);
  t.same(allowed.json().recordedBy, { type: 'api_key', id: writer.id });

  const read = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consents`,
    headers: { 'x-api-key': reader.key },
  });
  t.equal(read.statusCode, 200);
  t.equal(read.json().events.length, 1);
  const writerReads = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consent-receipt`,
    headers: { 'x-api-key': writer.key },
  });
  assertProblem(t, writerReads, {
    status: 403,
    code: 'missing_scope',
    instance: `/v1/contacts/${contactId}/consent-receipt`,
  });
});

t.test('every event is audited by field name, without the evidence values', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId, { email: 'audited@example.com' });
  await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    evidence: { ip: '198.51.100.23', userAgent: 'SecretBrowser/1.0' },
  });
  await mustRecord(app, headers, contactId, { purposeId, event: 'withdrawn', method: 'api' });

  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?entityType=contact',
    headers,
  });
  t.equal(trail.statusCode, 200);
  const entries = trail
    .json()
    .data.filter((e: { action: string }) => e.action.startsWith('consent.'));
  t.same(
    entries.map((e: { action: string; entity: { id: string } }) => [e.action, e.entity.id]),
    [
      ['consent.withdrawn', contactId],
      ['consent.granted', contactId],
    ],
  );
  t.same(entries[1].changedFields, [
    'consent.evidence.ip',
    'consent.evidence.userAgent',
    'consent.legalBasis',
    'consent.method',
    'consent.noticeVersion',
    'consent.occurredAt',
    'consent.purposeId',
  ]);
  for (const secret of ['198.51.100.23', 'SecretBrowser', 'audited@example.com']) {
    t.notOk(trail.body.includes(secret), `the trail does not hold ${secret}`);
  }
});

t.test('the ledger is append-only, except for an erasure', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  // The triggers hold even for the tables' owner; the service role is refused before them.
  const schemaOwner = app.database.owner;
  const service = app.database.db;

  await t.rejects(
    schemaOwner
      .updateTable('consent_events')
      .set({ event: 'withdrawn' })
      .where('contact_id', '=', contactId)
      .execute(),
    /append-only/,
    'UPDATE refused, even to the owner',
  );
  await t.rejects(
    sql`truncate consent_events`.execute(schemaOwner),
    /append-only/,
    'TRUNCATE refused, even to the owner',
  );
  await t.rejects(
    service.deleteFrom('consent_events').where('contact_id', '=', contactId).execute(),
    /permission denied/,
    'the service may not DELETE',
  );
  await t.rejects(
    service.deleteFrom('contacts').where('id', '=', contactId).execute(),
    /permission denied/,
    'nor delete the contact (which would cascade to its ledger)',
  );
  await t.rejects(
    service.transaction().execute(async (trx) => {
      await sql`select set_config('custodian.erasure', 'on', true)`.execute(trx);
      await trx.deleteFrom('consent_events').where('contact_id', '=', contactId).execute();
    }),
    /permission denied/,
    'and no setting lets it',
  );
  await t.rejects(
    withTenant(owner.accountId, () =>
      sql`select erase_contact(${owner.accountId}::uuid, ${contactId}::uuid)`.execute(service),
    ),
    /no erasure is recorded/,
    'the erasure function refuses a contact whose erasure is not recorded',
  );

  const erased = await app.inject({
    method: 'DELETE',
    url: `/v1/contacts/${contactId}`,
    headers,
  });
  t.equal(erased.statusCode, 204, 'an erasure goes through');
  const left = await schemaOwner
    .selectFrom('consent_events')
    .select('id')
    .where('contact_id', '=', contactId)
    .execute();
  t.same(left, [], 'the erasure removed the contact’s events');
  const tokens = await schemaOwner
    .selectFrom('consent_tokens')
    .select('token_hash')
    .where('contact_id', '=', contactId)
    .execute();
  t.same(tokens, [], 'and its links');
});

t.test('the consent receipt carries the Kantara / ISO 27560 fields', async (t) => {
  const app = await build(t);
  const { owner, purposeId, headers } = await consentWorld(app, 'Receipt Shop');
  await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers,
    payload: { dpo: { name: 'Dana Officer', email: 'dpo@shop.example', phone: '+386 1 234 5678' } },
  });
  const offers = await createPurposeWithNotice(app, owner, 'offers', ['Offers v1', 'Offers v2']);
  const contactId = await insertContact(app, owner.accountId, {
    email: 'receipt@example.com',
    language: 'sl',
  });

  const newsletter = await mustRecord(app, headers, contactId, {
    purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
    occurredAt: '2026-02-01T10:00:00.000Z',
  });
  await mustRecord(app, headers, contactId, {
    purposeId: offers,
    noticeVersion: 2,
    event: 'granted',
    method: 'api',
    occurredAt: '2026-02-02T10:00:00.000Z',
  });
  await mustRecord(app, headers, contactId, {
    purposeId: offers,
    event: 'withdrawn',
    method: 'api',
    occurredAt: '2026-02-03T10:00:00.000Z',
  });

  const res = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consent-receipt`,
    headers,
  });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  const receipt = res.json();
  t.match(receipt, {
    version: 'KI-CR-v1.1.0',
    jurisdiction: 'EU',
    consentTimestamp: '2026-02-03T10:00:00.000Z',
    collectionMethod: 'api',
    consentReceiptID: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    language: 'en',
    piiPrincipalId: contactId,
    piiControllers: [
      {
        piiController: 'Receipt Shop',
        contact: 'Dana Officer',
        email: 'dpo@shop.example',
        phone: '+386 1 234 5678',
      },
    ],
    sensitive: false,
  });
  t.notOk('policyUrl' in receipt, 'no policy URL is invented');
  t.notOk(res.body.includes('receipt@example.com'), 'the principal is the id, not the email');
  const [service] = receipt.services;
  t.same(
    service.purposes.map((p: { purposeKey: string }) => p.purposeKey),
    ['newsletter', 'offers'],
  );
  t.match(service.purposes[0], {
    purposeId,
    purpose: 'Purpose newsletter',
    purposeCategory: ['Marketing'],
    consentType: 'EXPLICIT',
    legalBasis: 'consent',
    state: 'granted',
    method: 'form',
    noticeVersion: 1,
    noticeTextSha256: createHash('sha256').update(NOTICE_TEXT).digest('hex'),
    grantedAt: newsletter.occurredAt,
    confirmedAt: null,
    withdrawnAt: null,
    termination: /withdrawal link/,
  });
  t.match(service.purposes[1], {
    purposeId: offers,
    state: 'withdrawn',
    method: 'api',
    noticeVersion: 2,
    noticeTextSha256: createHash('sha256').update('Offers v2').digest('hex'),
    grantedAt: '2026-02-02T10:00:00.000Z',
    withdrawnAt: '2026-02-03T10:00:00.000Z',
  });

  const again = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consent-receipt`,
    headers,
  });
  t.not(again.json().consentReceiptID, receipt.consentReceiptID, 'each receipt has its own id');

  const blank = await insertContact(app, owner.accountId, { language: 'de' });
  const empty = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${blank}/consent-receipt`,
    headers,
  });
  t.equal(empty.statusCode, 200);
  t.match(empty.json(), {
    consentTimestamp: null,
    collectionMethod: null,
    language: 'de',
    services: [{ purposes: [] }],
  });
});

t.test('another account’s contact or purpose is a 404', async (t) => {
  const app = await build(t);
  const mine = await consentWorld(app);
  const theirs = await consentWorld(app);
  const myContact = await insertContact(app, mine.owner.accountId);
  const theirContact = await insertContact(app, theirs.owner.accountId);
  await mustRecord(app, theirs.headers, theirContact, {
    purposeId: theirs.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });

  for (const url of [
    `/v1/contacts/${theirContact}/consents`,
    `/v1/contacts/${theirContact}/consent-receipt`,
  ]) {
    const res = await app.inject({ method: 'GET', url, headers: mine.headers });
    assertProblem(t, res, { status: 404, code: 'not_found', instance: url });
  }
  const onTheirContact = await recordConsent(app, mine.headers, theirContact, {
    purposeId: mine.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  assertProblem(t, onTheirContact, {
    status: 404,
    code: 'not_found',
    instance: `/v1/contacts/${theirContact}/consents`,
  });
  const withTheirPurpose = await recordConsent(app, mine.headers, myContact, {
    purposeId: theirs.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  const body = assertProblem(t, withTheirPurpose, {
    status: 404,
    code: 'not_found',
    instance: `/v1/contacts/${myContact}/consents`,
  });
  t.match(body.detail, /purpose/);

  const theirLedger = await app.database.owner
    .selectFrom('consent_events')
    .select('id')
    .where('contact_id', '=', theirContact)
    .execute();
  t.equal(theirLedger.length, 1, 'their ledger is untouched');
});
