import t from 'tap';
import { assertProblem } from '../app/assert-problem.js';
import { GOOD_PASSWORD } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { consentWorld, insertContact, mustRecord } from './consents-fixtures.js';

/**
 * RFC 8058 one-click unsubscribe: a mail client posts `List-Unsubscribe=One-Click` as a form to
 * the URL in the message's `List-Unsubscribe` header, without cookies or a page in between. The
 * withdrawal link is that URL. Forms are read by the link routes only.
 */

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function grantedWithLink(app: Awaited<ReturnType<typeof build>>) {
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  const ledger = async () => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/contacts/${contactId}/consents`,
      headers: world.headers,
    });
    return res.json() as { current: { state: string }[]; events: Record<string, unknown>[] };
  };
  return { url: granted.withdrawal.url as string, ledger };
}

t.test('a one-click POST to the withdrawal link withdraws', async (t) => {
  const app = await build(t);
  const { url, ledger } = await grantedWithLink(app);
  const res = await app.inject({
    method: 'POST',
    url,
    headers: { ...FORM, 'user-agent': 'MailProvider-Unsubscriber/1.0' },
    payload: 'List-Unsubscribe=One-Click',
  });
  t.equal(res.statusCode, 200, res.body);
  t.match(res.headers['content-type'], /^text\/html/);
  const after = await ledger();
  t.match(after.current, [{ state: 'withdrawn', method: 'withdrawal_link' }]);
  t.match(after.events[0], {
    event: 'withdrawn',
    method: 'withdrawal_link',
    evidence: { ip: '127.0.0.1', userAgent: 'MailProvider-Unsubscriber/1.0' },
    recordedBy: { type: 'data_subject', id: null },
  });

  // A second one-click (mail clients retry) changes nothing more.
  const again = await app.inject({
    method: 'POST',
    url,
    headers: FORM,
    payload: 'List-Unsubscribe=One-Click',
  });
  t.equal(again.statusCode, 409);
  t.equal((await ledger()).events.length, after.events.length);
});

t.test('another List-Unsubscribe value is refused and withdraws nothing', async (t) => {
  const app = await build(t);
  const { url, ledger } = await grantedWithLink(app);
  const before = await ledger();
  const res = await app.inject({
    method: 'POST',
    url,
    headers: FORM,
    payload: 'List-Unsubscribe=Maybe',
  });
  const problem = assertProblem(t, res, { status: 400, code: 'validation_failed', instance: url });
  t.match(problem.errors, [{ field: 'body.List-Unsubscribe' }]);
  t.same(await ledger(), before);
});

t.test('JSON clients post as before', async (t) => {
  const app = await build(t);
  for (const payload of [undefined, {}]) {
    const { url, ledger } = await grantedWithLink(app);
    const res = await app.inject({
      method: 'POST',
      url,
      ...(payload === undefined ? {} : { payload }),
    });
    t.equal(res.statusCode, 200, res.body);
    t.match(res.headers['content-type'], /^application\/json/);
    t.same(Object.keys(res.json()).sort(), ['recordedAt', 'state']);
    t.match((await ledger()).current, [{ state: 'withdrawn' }]);
  }
});

t.test('forms are read by the link routes only, and only small ones', async (t) => {
  const app = await build(t);
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    headers: FORM,
    payload: new URLSearchParams({
      email: 'owner@example.com',
      password: GOOD_PASSWORD,
    }).toString(),
  });
  assertProblem(t, login, {
    status: 415,
    code: 'unsupported_media_type',
    instance: '/v1/auth/login',
  });

  const { url, ledger } = await grantedWithLink(app);
  const before = await ledger();
  const large = await app.inject({
    method: 'POST',
    url,
    headers: FORM,
    payload: `List-Unsubscribe=One-Click&padding=${'x'.repeat(2048)}`,
  });
  assertProblem(t, large, { status: 413, code: 'payload_too_large', instance: url });
  t.same(await ledger(), before, 'nothing withdrawn');
});
