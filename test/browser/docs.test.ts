import t from 'tap';
import { openChromium, serve, watchedPage } from '../fixtures/chromium.js';
import { GOOD_PASSWORD, uniqueEmail } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * /docs in a real browser, on a host that is not localhost and over plain HTTP, as on a VM or a
 * compose set-up browsed from another machine: every tag and operation of the contract renders,
 * the console stays free of errors (a refused Content-Security-Policy shows there), and an
 * operation can be tried with "Authorize".
 */

const chromium = await openChromium();

interface Operation {
  operationId: string;
  tags: string[];
}

t.test(
  '/docs renders the whole contract and runs an authorised call',
  { skip: 'skip' in chromium ? chromium.skip : false },
  async (t) => {
    if (!('browser' in chromium)) return;
    const app = await build(t);
    const origin = await serve(app);
    const { page, context, troubles } = await watchedPage(chromium.browser);
    t.teardown(() => context.close());

    const contract = app.swagger() as unknown as {
      tags: { name: string }[];
      paths: Record<string, Record<string, Operation>>;
    };
    const expected = Object.values(contract.paths)
      .flatMap((methods) => Object.values(methods))
      .flatMap((operation) =>
        operation.tags.map((tag) => `operations-${tag}-${operation.operationId}`),
      )
      .sort();
    t.ok(expected.length >= 50, `${expected.length} operations in the contract`);

    await page.goto(`${origin}/docs`);
    t.equal(await page.title(), 'Custodian API');
    await page.locator('.opblock').first().waitFor();
    const rendered = (
      await page.locator('.opblock').evaluateAll((blocks) => blocks.map((block) => block.id))
    ).sort();
    t.same(rendered, expected, 'every operation of every tag is on the page');
    const tags = await page
      .locator('.opblock-tag')
      .evaluateAll((headings) => headings.map((h) => h.getAttribute('data-tag')));
    t.same(
      [...tags].sort(),
      contract.tags.map((tag) => tag.name).sort(),
      'every tag has its section',
    );

    // Sign up through the page: a JSON body posted by Swagger UI itself.
    const email = uniqueEmail('docs');
    const signup = page.locator('#operations-auth-signup');
    await signup.locator('.opblock-summary-control').click();
    await signup.locator('.try-out__btn').click();
    await signup
      .locator('textarea.body-param__text')
      .fill(JSON.stringify({ name: 'Docs Shop', email, password: GOOD_PASSWORD }));
    await signup.locator('button.execute').click();
    const signupResponse = signup.locator('.live-responses-table .response').first();
    await signupResponse.waitFor();
    t.equal((await signupResponse.locator('.response-col_status').textContent())?.trim(), '201');
    const body = JSON.parse(
      (await signupResponse.locator('.response-col_description pre').first().textContent()) ?? '',
    ) as { accessToken: string };
    t.match(body.accessToken, /^ey/, 'the page shows the new tokens');

    // Authorize with the access token, then call GET /v1/me with it.
    await page.locator('.auth-wrapper button.authorize').click();
    const bearer = page
      .locator('.modal-ux .auth-container')
      .filter({ hasText: 'bearerAuth' })
      .first();
    await bearer.locator('input').fill(body.accessToken);
    await bearer.locator('button.authorize').click();
    await bearer.getByRole('heading', { name: 'Authorized' }).waitFor();
    await page.locator('.modal-ux button.close-modal').click();

    const me = page.locator('#operations-auth-getMe');
    await me.locator('.opblock-summary-control').click();
    await me.locator('.try-out__btn').click();
    await me.locator('button.execute').click();
    const meResponse = me.locator('.live-responses-table .response').first();
    await meResponse.waitFor();
    t.equal((await meResponse.locator('.response-col_status').textContent())?.trim(), '200');
    const profile = await meResponse.locator('.response-col_description pre').first().textContent();
    t.match(JSON.parse(profile ?? ''), { user: { email } }, 'the call ran as the signed-up owner');

    t.same(troubles, [], 'no console errors, exceptions or failed requests');
  },
);
