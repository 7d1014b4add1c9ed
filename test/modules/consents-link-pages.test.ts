import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import type { Database } from '../../src/db/database.js';
import { assertProblem } from '../app/assert-problem.js';
import { build } from '../helper.js';
import {
  type ConsentWorld,
  consentWorld,
  insertContact,
  mustRecord,
  NOTICE_TEXT,
  restrict,
} from './consents-fixtures.js';

/**
 * The consent links opened in a browser: a GET shows a page and changes nothing (mail scanners
 * open every link), the page's button posts a form, and the form post answers with a page.
 */

type App = FastifyInstance & { database: Database };

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function doubleOptIn(app: App, world: ConsentWorld, language?: string, email?: string) {
  const contactId = await insertContact(app, world.owner.accountId, {
    ...(email === undefined ? {} : { email }),
    ...(language === undefined ? {} : { language }),
  });
  const granted = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'double_opt_in',
  });
  return {
    contactId,
    confirmUrl: granted.confirmation.url as string,
    withdrawUrl: granted.withdrawal.url as string,
  };
}

async function ledger(app: App, world: ConsentWorld, contactId: string) {
  const res = await app.inject({
    method: 'GET',
    url: `/v1/contacts/${contactId}/consents`,
    headers: world.headers,
  });
  return res.json() as { current: { state: string }[]; events: unknown[] };
}

async function usedLinks(app: App, contactId: string) {
  const rows = await app.database.owner
    .selectFrom('consent_tokens')
    .select(['kind', 'used_at'])
    .where('contact_id', '=', contactId)
    .execute();
  return rows.filter((row) => row.used_at !== null).map((row) => row.kind);
}

/** An HTML answer with the page policy: nothing runs, nothing loads, the form posts here. */
function assertPage(t: Test, res: LightMyRequestResponse, status: number, language: string) {
  t.equal(res.statusCode, status, `status ${status}`);
  t.equal(res.headers['content-type'], 'text/html; charset=utf-8');
  const csp = String(res.headers['content-security-policy']);
  t.match(csp, /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'; form-action 'self';/);
  t.match(csp, /frame-ancestors 'none'/);
  t.equal(res.headers['cache-control'], 'no-store');
  t.match(res.body, new RegExp(`^<!doctype html>\\n<html lang="${language}">`));
  t.notMatch(res.body, /<script|<[^>]+\son[a-z]+=/i, 'no script');
  t.match(res.body, /<h1>[^<]+<\/h1>/, 'a heading says what the page is');
}

t.test('GET shows the confirmation page and changes nothing', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app, 'Hidden Sender GmbH');
  const { contactId, confirmUrl } = await doubleOptIn(
    app,
    world,
    undefined,
    'page.reader@example.com',
  );
  const before = await ledger(app, world, contactId);

  for (let opened = 0; opened < 3; opened++) {
    const res = await app.inject({ method: 'GET', url: confirmUrl });
    assertPage(t, res, 200, 'en');
    t.match(res.body, '<h1>Confirm your consent</h1>');
    t.match(res.body, 'Please confirm your consent to: <strong>Purpose newsletter</strong>');
    t.match(res.body, 'Notice version 1');
    t.match(res.body, `<blockquote lang="en">${NOTICE_TEXT}</blockquote>`);
    t.match(res.body, '<form method="post"><button type="submit">Confirm my consent</button>');
    t.notMatch(res.body, /<form[^>]*action=/, 'the form posts to the page’s own URL');
    for (const secret of ['page.reader@example.com', 'Hidden Sender', contactId]) {
      t.notOk(res.body.includes(secret), 'the page names nobody');
    }
  }

  t.same(await ledger(app, world, contactId), before, 'the ledger is unchanged');
  t.same(await usedLinks(app, contactId), [], 'the link is still unused');

  const confirmed = await app.inject({ method: 'POST', url: confirmUrl });
  t.equal(confirmed.statusCode, 200, 'the link still works after being opened');
});

t.test('the button’s form post confirms and answers with a page', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const { contactId, confirmUrl } = await doubleOptIn(app, world);

  const res = await app.inject({
    method: 'POST',
    url: confirmUrl,
    headers: { ...FORM, 'user-agent': 'Browser/1.0' },
    payload: '',
  });
  assertPage(t, res, 200, 'en');
  t.match(res.body, '<h1>Thank you. Your consent is confirmed.</h1>');
  const after = await ledger(app, world, contactId);
  t.match(after.current, [{ state: 'granted' }]);
  t.match(after.events[0], {
    event: 'confirmed',
    method: 'double_opt_in',
    evidence: { ip: '127.0.0.1', userAgent: 'Browser/1.0' },
  });
  const recordedAt = (after.events[0] as { recordedAt: string }).recordedAt;
  t.match(res.body, `<time datetime="${recordedAt}">`, 'the page shows the recorded time');

  const again = await app.inject({ method: 'POST', url: confirmUrl, headers: FORM, payload: '' });
  assertPage(t, again, 409, 'en');
  t.match(again.body, 'This link has already been used, or can no longer be used.');

  // JSON clients keep getting problem documents.
  const json = await app.inject({ method: 'POST', url: confirmUrl, payload: {} });
  assertProblem(t, json, { status: 409, code: 'token_used', instance: confirmUrl });
});

t.test('pages speak the contact’s language where a translation exists', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const cases: [string | null, string, string, string][] = [
    ['de-AT', 'de', 'Einwilligung bestätigen', 'Vielen Dank. Ihre Einwilligung ist bestätigt.'],
    ['fr', 'fr', 'Confirmer votre consentement', 'Merci. Votre consentement est confirmé.'],
    ['sl', 'sl', 'Potrdite privolitev', 'Hvala. Vaša privolitev je potrjena.'],
    ['ja', 'en', 'Confirm your consent', 'Thank you. Your consent is confirmed.'],
    [null, 'en', 'Confirm your consent', 'Thank you. Your consent is confirmed.'],
  ];
  for (const [contactLanguage, pageLanguage, title, done] of cases) {
    const contactId = await insertContact(app, world.owner.accountId);
    await app.database.owner
      .updateTable('contacts')
      .set({ language: contactLanguage })
      .where('id', '=', contactId)
      .execute();
    const granted = await mustRecord(app, world.headers, contactId, {
      purposeId: world.purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'double_opt_in',
    });
    const page = await app.inject({ method: 'GET', url: granted.confirmation.url });
    assertPage(t, page, 200, pageLanguage);
    t.match(page.body, `<h1>${title}</h1>`, `${contactLanguage}: the page`);
    // The notice keeps its own language, whatever the page's.
    t.match(page.body, `<blockquote lang="en">${NOTICE_TEXT}</blockquote>`);
    const result = await app.inject({
      method: 'POST',
      url: granted.confirmation.url,
      headers: FORM,
      payload: '',
    });
    assertPage(t, result, 200, pageLanguage);
    t.match(result.body, `<h1>${done}</h1>`, `${contactLanguage}: the result`);

    const used = await app.inject({ method: 'GET', url: granted.confirmation.url });
    assertPage(t, used, 409, pageLanguage);
  }
});

t.test('links that cannot act show a page with the status, and say nothing more', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);

  const unknown = await app.inject({
    method: 'GET',
    url: '/v1/public/consent-confirmations/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  });
  assertPage(t, unknown, 404, 'en');
  t.match(unknown.body, '<h1>This link is not valid.</h1>');
  const garbage = await app.inject({
    method: 'GET',
    url: '/v1/public/consent-withdrawals/not-a-token',
  });
  assertPage(t, garbage, 404, 'en');

  // A link of the other kind is no better than an unknown one.
  const wrongKind = await doubleOptIn(app, world, 'de');
  const swapped = wrongKind.confirmUrl.replace('consent-confirmations', 'consent-withdrawals');
  const misdirected = await app.inject({ method: 'GET', url: swapped });
  assertPage(t, misdirected, 404, 'en');
  t.equal(misdirected.body, garbage.body, 'the same page as for any unknown token');

  const expired = await doubleOptIn(app, world, 'de');
  await app.database.owner
    .updateTable('consent_tokens')
    .set({ expires_at: new Date(Date.now() - 1000) })
    .where('contact_id', '=', expired.contactId)
    .where('kind', '=', 'confirm')
    .execute();
  const gone = await app.inject({ method: 'GET', url: expired.confirmUrl });
  assertPage(t, gone, 410, 'de');
  t.match(gone.body, '<h1>Dieser Link ist abgelaufen.</h1>');

  // Used, withdrawn meanwhile, restricted: one page, so it tells nothing of the contact.
  const used = await doubleOptIn(app, world);
  await app.inject({ method: 'POST', url: used.confirmUrl });
  const withdrawn = await doubleOptIn(app, world);
  await app.inject({ method: 'POST', url: withdrawn.withdrawUrl });
  const restricted = await doubleOptIn(app, world);
  await restrict(app, world.owner.accountId, restricted.contactId);
  const pages = [];
  for (const link of [used, withdrawn, restricted]) {
    const res = await app.inject({ method: 'GET', url: link.confirmUrl });
    assertPage(t, res, 409, 'en');
    pages.push(res.body);
  }
  t.equal(new Set(pages).size, 1, 'used, no longer pending and restricted look alike');
  t.same(await usedLinks(app, restricted.contactId), [], 'showing the refusal used nothing');
});

t.test('what the sender wrote is escaped', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  await app.inject({
    method: 'PATCH',
    url: `/v1/purposes/${world.purposeId}`,
    headers: world.headers,
    payload: { name: '<img src=x onerror=alert(1)> & "news"' },
  });
  const { confirmUrl } = await doubleOptIn(app, world);
  const res = await app.inject({ method: 'GET', url: confirmUrl });
  assertPage(t, res, 200, 'en');
  t.match(res.body, '<strong>&lt;img src=x onerror=alert(1)&gt; &amp; &quot;news&quot;</strong>');
});

t.test('the withdrawal page shows what was consented to, and its button withdraws', async (t) => {
  const app = await build(t);
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId, { language: 'sl' });
  const granted = await mustRecord(app, world.headers, contactId, {
    purposeId: world.purposeId,
    noticeVersion: 1,
    event: 'granted',
    method: 'form',
  });
  const url: string = granted.withdrawal.url;
  const before = await ledger(app, world, contactId);

  const page = await app.inject({ method: 'GET', url });
  assertPage(t, page, 200, 'sl');
  t.match(page.body, '<h1>Prekličite privolitev</h1>');
  t.match(page.body, 'Različica obvestila 1');
  t.match(page.body, '<button type="submit">Prekliči privolitev</button>');
  t.same(await ledger(app, world, contactId), before, 'opening it withdrew nothing');

  const res = await app.inject({ method: 'POST', url, headers: FORM, payload: '' });
  assertPage(t, res, 200, 'sl');
  t.match(res.body, '<h1>Vaša privolitev je preklicana.</h1>');
  const after = await ledger(app, world, contactId);
  t.match(after.current, [{ state: 'withdrawn' }]);
  t.match(after.events[0], { event: 'withdrawn', method: 'withdrawal_link' });
});
