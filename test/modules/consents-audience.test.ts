import type { LightMyRequestResponse } from 'fastify';
import t from 'tap';
import { assertProblem } from '../app/assert-problem.js';
import { createApiKey } from '../fixtures/identity.js';
import { build } from '../helper.js';
import {
  consentWorld,
  createPurposeWithNotice,
  insertContact,
  mustRecord,
  restrict,
} from './consents-fixtures.js';

t.test('the audience is the verified, active, unrestricted grants of one purpose', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const { owner, purposeId, headers } = world;
  const offers = await createPurposeWithNotice(app, owner, 'offers');
  const grant = (
    contactId: string,
    method: 'form' | 'double_opt_in' = 'form',
    purpose = purposeId,
  ) =>
    mustRecord(app, headers, contactId, {
      purposeId: purpose,
      noticeVersion: 1,
      event: 'granted',
      method,
    });
  const withdraw = (contactId: string) =>
    mustRecord(app, headers, contactId, { purposeId, event: 'withdrawn', method: 'api' });
  const contact = (label: string, status?: 'active' | 'unsubscribed' | 'bounced') =>
    insertContact(app, owner.accountId, {
      email: `${label}@example.com`,
      ...(status ? { status } : {}),
    });

  const expected: string[] = [];
  const formGrant = await contact('form-grant');
  await grant(formGrant);
  expected.push(formGrant);

  const pending = await contact('pending');
  await grant(pending, 'double_opt_in');

  const confirmed = await contact('confirmed');
  const doi = await grant(confirmed, 'double_opt_in');
  const confirmation = await app.inject({ method: 'POST', url: doi.confirmation.url });
  t.equal(confirmation.statusCode, 200);
  expected.push(confirmed);

  const withdrawn = await contact('withdrawn');
  await grant(withdrawn);
  await withdraw(withdrawn);

  const regranted = await contact('regranted');
  await grant(regranted);
  await withdraw(regranted);
  await grant(regranted);
  expected.push(regranted);

  const reconfirming = await contact('reconfirming');
  await grant(reconfirming);
  await grant(reconfirming, 'double_opt_in');

  const restricted = await contact('restricted');
  await grant(restricted);
  await restrict(app, owner.accountId, restricted);

  const unsubscribed = await contact('unsubscribed', 'unsubscribed');
  await grant(unsubscribed);
  const bounced = await contact('bounced', 'bounced');
  await grant(bounced);

  const otherPurpose = await contact('other-purpose');
  await grant(otherPurpose, 'form', offers);

  const foreign = await consentWorld(app);
  const foreignContact = await insertContact(app, foreign.owner.accountId, {
    email: 'foreign@example.com',
  });
  await mustRecord(app, foreign.headers, foreignContact, {
    purposeId: foreign.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });

  expected.sort();
  const url = `/v1/purposes/${purposeId}/audience`;
  const all = await app.inject({ method: 'GET', url, headers });
  t.equal(all.statusCode, 200);
  t.match(all.headers['content-type'], /^application\/json/);
  t.same(
    all.json().data.map((m: { contactId: string }) => m.contactId),
    expected,
    'only the form grant, the confirmed double opt-in and the re-grant, by contact id',
  );
  t.match(all.json().data, [{ email: /@example\.com$/, language: 'en' }]);
  t.equal(all.json().nextCursor, null);
  for (const label of ['pending', 'withdrawn', 'restricted', 'unsubscribed', 'foreign']) {
    t.notOk(all.body.includes(`${label}@example.com`), `${label} is not in the audience`);
  }

  const paged: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res: LightMyRequestResponse = await app.inject({
      method: 'GET',
      url: `${url}?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      headers,
    });
    t.equal(res.statusCode, 200);
    t.ok(res.json().data.length <= 2);
    paged.push(...res.json().data.map((m: { contactId: string }) => m.contactId));
    cursor = res.json().nextCursor;
    pages++;
  } while (cursor && pages < 10);
  t.equal(pages, 2);
  t.same(paged, expected, 'pages add up to the whole audience, in order, once each');

  const offersAudience = await app.inject({
    method: 'GET',
    url: `/v1/purposes/${offers}/audience`,
    headers,
  });
  t.same(
    offersAudience.json().data.map((m: { contactId: string }) => m.contactId),
    [otherPurpose],
  );

  const theirs = await app.inject({
    method: 'GET',
    url: `/v1/purposes/${foreign.purposeId}/audience`,
    headers,
  });
  assertProblem(t, theirs, {
    status: 404,
    code: 'not_found',
    instance: `/v1/purposes/${foreign.purposeId}/audience`,
  });

  const badCursor = await app.inject({
    method: 'GET',
    url: `${url}?cursor=${Buffer.from('["drop table"]').toString('base64url')}`,
    headers,
  });
  assertProblem(t, badCursor, { status: 400, code: 'invalid_cursor', instance: url });
  const tooLarge = await app.inject({ method: 'GET', url: `${url}?limit=1001`, headers });
  assertProblem(t, tooLarge, { status: 400, code: 'validation_failed', instance: url });
});

t.test('the audience needs contacts:read', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const url = `/v1/purposes/${world.purposeId}/audience`;
  const consentsOnly = await createApiKey(app, world.owner, ['consents:read']);
  const contactsReader = await createApiKey(app, world.owner, ['contacts:read']);
  const denied = await app.inject({
    method: 'GET',
    url,
    headers: { 'x-api-key': consentsOnly.key },
  });
  assertProblem(t, denied, { status: 403, code: 'missing_scope', instance: url });
  const allowed = await app.inject({
    method: 'GET',
    url,
    headers: { 'x-api-key': contactsReader.key },
  });
  t.equal(allowed.statusCode, 200);
  t.same(allowed.json(), { data: [], nextCursor: null });
});
