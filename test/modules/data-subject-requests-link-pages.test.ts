import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import type { Database } from '../../src/db/database.js';
import { TestClock } from '../../src/lib/clock.js';
import { assertProblem } from '../app/assert-problem.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * The identity-verification link of a data-subject request opened in a browser: a GET shows
 * which request is being confirmed and changes nothing (mail scanners open every link), the
 * page's button posts a form, and the form post verifies and answers with a page. JSON clients
 * keep their JSON answers.
 */

type App = FastifyInstance & { database: Database };

const BASE = '/v1/data-subject-requests';
const LINKS = '/v1/public/data-subject-request-verifications';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function setup(t: Test, accountName = 'Acme Shop d.o.o.') {
  const clock = new TestClock('2026-12-02T10:00:00.000Z');
  const app = (await build(t, { clock })) as App;
  const owner = await signup(app, { accountName });
  return { app, clock, owner };
}

async function api(app: App, owner: SignedUp, method: 'GET' | 'POST', url: string, body?: object) {
  return app.inject({
    method,
    url,
    headers: bearer(owner.accessToken),
    ...(body ? { payload: body } : {}),
  });
}

/** A request and its verification link. */
async function requestWithLink(app: App, owner: SignedUp, body: Record<string, unknown> = {}) {
  const created = await api(app, owner, 'POST', BASE, {
    type: 'erasure',
    subject: { email: 'link.page@example.com', customerId: 'crm-secret-4711' },
    externalId: `DSR-${Math.random().toString(36).slice(2)}`,
    notes: 'Called from the secret number.',
    receivedAt: '2026-11-30T23:30:00Z',
    ...body,
  });
  t.equal(created.statusCode, 201, created.body);
  const id = created.json().id as string;
  const issued = await api(app, owner, 'POST', `${BASE}/${id}/verify-identity`, {
    method: 'link',
  });
  t.equal(issued.statusCode, 200, issued.body);
  return { id, url: issued.json().link.url as string, externalId: created.json().externalId };
}

async function usedAt(app: App, requestId: string) {
  const rows = await app.database.owner
    .selectFrom('data_subject_request_tokens')
    .select('used_at')
    .where('request_id', '=', requestId)
    .execute();
  return rows.map((row) => row.used_at);
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

t.test('GET shows which request is confirmed, and changes nothing', async (t) => {
  const { app, owner } = await setup(t);
  const { id, url, externalId } = await requestWithLink(app, owner);
  const before = await api(app, owner, 'GET', `${BASE}/${id}/timeline`);

  for (let opened = 0; opened < 3; opened++) {
    const res = await app.inject({ method: 'GET', url });
    assertPage(t, res, 200, 'en');
    t.match(res.body, '<h1>Confirm your request</h1>');
    t.match(res.body, '<dt>Request</dt><dd>Erasure of your personal data</dd>');
    t.match(res.body, '<dt>Made to</dt><dd>Acme Shop d.o.o.</dd>');
    // 23:30 UTC on 30 November is 1 December in the account's zone (Ljubljana).
    t.match(
      res.body,
      '<dt>Received on</dt><dd><time datetime="2026-12-01">December 1, 2026</time></dd>',
    );
    t.match(res.body, '<form method="post"><button type="submit">Confirm my request</button>');
    t.notMatch(res.body, /<form[^>]*action=/, 'the form posts to the page’s own URL');
    t.match(res.body, 'If you did not make this request, do not press the button');
    for (const secret of [
      'link.page@example.com',
      'crm-secret-4711',
      'secret number',
      externalId,
      id,
      owner.email,
    ]) {
      t.notOk(res.body.includes(secret), 'the page shows nothing about the subject');
    }
  }

  t.same(await usedAt(app, id), [null], 'the link is still unused');
  const request = await api(app, owner, 'GET', `${BASE}/${id}`);
  t.match(request.json(), { status: 'received', identity: { verifiedAt: null } });
  const after = await api(app, owner, 'GET', `${BASE}/${id}/timeline`);
  t.same(after.json(), before.json(), 'nothing was recorded');

  const verified = await app.inject({ method: 'POST', url, payload: {} });
  t.equal(verified.statusCode, 200, 'the link still works after being opened');
  t.match(verified.json(), { status: 'identity_verified' });
});

t.test('the button’s form post verifies and answers with a page', async (t) => {
  const { app, owner } = await setup(t);
  const { id, url } = await requestWithLink(app, owner);

  const res = await app.inject({
    method: 'POST',
    url,
    headers: { ...FORM, accept: 'text/html', 'user-agent': 'Browser/1.0' },
    payload: '',
  });
  assertPage(t, res, 200, 'en');
  t.match(res.body, '<h1>Thank you. Your request is confirmed.</h1>');
  t.match(res.body, '<p role="status">Confirmed on <time datetime="2026-12-02T10:00:00.000Z">');
  t.notOk(res.body.includes('Acme Shop'), 'the answer names no one');

  const request = await api(app, owner, 'GET', `${BASE}/${id}`);
  t.match(request.json(), {
    status: 'identity_verified',
    identity: { method: 'link', verifiedAt: '2026-12-02T10:00:00.000Z' },
  });
  t.not((await usedAt(app, id))[0], null, 'the link is used');
  const trail = await app.database.owner
    .selectFrom('audit_events')
    .select(['actor_type', 'actor_id', 'ip'])
    .where('entity_id', '=', id)
    .where('action', '=', 'data_subject_request.identity_verified')
    .execute();
  t.same(trail, [{ actor_type: 'data_subject', actor_id: null, ip: null }], 'the subject, no IP');

  const again = await app.inject({ method: 'POST', url, headers: FORM, payload: '' });
  assertPage(t, again, 409, 'en');
  t.match(again.body, '<h1>This link has already been used, or can no longer be used.</h1>');
  t.match(again.body, 'contact the organisation you made your request to');
  const reopened = await app.inject({ method: 'GET', url });
  assertPage(t, reopened, 409, 'en');
  t.equal(reopened.body, again.body, 'the used link’s page, whether opened or posted');

  // JSON clients keep getting problem documents.
  const json = await app.inject({ method: 'POST', url, payload: {} });
  assertProblem(t, json, { status: 409, code: 'token_used', instance: url });
  const empty = await app.inject({ method: 'POST', url });
  assertProblem(t, empty, { status: 409, code: 'token_used', instance: url });
});

t.test('a JSON or empty POST verifies and answers in JSON, as before', async (t) => {
  const { app, owner } = await setup(t);
  for (const payload of [undefined, {}]) {
    const { id, url } = await requestWithLink(app, owner);
    const res = await app.inject({ method: 'POST', url, ...(payload ? { payload } : {}) });
    t.equal(res.statusCode, 200, res.body);
    t.match(res.headers['content-type'], /^application\/json/);
    t.same(res.json(), { status: 'identity_verified', verifiedAt: '2026-12-02T10:00:00.000Z' });
    t.match((await api(app, owner, 'GET', `${BASE}/${id}`)).json(), {
      status: 'identity_verified',
    });
  }
});

t.test('the page speaks the contact’s language where a translation exists', async (t) => {
  const { app, owner } = await setup(t);
  const cases: [string | null, string, string, string, string][] = [
    ['de-AT', 'de', 'Ihre Anfrage bestätigen', '1. Dezember 2026', 'Ihre Anfrage ist bestätigt.'],
    ['fr', 'fr', 'Confirmer votre demande', '1 décembre 2026', 'Votre demande est confirmée.'],
    ['sl', 'sl', 'Potrdite svojo zahtevo', '1. december 2026', 'Vaša zahteva je potrjena.'],
    ['ja', 'en', 'Confirm your request', 'December 1, 2026', 'Your request is confirmed.'],
    [null, 'en', 'Confirm your request', 'December 1, 2026', 'Your request is confirmed.'],
  ];
  for (const [contactLanguage, pageLanguage, title, received, done] of cases) {
    const email = `speaker-${pageLanguage}-${Math.random().toString(36).slice(2)}@example.com`;
    const contact = await api(app, owner, 'POST', '/v1/contacts', {
      email,
      language: contactLanguage,
    });
    t.equal(contact.statusCode, 201, contact.body);
    const { url } = await requestWithLink(app, owner, {
      subject: { email },
      contactId: contact.json().id,
    });
    const page = await app.inject({ method: 'GET', url });
    assertPage(t, page, 200, pageLanguage);
    t.match(page.body, `<h1>${title}</h1>`, `${contactLanguage}: the page`);
    t.match(page.body, `<time datetime="2026-12-01">${received}</time>`, 'the received day');
    const result = await app.inject({ method: 'POST', url, headers: FORM, payload: '' });
    assertPage(t, result, 200, pageLanguage);
    t.match(result.body, done, `${contactLanguage}: the result`);
  }

  // A request matched to no contact reads in English.
  const { url } = await requestWithLink(app, owner, { subject: { email: 'nobody@example.com' } });
  assertPage(t, await app.inject({ method: 'GET', url }), 200, 'en');
});

t.test('links that cannot act show a page with the status, and say nothing more', async (t) => {
  const { app, clock, owner } = await setup(t);

  const unknown = await app.inject({
    method: 'GET',
    url: `${LINKS}/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`,
  });
  assertPage(t, unknown, 404, 'en');
  t.match(unknown.body, '<h1>This link is not valid.</h1>');
  const garbage = await app.inject({ method: 'GET', url: `${LINKS}/not-a-token` });
  assertPage(t, garbage, 404, 'en');
  t.equal(garbage.body, unknown.body, 'one page for every unknown link');
  const posted = await app.inject({
    method: 'POST',
    url: `${LINKS}/not-a-token`,
    headers: FORM,
    payload: '',
  });
  assertPage(t, posted, 404, 'en');
  const json = await app.inject({ method: 'POST', url: `${LINKS}/not-a-token` });
  assertProblem(t, json, { status: 404, code: 'token_invalid', instance: `${LINKS}/not-a-token` });

  // Replaced by a newer link, verified by hand meanwhile, or the request decided: the link
  // can no longer act, and one page says so whatever the reason.
  const replaced = await requestWithLink(app, owner);
  await api(app, owner, 'POST', `${BASE}/${replaced.id}/verify-identity`, { method: 'link' });
  const manual = await requestWithLink(app, owner);
  await api(app, owner, 'POST', `${BASE}/${manual.id}/verify-identity`, {
    method: 'manual',
    evidence: 'Called back on the number on file.',
  });
  const cancelled = await requestWithLink(app, owner);
  await api(app, owner, 'POST', `${BASE}/${cancelled.id}/cancel`, { reason: 'Withdrawn.' });
  const pages = [];
  for (const link of [replaced, manual, cancelled]) {
    const res = await app.inject({ method: 'GET', url: link.url });
    assertPage(t, res, 409, 'en');
    pages.push(res.body);
    const form = await app.inject({ method: 'POST', url: link.url, headers: FORM, payload: '' });
    assertPage(t, form, 409, 'en');
    pages.push(form.body);
  }
  t.equal(new Set(pages).size, 1, 'replaced, verified and decided look alike');

  const expiring = await requestWithLink(app, owner);
  const issued = await api(app, owner, 'GET', `${BASE}/${expiring.id}`);
  t.equal(issued.json().status, 'received');
  clock.set(new Date(Date.parse('2026-12-02T10:00:00.000Z') + 7 * 24 * 3_600_000 + 1));
  const gone = await app.inject({ method: 'GET', url: expiring.url });
  assertPage(t, gone, 410, 'en');
  t.match(gone.body, '<h1>This link has expired.</h1>');
  const late = await app.inject({ method: 'POST', url: expiring.url, headers: FORM, payload: '' });
  assertPage(t, late, 410, 'en');
  t.equal(late.body, gone.body);
  t.same(await usedAt(app, expiring.id), [null], 'showing the refusal used nothing');
  t.equal((await api(app, owner, 'GET', `${BASE}/${expiring.id}`)).json().status, 'received');
});

t.test('what the controller wrote is escaped', async (t) => {
  const { app, owner } = await setup(t, '<img src=x onerror=alert(1)> & "Shop"');
  const { url } = await requestWithLink(app, owner);
  const res = await app.inject({ method: 'GET', url });
  assertPage(t, res, 200, 'en');
  t.match(res.body, '<dd>&lt;img src=x onerror=alert(1)&gt; &amp; &quot;Shop&quot;</dd>');
});

t.test('forms are read by the link routes only, and only small ones', async (t) => {
  const { app, owner } = await setup(t);
  const { id, url } = await requestWithLink(app, owner);
  const elsewhere = await app.inject({
    method: 'POST',
    url: `${BASE}/${id}/cancel`,
    headers: { ...FORM, ...bearer(owner.accessToken) },
    payload: 'reason=Withdrawn.',
  });
  assertProblem(t, elsewhere, {
    status: 415,
    code: 'unsupported_media_type',
    instance: `${BASE}/${id}/cancel`,
  });
  const large = await app.inject({
    method: 'POST',
    url,
    headers: FORM,
    payload: `padding=${'x'.repeat(2048)}`,
  });
  assertProblem(t, large, { status: 413, code: 'payload_too_large', instance: url });
  t.same(await usedAt(app, id), [null], 'neither verified anything');
});
