import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { createPurposeWithNotice, insertContact } from '../modules/consents-fixtures.js';
import { CONSENT, ndjson, upload, world } from '../modules/contact-imports-fixtures.js';
import { assertProblem } from './assert-problem.js';

/** How many rows of `table` the account has: nothing may be half-written by a refused request. */
async function rowsOf(
  app: Awaited<ReturnType<typeof build>>,
  table: 'purposes' | 'consent_events' | 'contacts',
  accountId: string,
): Promise<number> {
  const rows = await app.database.owner
    .selectFrom(table)
    .select('account_id')
    .where('account_id', '=', accountId)
    .execute();
  return rows.length;
}

/** Asserts a 400 validation problem at `instance`; returns its errors as [field, code] pairs. */
function invalidFields(t: Test, res: LightMyRequestResponse, instance: string): [string, string][] {
  const problem = assertProblem(t, res, { status: 400, code: 'validation_failed', instance });
  return (problem.errors ?? []).map((e) => [e.field, e.code]);
}

// Input the service cannot store or process must be a 400, never a 500 from the database or
// the serializer. The check sits in front of every route's validation, so one representative
// route per request part stands for all.
const NUL = 'a\u0000b';
const LONE_SURROGATE = 'a\ud800b';

t.test(
  'body: 400 naming the field, for a NUL and for a lone surrogate, nothing written',
  async (t) => {
    const app = await build(t);
    const owner = await signup(app);
    for (const [name, code] of [
      [NUL, 'invalid_characters'],
      [LONE_SURROGATE, 'invalid_encoding'],
    ] as const) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/purposes',
        headers: { ...bearer(owner.accessToken), 'content-type': 'application/json' },
        payload: JSON.stringify({ key: 'newsletter', name }),
      });
      t.same(invalidFields(t, res, '/v1/purposes'), [['body.name', code]]);
      t.notMatch(res.body, /a\\u0000b|a\\ud800b/, 'the value is not echoed');
    }
    t.equal(await rowsOf(app, 'purposes', owner.accountId), 0);
  },
);

t.test('nested body fields and query parameters are checked too', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const purposeId = await createPurposeWithNotice(app, owner);
  const contactId = await insertContact(app, owner.accountId);

  const consent = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contactId}/consents`,
    headers: { ...headers, 'content-type': 'application/json' },
    payload: JSON.stringify({
      purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'form',
      evidence: { userAgent: NUL },
    }),
  });
  t.same(invalidFields(t, consent, `/v1/contacts/${contactId}/consents`), [
    ['body.evidence.userAgent', 'invalid_characters'],
  ]);
  t.equal(await rowsOf(app, 'consent_events', owner.accountId), 0, 'no consent event written');

  const list = await app.inject({ method: 'GET', url: '/v1/contacts?email=a%00b', headers });
  t.same(invalidFields(t, list, '/v1/contacts'), [['query.email', 'invalid_characters']]);
});

t.test('absurd nesting and numbers beyond a double are a 400 too, nothing written', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = { ...bearer(owner.accessToken), 'content-type': 'application/json' };
  // 50,000 levels in 300 kB: serialising it to check the attributes' size overflowed the stack.
  const deep = `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`;
  for (const [payload, field, code] of [
    [`{"email":"deep@example.com","attributes":{"x":${deep}}}`, 'body.attributes.x', 'too_deep'],
    ['{"email":"huge@example.com","attributes":{"x":1e400}}', 'body.attributes.x', 'not_finite'],
  ] as const) {
    const res = await app.inject({ method: 'POST', url: '/v1/contacts', headers, payload });
    const [[gotField, gotCode] = ['', '']] = invalidFields(t, res, '/v1/contacts');
    t.equal(gotCode, code);
    t.ok(gotField.startsWith(field), gotField);
  }
  t.equal(await rowsOf(app, 'contacts', owner.accountId), 0);
});

t.test('an import row with such a source URL is one rejected row, not a 500', async (t) => {
  const w = await world(t);
  const res = await upload(
    w,
    ndjson([
      {
        email: 'ada@example.com',
        consent: { ...CONSENT, sourceUrl: `https://example.com/${NUL}` },
      },
      {
        email: 'bo@example.com',
        consent: { ...CONSENT, sourceUrl: `https://example.com/${LONE_SURROGATE}` },
      },
      { email: 'cy@example.com', consent: { ...CONSENT, sourceUrl: 'https://example.com/ok' } },
    ]),
  );
  t.equal(res.statusCode, 201, res.body);
  t.same(res.json().counts, { total: 3, processed: 3, created: 1, updated: 0, rejected: 2 });
  const errors = await w.app.inject({
    method: 'GET',
    url: `/v1/contact-imports/${res.json().id}/errors`,
    headers: w.headers,
  });
  t.same(
    errors
      .json()
      .data.map((e: { row: number; field: string; code: string }) => [e.row, e.field, e.code]),
    [
      [1, 'consent.sourceUrl', 'invalid_characters'],
      [2, 'consent.sourceUrl', 'invalid_encoding'],
    ],
  );
});
