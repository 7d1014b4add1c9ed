import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { assertProblem } from '../app/assert-problem.js';
import { build, testConfig } from '../helper.js';
import {
  type ConsentWorld,
  consentWorld,
  insertContact,
  mustRecord,
  restrict,
} from './consents-fixtures.js';

const CONFIRM = '/v1/public/consent-confirmations/';
const WITHDRAW = '/v1/public/consent-withdrawals/';

async function doubleOptIn(app: FastifyInstance, world: ConsentWorld, contactId: string) {
  return mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'double_opt_in',
    evidence: { ip: '203.0.113.9', sourceUrl: 'https://shop.example.com/signup' },
  });
}

function follow(app: FastifyInstance, url: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, headers });
}

async function currentState(app: FastifyInstance, world: ConsentWorld, contactId: string) {
  const res = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consents`,
    headers: world.headers,
  });
  return res.json();
}

t.test('double opt-in: pending until the person confirms with the link', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app, 'Secret Shop Ltd');
  const contactId = await insertContact(app, world.owner.accountId, {
    email: 'subscriber@example.com',
  });
  const before = Date.now();
  const granted = await doubleOptIn(app, world, contactId);
  t.equal(granted.state, 'pending');
  t.match(granted.confirmation, {
    token: /^[A-Za-z0-9_-]{43}$/,
    url: `${CONFIRM}${granted.confirmation.token}`,
  });
  const ttl = testConfig().CONSENT_TOKEN_TTL_HOURS * 3_600_000;
  const expires = Date.parse(granted.confirmation.expiresAt);
  t.ok(expires >= before + ttl && expires <= Date.now() + ttl, 'expires after the TTL');
  const withdrawalExpires = Date.parse(granted.withdrawal.expiresAt);
  t.ok(withdrawalExpires >= before + 364 * 86_400_000, 'the withdrawal link lasts a year');
  t.not(granted.withdrawal.token, granted.confirmation.token);

  const stored = await app.database.owner
    .selectFrom('consent_tokens')
    .selectAll()
    .where('contact_id', '=', contactId)
    .orderBy('kind')
    .execute();
  t.same(
    stored.map((row) => [row.kind, row.token_hash]),
    [
      ['confirm', createHash('sha256').update(granted.confirmation.token).digest('hex')],
      ['withdraw', createHash('sha256').update(granted.withdrawal.token).digest('hex')],
    ],
    'only the hashes are stored',
  );
  t.notOk(JSON.stringify(stored).includes(granted.confirmation.token), 'never the token');

  const ledger = await currentState(app, world, contactId);
  t.match(ledger.current, [{ state: 'pending' }]);
  t.notOk(JSON.stringify(ledger).includes(granted.confirmation.token), 'shown only once');

  const confirmed = await follow(app, granted.confirmation.url, {
    'user-agent': 'MailReader/2.0',
  });
  t.equal(confirmed.statusCode, 200, confirmed.body);
  t.match(confirmed.headers['content-type'], /^application\/json/);
  t.same(Object.keys(confirmed.json()).sort(), ['recordedAt', 'state']);
  t.equal(confirmed.json().state, 'granted');
  for (const secret of [
    'subscriber@example.com',
    'Secret Shop',
    world.owner.accountId,
    contactId,
  ]) {
    t.notOk(confirmed.body.includes(secret), 'the answer reveals nobody');
  }

  const after = await currentState(app, world, contactId);
  t.match(after.current, [{ state: 'granted', noticeVersion: 1, method: 'double_opt_in' }]);
  t.match(after.events[0], {
    event: 'confirmed',
    method: 'double_opt_in',
    noticeVersion: 1,
    recordedAt: confirmed.json().recordedAt,
    evidence: { ip: '127.0.0.1', userAgent: 'MailReader/2.0', sourceUrl: null },
    recordedBy: { type: 'data_subject', id: null },
  });

  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=consent.confirmed',
    headers: world.headers,
  });
  t.match(trail.json().data, [
    { actor: { type: 'data_subject', id: null }, entity: { type: 'contact', id: contactId } },
  ]);
  t.equal(trail.json().data[0].ip, null, 'the subject’s IP stays in the erasable ledger only');

  const reused = await follow(app, granted.confirmation.url);
  assertProblem(t, reused, { status: 409, code: 'token_used', instance: granted.confirmation.url });
});

t.test('tampered, unknown and misdirected tokens are 404 token_invalid', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await doubleOptIn(app, world, contactId);
  const token: string = granted.confirmation.token;
  const flipped = `${token.slice(0, 10)}${token[10] === 'A' ? 'B' : 'A'}${token.slice(11)}`;
  for (const url of [
    `${CONFIRM}${flipped}`,
    `${CONFIRM}${token.slice(0, 42)}`,
    `${CONFIRM}${token}x`,
    `${CONFIRM}not-a-token`,
    `${CONFIRM}${granted.withdrawal.token}`,
    `${WITHDRAW}${token}`,
  ]) {
    const res = await follow(app, url);
    const body = assertProblem(t, res, { status: 404, code: 'token_invalid', instance: url });
    t.notMatch(body.detail, /contact|account|@/, 'the error names no one');
  }
  const still = await currentState(app, world, contactId);
  t.match(still.current, [{ state: 'pending' }], 'nothing was confirmed');

  const ok = await follow(app, granted.confirmation.url);
  t.equal(ok.statusCode, 200, 'the real token still works');
});

t.test('an expired confirmation link is 410 token_expired', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await doubleOptIn(app, world, contactId);
  await app.database.owner
    .updateTable('consent_tokens')
    .set({ expires_at: new Date(Date.now() - 1000) })
    .where('contact_id', '=', contactId)
    .where('kind', '=', 'confirm')
    .execute();
  const expired = await follow(app, granted.confirmation.url);
  assertProblem(t, expired, {
    status: 410,
    code: 'token_expired',
    instance: granted.confirmation.url,
  });
  t.match((await currentState(app, world, contactId)).current, [{ state: 'pending' }]);
});

t.test('a confirmation cannot revive a withdrawn consent', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await doubleOptIn(app, world, contactId);
  await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    event: 'withdrawn',
    method: 'api',
  });
  const late = await follow(app, granted.confirmation.url);
  assertProblem(t, late, {
    status: 409,
    code: 'consent_not_pending',
    instance: granted.confirmation.url,
  });
  t.match((await currentState(app, world, contactId)).current, [{ state: 'withdrawn' }]);
});

t.test('a restricted contact cannot confirm', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await doubleOptIn(app, world, contactId);
  await restrict(app, world.owner.accountId, contactId);
  const res = await follow(app, granted.confirmation.url);
  assertProblem(t, res, { status: 409, code: 'restricted', instance: granted.confirmation.url });
  t.match((await currentState(app, world, contactId)).current, [{ state: 'pending' }]);
});

t.test('the withdrawal link withdraws once, without an account', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  t.equal(granted.state, 'granted');
  t.equal(granted.withdrawal.url, `${WITHDRAW}${granted.withdrawal.token}`);

  const withdrawn = await follow(app, granted.withdrawal.url, { 'user-agent': 'Phone/1' });
  t.equal(withdrawn.statusCode, 200, withdrawn.body);
  t.match(withdrawn.headers['content-type'], /^application\/json/);
  t.equal(withdrawn.json().state, 'withdrawn');
  const ledger = await currentState(app, world, contactId);
  t.match(ledger.current, [{ state: 'withdrawn', method: 'withdrawal_link', noticeVersion: 1 }]);
  t.match(ledger.events[0], {
    event: 'withdrawn',
    method: 'withdrawal_link',
    evidence: { ip: '127.0.0.1', userAgent: 'Phone/1' },
    recordedBy: { type: 'data_subject', id: null },
  });
  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=consent.withdrawn',
    headers: world.headers,
  });
  t.match(trail.json().data, [{ actor: { type: 'data_subject' } }]);

  const reused = await follow(app, granted.withdrawal.url);
  assertProblem(t, reused, { status: 409, code: 'token_used', instance: granted.withdrawal.url });

  // Withdrawal stays possible while the contact is restricted (Art. 18 stores, 7(3) still holds).
  const regrant = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  await restrict(app, world.owner.accountId, contactId);
  const whileRestricted = await follow(app, regrant.withdrawal.url);
  t.equal(whileRestricted.statusCode, 200);
  t.match((await currentState(app, world, contactId)).current, [{ state: 'withdrawn' }]);
});
