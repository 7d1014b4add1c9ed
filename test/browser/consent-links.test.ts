import t from 'tap';
import { openChromium, serve, watchedPage } from '../fixtures/chromium.js';
import { build } from '../helper.js';
import { consentWorld, insertContact, mustRecord } from '../modules/consents-fixtures.js';

/**
 * A double opt-in link followed in a real browser, as the person does: opening it shows a page
 * and records nothing; the button confirms, and the ledger (read back through the API) holds the
 * confirmation with the browser's time, address and user agent.
 */

const chromium = await openChromium();

interface LedgerEvent {
  event: string;
  method: string;
  recordedAt: string;
  evidence: { ip: string | null; userAgent: string | null };
}

t.test(
  'a confirmation link opened and clicked in Chromium',
  { skip: 'skip' in chromium ? chromium.skip : false },
  async (t) => {
    if (!('browser' in chromium)) return;
    const app = await build(t);
    const origin = await serve(app);
    const world = await consentWorld(app);
    const contactId = await insertContact(app, world.owner.accountId, { language: 'de' });
    const granted = await mustRecord(app, world.headers, contactId, {
      purposeId: world.purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'double_opt_in',
    });
    const ledger = async () => {
      const res = await app.inject({
        method: 'GET',
        url: `/v1/contacts/${contactId}/consents`,
        headers: world.headers,
      });
      return res.json() as { current: { state: string }[]; events: LedgerEvent[] };
    };
    const before = await ledger();
    t.match(before.current, [{ state: 'pending' }]);

    const { page, context, troubles } = await watchedPage(chromium.browser);
    t.teardown(() => context.close());
    // The test's TypeScript has no DOM types: what runs in the page is given as source text.
    const userAgent = await page.evaluate<string>('navigator.userAgent');

    // Opening the link, as a person or a mail scanner does, shows the page and records nothing.
    const opened = await page.goto(`${origin}${granted.confirmation.url}`);
    t.equal(opened?.status(), 200);
    t.equal(await page.title(), 'Einwilligung bestätigen');
    t.match(await page.locator('main').textContent(), /Purpose newsletter/);
    t.match(await page.locator('main').textContent(), /Fassung 1 des Hinweistextes/);
    const button = page.getByRole('button', { name: 'Einwilligung bestätigen' });
    t.equal(
      await page.evaluate<string>(
        "getComputedStyle(document.querySelector('button')).backgroundColor",
      ),
      'rgb(31, 95, 69)',
      'the page’s stylesheet applies under its policy',
    );
    await page.reload();
    t.same(await ledger(), before, 'opening the link twice changed nothing');

    const clickedAt = Date.now();
    await Promise.all([page.waitForURL(`${origin}${granted.confirmation.url}`), button.click()]);
    await page.locator('h1', { hasText: 'Ihre Einwilligung ist bestätigt' }).waitFor();
    const answeredAt = Date.now();

    const after = await ledger();
    t.match(after.current, [{ state: 'granted' }]);
    t.equal(after.events.length, before.events.length + 1, 'one event: the confirmation');
    const confirmed = after.events[0] as LedgerEvent;
    t.match(confirmed, {
      event: 'confirmed',
      method: 'double_opt_in',
      evidence: { ip: '127.0.0.1', userAgent },
    });
    const recordedAt = Date.parse(confirmed.recordedAt);
    t.ok(
      recordedAt >= clickedAt - 1000 && recordedAt <= answeredAt + 1000,
      'recorded when the button was pressed',
    );
    t.equal(
      await page.locator('time').getAttribute('datetime'),
      confirmed.recordedAt,
      'the page shows the recorded time',
    );

    // Opening it again shows that it was used, and still records nothing.
    const reopened = await page.goto(`${origin}${granted.confirmation.url}`);
    t.equal(reopened?.status(), 409);
    t.same(await ledger(), after);

    // The withdrawal link works the same way.
    await page.goto(`${origin}${granted.withdrawal.url}`);
    await Promise.all([
      page.waitForURL(`${origin}${granted.withdrawal.url}`),
      page.getByRole('button', { name: 'Einwilligung widerrufen' }).click(),
    ]);
    await page.locator('h1', { hasText: 'Ihre Einwilligung wurde widerrufen' }).waitFor();
    const withdrawn = await ledger();
    t.match(withdrawn.current, [{ state: 'withdrawn' }]);
    t.match(withdrawn.events[0], {
      event: 'withdrawn',
      method: 'withdrawal_link',
      evidence: { ip: '127.0.0.1', userAgent },
    });

    // The 409 page's status is logged by Chromium as a failed resource: anything else is trouble.
    t.same(
      troubles.filter((trouble) => !/status of 409/.test(trouble)),
      [],
      'no CSP violations, exceptions or failed requests',
    );
  },
);
