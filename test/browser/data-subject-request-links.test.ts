import t from 'tap';
import { openChromium, serve, watchedPage } from '../fixtures/chromium.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * A data-subject request's verification link followed in a real browser, as the subject does:
 * opening it shows which request is being confirmed and verifies nothing; the button verifies,
 * and the request (read back through the API) is `identity_verified`, with the subject as the
 * actor in its timeline.
 */

const chromium = await openChromium();

interface TimelineEntry {
  action: string;
  occurredAt: string;
  actor: { type: string; id: string | null };
}

t.test(
  'a verification link opened and clicked in Chromium',
  { skip: 'skip' in chromium ? chromium.skip : false },
  async (t) => {
    if (!('browser' in chromium)) return;
    const app = await build(t);
    const origin = await serve(app);
    const owner = await signup(app, { accountName: 'Trgovina Novak d.o.o.' });
    const headers = bearer(owner.accessToken);
    const contact = await app.inject({
      method: 'POST',
      url: '/v1/contacts',
      headers,
      payload: { email: 'mojca.browser@example.com', language: 'sl' },
    });
    t.equal(contact.statusCode, 201, contact.body);
    const created = await app.inject({
      method: 'POST',
      url: '/v1/data-subject-requests',
      headers,
      payload: {
        type: 'access',
        subject: { email: 'mojca.browser@example.com' },
        receivedAt: '2026-11-30T23:30:00Z',
      },
    });
    t.equal(created.statusCode, 201, created.body);
    const id = created.json().id as string;
    const issued = await app.inject({
      method: 'POST',
      url: `/v1/data-subject-requests/${id}/verify-identity`,
      headers,
      payload: { method: 'link' },
    });
    t.equal(issued.statusCode, 200, issued.body);
    const link = `${origin}${issued.json().link.url}`;

    const read = async () => {
      const request = await app.inject({
        method: 'GET',
        url: `/v1/data-subject-requests/${id}`,
        headers,
      });
      const timeline = await app.inject({
        method: 'GET',
        url: `/v1/data-subject-requests/${id}/timeline`,
        headers,
      });
      return {
        status: request.json().status as string,
        verifiedAt: request.json().identity.verifiedAt as string | null,
        timeline: timeline.json().data as TimelineEntry[],
      };
    };
    const before = await read();
    t.equal(before.status, 'received');

    const { page, context, troubles } = await watchedPage(chromium.browser);
    t.teardown(() => context.close());

    // Opening the link, as the subject or a mail scanner does, shows the page and verifies nothing.
    const opened = await page.goto(link);
    t.equal(opened?.status(), 200);
    t.equal(await page.title(), 'Potrdite svojo zahtevo');
    t.equal(await page.locator('html').getAttribute('lang'), 'sl');
    const main = await page.locator('main').textContent();
    t.match(main, /Dostop do vaših osebnih podatkov/, 'the request type in plain words');
    t.match(main, /Trgovina Novak d\.o\.o\./, 'the controller');
    t.match(main, /1\. december 2026/, 'the local day of receipt');
    t.notMatch(main, /mojca\.browser/, 'not the subject’s address');
    const button = page.getByRole('button', { name: 'Potrdi zahtevo' });
    t.equal(
      await page.evaluate<string>(
        "getComputedStyle(document.querySelector('button')).backgroundColor",
      ),
      'rgb(31, 95, 69)',
      'the page’s stylesheet applies under its policy',
    );
    await page.reload();
    t.same(await read(), before, 'opening the link twice changed nothing');

    const clickedAt = Date.now();
    await Promise.all([page.waitForURL(link), button.click()]);
    await page.locator('h1', { hasText: 'Vaša zahteva je potrjena' }).waitFor();
    const answeredAt = Date.now();

    const after = await read();
    t.equal(after.status, 'identity_verified', 'the request is verified');
    t.equal(after.timeline.length, before.timeline.length + 1, 'one entry: the verification');
    const verified = after.timeline.at(-1) as TimelineEntry;
    t.match(verified, {
      action: 'data_subject_request.identity_verified',
      actor: { type: 'data_subject', id: null },
    });
    const occurredAt = Date.parse(verified.occurredAt);
    t.ok(
      occurredAt >= clickedAt - 1000 && occurredAt <= answeredAt + 1000,
      'verified when the button was pressed',
    );
    t.equal(
      await page.locator('time').getAttribute('datetime'),
      after.verifiedAt,
      'the page shows when the request was verified',
    );

    // Opening it again shows that it was used, and still changes nothing.
    const reopened = await page.goto(link);
    t.equal(reopened?.status(), 409);
    t.equal(
      await page.title(),
      'Ta povezava je bila že uporabljena ali je ni več mogoče uporabiti.',
    );
    t.same(await read(), after);

    // The 409 page's status is logged by Chromium as a failed resource: anything else is trouble.
    t.same(
      troubles.filter((trouble) => !/status of 409/.test(trouble)),
      [],
      'no CSP violations, exceptions or failed requests',
    );
  },
);
