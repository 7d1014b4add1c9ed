import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { DEADLINE_CASES, LJ } from '../fixtures/deadline-cases.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * The pure due-date table (data-subject-requests-deadlines.test.ts) again over HTTP, on the
 * engine under test: the account's zone and holiday country set through `PATCH /v1/account`,
 * the clock set just after the receipt, an extension through `POST …/extend`.
 */
t.test('every due-date case over HTTP', async (t) => {
  const clock = new TestClock('2025-01-01T00:00:00.000Z');
  const app = await build(t, { clock, env: { RATE_LIMIT_MAX: '1000000' } });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  for (const row of DEADLINE_CASES) {
    const account = await app.inject({
      method: 'PATCH',
      url: '/v1/account',
      headers,
      payload: { timeZone: row.timeZone ?? LJ, holidayCountry: row.holidayCountry ?? null },
    });
    t.equal(account.statusCode, 200, `${row.name}: account ${account.body}`);
    clock.set(new Date(new Date(row.receivedAt).getTime() + 60_000));
    const created = await app.inject({
      method: 'POST',
      url: '/v1/data-subject-requests',
      headers,
      payload: {
        type: 'access',
        subject: { email: 'deadline@example.com' },
        receivedAt: row.receivedAt,
      },
    });
    t.equal(created.statusCode, 201, `${row.name}: ${created.body}`);
    let body = created.json();
    if (row.extensionMonths) {
      const extended = await app.inject({
        method: 'POST',
        url: `/v1/data-subject-requests/${body.id}/extend`,
        headers,
        payload: { months: row.extensionMonths, reason: 'Complex request.' },
      });
      t.equal(extended.statusCode, 200, `${row.name}: ${extended.body}`);
      body = extended.json();
    }
    t.same(
      { dueDate: body.dueDate, dueAt: body.dueAt },
      { dueDate: row.dueDate, dueAt: row.dueAt },
      row.name,
    );
  }
});

t.test('CLOCK_START moves the service clock for a black-box run', async (t) => {
  const app = await build(t, { env: { CLOCK_START: '2027-06-01T08:00:00.000Z' } });
  const owner = await signup(app);
  const created = await app.inject({
    method: 'POST',
    url: '/v1/data-subject-requests',
    headers: bearer(owner.accessToken),
    payload: { type: 'access', subject: { email: 'ahead@example.com' } },
  });
  t.equal(created.statusCode, 201, created.body);
  const body = created.json();
  t.match(body.receivedAt, /^2027-06-01T08:0/, 'received at the configured time');
  t.match(body.createdAt, /^2027-06-01T08:0/, 'rows are dated by the same clock');
  // 1 Jul 2027 is a Thursday.
  t.equal(body.dueDate, '2027-07-01');
  t.equal(body.daysRemaining, 30);
});
