import { pino } from 'pino';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { createProcessorIncidentsService } from '../../src/modules/breach-incidents/processor-incidents.service.js';
import { createOperator } from '../../src/modules/ops/operators.js';
import { webhookWorkerFromConfig } from '../../src/modules/webhooks/webhook-worker.js';
import {
  bearer,
  GOOD_PASSWORD,
  login,
  type SignedUp,
  signup,
  uniqueEmail,
} from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';
import { createIncident } from './breach-incidents-fixtures.js';

const HOUR = 3_600_000;

type App = Awaited<ReturnType<typeof build>>;

const REPORT = {
  title: 'Mail relay logs exposed',
  description: 'A log bucket exposed delivery logs with recipient addresses.',
  kinds: ['confidentiality', 'availability'],
  contactPoint: { name: 'Provider security', email: 'security@example.com' },
};

async function operatorOf(app: App) {
  const email = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), { email, password: GOOD_PASSWORD });
  return login(app, email);
}

async function copiesOf(app: App, account: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents?limit=200',
    headers: bearer(account.accessToken),
  });
  return (res.json().data as Record<string, unknown>[]).filter((i) => i.source === 'processor');
}

async function auditActions(app: App, account: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?limit=200',
    headers: bearer(account.accessToken),
  });
  return (res.json().data as { action: string; actor: { type: string } }[]).map(
    (e) => `${e.actor.type}:${e.action}`,
  );
}

// First in the file: the accounts signed up here are all the accounts there are, so `all`
// means these three.
t.test('fan-out to three accounts told at different times; resumed, nobody twice', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const accounts = [await signup(app), await signup(app), await signup(app)];
  const ordered = [...accounts].sort((x, y) => (x.accountId < y.accountId ? -1 : 1));
  // The second account listens for the news on a webhook.
  const hook = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(ordered[1]!.accessToken),
    payload: {
      url: 'https://processor-news.example.com/in',
      eventTypes: ['breach_incident.reported_by_processor'],
    },
  });
  t.equal(hook.statusCode, 201, hook.body);
  const operator = await operatorOf(app);
  const created = await app.inject({
    method: 'POST',
    url: '/v1/ops/breach-incidents',
    headers: bearer(operator.accessToken),
    payload: { ...REPORT, accounts: 'all' },
  });
  t.equal(created.statusCode, 201, created.body);
  const report = created.json();
  t.equal(report.targets, 'all');
  t.same(report.accounts, [], '`all` is left to the worker');
  t.equal(report.fanOut.done, false);

  // The worker, one account a step, the clock moving between them.
  const service = createProcessorIncidentsService({ db: app.database.db, clock });
  const row = await app.database.owner
    .selectFrom('processor_breach_incidents')
    .selectAll()
    .where('id', '=', report.id)
    .executeTakeFirstOrThrow();
  const ctx = {
    actor: { type: 'operator' as const, id: row.created_by, accountId: null, sessionId: '' },
    requestId: 'test',
    ip: '',
  };
  let current = row;
  const toldAt: string[] = [];
  for (let i = 0; i < 3; i++) {
    clock.advance(HOUR);
    toldAt.push(clock.now().toISOString());
    const step = await service.fanOutStep(ctx, current, 1);
    t.equal(step.told, 1, `step ${i + 1} tells one account`);
    current = step.row;
  }
  const last = await service.fanOutStep(ctx, current, 1);
  t.equal(last.told, 0);
  t.not(last.row.fan_out_done_at, null, 'the fan-out is done');

  for (const [i, account] of ordered.entries()) {
    const copies = await copiesOf(app, account);
    t.equal(copies.length, 1, 'each account sees its own copy only');
    const copy = copies[0]!;
    t.equal(copy.processorIncidentId, report.id);
    t.equal(copy.awareAt, toldAt[i], 'awareAt is the moment it was told');
    t.equal(
      copy.authorityDeadlineAt,
      new Date(new Date(toldAt[i]!).getTime() + 72 * HOUR).toISOString(),
      'its 72 hours run from its own moment',
    );
    t.same(copy.kinds, REPORT.kinds);
    const actions = await auditActions(app, account);
    t.ok(actions.includes('operator:breach_incident.reported_by_processor'), 'audited, by ops');
    const events = await app.inject({
      method: 'GET',
      url: '/v1/events?limit=100',
      headers: bearer(account.accessToken),
    });
    const told = events
      .json()
      .data.filter((e: { type: string }) => e.type === 'breach_incident.reported_by_processor');
    t.equal(told.length, 1, 'one event on its feed');
    t.equal(told[0].data.processorIncidentId, report.id);
  }

  // A worker killed after telling, before its cursor moved: the cursor goes back, and the
  // resumed sweep tells nobody twice.
  await app.database.owner
    .updateTable('processor_breach_incidents')
    .set({ fan_out_after: null, fan_out_done_at: null })
    .where('id', '=', report.id)
    .execute();
  t.equal(await service.runFanOuts(), 0, 'the resumed fan-out tells no one again');
  for (const account of accounts) {
    t.equal((await copiesOf(app, account)).length, 1, 'still one copy');
    const actions = (await auditActions(app, account)).filter((a) =>
      a.endsWith('reported_by_processor'),
    );
    t.equal(actions.length, 1, 'still one audit entry');
  }

  // Acknowledgement, and who needs another way of contact.
  const first = ordered[0]!;
  const copy = (await copiesOf(app, first))[0]!;
  const ack = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${copy.id}/acknowledgement`,
    headers: bearer(first.accessToken),
  });
  t.equal(ack.statusCode, 200, ack.body);
  t.equal(ack.json().acknowledgedAt, clock.now().toISOString());
  const again = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${copy.id}/acknowledgement`,
    headers: bearer(first.accessToken),
  });
  t.equal(again.json().acknowledgedAt, ack.json().acknowledgedAt, 'once');
  // The webhook delivers the news to the second account (the receiver's 2xx, as recorded).
  await webhookWorkerFromConfig({
    db: app.database.owner,
    config: testConfig(),
    clock,
    hashSecret: testConfig().HASH_SECRET!,
    log: pino({ level: 'silent' }),
  }).fanOut();
  const delivered = await app.database.owner
    .updateTable('webhook_deliveries')
    .set({ status: 'delivered', delivered_at: clock.now() })
    .where('account_id', '=', ordered[1]!.accountId)
    .where('event_type', '=', 'breach_incident.reported_by_processor')
    .returning('delivered_at')
    .execute();
  t.equal(delivered.length, 1, 'one delivery of the news');
  clock.advance(25 * HOUR);
  const view = await app.inject({
    method: 'GET',
    url: `/v1/ops/breach-incidents/${report.id}`,
    headers: bearer(operator.accessToken),
  });
  t.equal(view.statusCode, 200, view.body);
  t.equal(view.json().fanOut.done, true);
  const byAccount = new Map(
    view
      .json()
      .accounts.map((a: { accountId: string; acknowledgedAt: string | null }) => [a.accountId, a]),
  );
  t.equal(byAccount.size, 3);
  t.same(
    ordered.map((a) => (byAccount.get(a.accountId) as { toldAt: string }).toldAt),
    toldAt,
    'the operator sees when each was told',
  );
  t.same(
    ordered.map(
      (a) =>
        (byAccount.get(a.accountId) as { acknowledgedAt: string | null }).acknowledgedAt !== null,
    ),
    [true, false, false],
    'and who acknowledged',
  );
  t.same(
    ordered.map(
      (a) => (byAccount.get(a.accountId) as { needsOtherContact: boolean }).needsOtherContact,
    ),
    [false, false, true],
    'the one neither acknowledging nor reached by webhook is flagged for another contact',
  );
  t.equal(
    (byAccount.get(ordered[1]!.accountId) as { webhookDeliveredAt: string }).webhookDeliveredAt,
    delivered[0]!.delivered_at!.toISOString(),
    'the operator sees when the webhook delivered it',
  );
  const published = await app.inject({
    method: 'POST',
    url: `/v1/ops/breach-incidents/${report.id}/public-communication`,
    headers: bearer(operator.accessToken),
    payload: { url: 'https://status.example.com/relay', publishedAt: clock.now().toISOString() },
  });
  t.equal(published.statusCode, 200, published.body);
  t.equal(published.json().publicCommunication.url, 'https://status.example.com/relay');
});

t.test('named accounts are told within the request; bad input; users get 403', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const a = await signup(app);
  const b = await signup(app);
  const operator = await operatorOf(app);
  const url = '/v1/ops/breach-incidents';
  const created = await app.inject({
    method: 'POST',
    url,
    headers: bearer(operator.accessToken),
    payload: { ...REPORT, accounts: [a.accountId] },
  });
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.json().fanOut.done, true, 'a small named list is done in the request');
  t.same(
    created.json().accounts.map((x: { accountId: string }) => x.accountId),
    [a.accountId],
  );
  t.equal((await copiesOf(app, a)).length, 1);
  t.equal((await copiesOf(app, b)).length, 0, 'an account not named is not told');

  const count = async () =>
    (await app.database.owner.selectFrom('processor_breach_incidents').select('id').execute())
      .length;
  const before = await count();
  const unknown = await app.inject({
    method: 'POST',
    url,
    headers: bearer(operator.accessToken),
    payload: { ...REPORT, accounts: [a.accountId, '00000000-0000-4000-8000-000000000000'] },
  });
  t.equal(unknown.statusCode, 422, unknown.body);
  t.same(
    unknown.json().errors.map((e: { field: string }) => e.field),
    ['body.accounts.1'],
  );
  for (const [payload, field] of [
    [{ ...REPORT, kinds: [], accounts: 'all' }, 'body.kinds'],
    [{ ...REPORT, kinds: ['leak'], accounts: 'all' }, 'body.kinds.0'],
    [{ ...REPORT, accounts: 'some' }, 'body.accounts'],
    [{ ...REPORT, awareAt: '2027-01-01T00:00:00Z', accounts: 'all' }, 'body.awareAt'],
  ] as const) {
    const res = await app.inject({
      method: 'POST',
      url,
      headers: bearer(operator.accessToken),
      payload,
    });
    t.equal(res.statusCode, 400, res.body);
    t.ok(
      res.json().errors.some((e: { field: string }) => e.field === field),
      `names ${field}`,
    );
  }
  t.equal(await count(), before, 'nothing written');

  for (const [method, path] of [
    ['POST', url],
    ['GET', `${url}/${created.json().id}`],
  ] as const) {
    const asUser = await app.inject({
      method,
      url: path,
      headers: bearer(a.accessToken),
      ...(method === 'POST' ? { payload: { ...REPORT, accounts: 'all' } } : {}),
    });
    t.equal(asUser.statusCode, 403, `${method} ${path} is for operators only`);
  }
  const own = await createIncident(app, a);
  const notFromProcessor = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${own.id}/acknowledgement`,
    headers: bearer(a.accessToken),
  });
  t.equal(notFromProcessor.statusCode, 409);
  t.equal(notFromProcessor.json().code, 'not_from_processor');
});
