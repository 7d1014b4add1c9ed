import { pino } from 'pino';
import t from 'tap';
import { backgroundJobs } from '../../src/jobs.js';
import { TestClock } from '../../src/lib/clock.js';
import { sendBreachDeadlineReminders } from '../../src/modules/breach-incidents/breach-incidents.service.js';
import { sendRequestDueReminders } from '../../src/modules/data-subject-requests/data-subject-requests.service.js';
import { webhookWorkerFromConfig } from '../../src/modules/webhooks/webhook-worker.js';
import { bearer, type SignedUp, signup } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';
import { createIncident } from './breach-incidents-fixtures.js';

const HOUR = 3_600_000;

type FeedEvent = { type: string; data: Record<string, unknown> };

async function feed(app: Awaited<ReturnType<typeof build>>, owner: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/events?limit=1000',
    headers: bearer(owner.accessToken),
  });
  return res.json().data as FeedEvent[];
}

t.test('breach reminders: 24 h, 6 h, passed, once each, only while unnotified', async (t) => {
  const clock = new TestClock('2026-12-01T00:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const db = app.database.db;
  const run = () => sendBreachDeadlineReminders(db, clock);

  const watched = await createIncident(app, owner, { title: 'Watched' });
  const notified = await createIncident(app, owner, { title: 'Notified in time' });
  await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${notified.id}/authority-notifications`,
    headers,
    payload: { authority: 'Authority' },
  });
  const harmless = await createIncident(app, owner, {
    title: 'No risk',
    risk: 'none',
    riskReason: 'Encrypted laptop; the key was not lost.',
  });
  // Known to the controller for 70 hours already: its 24-hour reminder is long gone.
  const late = await createIncident(app, owner, {
    title: 'Found late',
    awareAt: '2026-11-28T02:00:00.000Z',
  });

  t.equal(await run(), 1, 'at once: only the late one, within 6 hours');
  t.equal(await run(), 0, 'and only once');
  clock.set('2026-12-01T02:00:01.000Z');
  t.equal(await run(), 1, 'the late one passes its deadline');
  clock.set('2026-12-02T23:59:59.000Z');
  t.equal(await run(), 0, 'nothing before the 24 hours');
  clock.set('2026-12-03T00:00:00.000Z');
  t.equal(await run(), 1, '24 hours before');
  t.equal(await run(), 0);
  clock.set('2026-12-03T18:00:00.000Z');
  t.equal(await run(), 1, '6 hours before');
  clock.set('2026-12-04T00:00:00.001Z');
  t.equal(await run(), 1, 'passed');
  clock.advance(10 * 24 * HOUR);
  t.equal(await run(), 0, 'nothing more, ever');

  const events = (await feed(app, owner)).filter((e) =>
    e.type.startsWith('breach_incident.deadline_'),
  );
  const of = (id: string) =>
    events
      .filter((e) => e.data.incidentId === id)
      .map((e) => `${e.type}${e.data.threshold ? ` ${e.data.threshold}` : ''}`);
  t.same(of(watched.id), [
    'breach_incident.deadline_approaching 24h',
    'breach_incident.deadline_approaching 6h',
    'breach_incident.deadline_passed',
  ]);
  t.same(of(late.id), [
    'breach_incident.deadline_approaching 6h',
    'breach_incident.deadline_passed',
  ]);
  t.same(of(notified.id), [], 'a notified incident gets no reminder');
  t.same(of(harmless.id), [], 'nor one at risk none');
  const first = events.find((e) => e.data.incidentId === watched.id)!;
  t.match(first.data, {
    threshold: '24h',
    hoursRemaining: 24,
    authorityDeadlineAt: '2026-12-04T00:00:00.000Z',
    status: 'open',
  });
});

t.test('two sweeps at once send each reminder once', async (t) => {
  const clock = new TestClock('2026-12-01T00:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  for (let i = 0; i < 5; i++) await createIncident(app, owner, { title: `Incident ${i}` });
  clock.set('2026-12-03T01:00:00.000Z');
  const db = app.database.db;
  const counts = await Promise.all([
    sendBreachDeadlineReminders(db, clock),
    sendBreachDeadlineReminders(db, clock),
  ]);
  t.equal(counts[0]! + counts[1]!, 5, `5 reminders in all (${counts.join(' + ')})`);
  const events = (await feed(app, owner)).filter(
    (e) => e.type === 'breach_incident.deadline_approaching',
  );
  t.equal(events.length, 5, 'one event per incident');
});

t.test('request reminders: due within 7 days, then overdue, once each', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const db = app.database.db;
  const run = () => sendRequestDueReminders(db, clock);
  const create = async (email: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/data-subject-requests',
      headers,
      payload: { type: 'access', subject: { email }, externalId: `ext-${email}` },
    });
    t.equal(res.statusCode, 201, res.body);
    return res.json() as { id: string; dueAt: string; dueDate: string };
  };
  const open = await create('open@example.com');
  const decided = await create('decided@example.com');
  await app.inject({
    method: 'POST',
    url: `/v1/data-subject-requests/${decided.id}/cancel`,
    headers,
    payload: { reason: 'The subject withdrew it.' },
  });
  t.equal(await run(), 0, 'nothing a month ahead');
  clock.set(new Date(new Date(open.dueAt).getTime() - 7 * 24 * HOUR + 1));
  t.equal(await run(), 1, 'due within seven days');
  t.equal(await run(), 0, 'once');
  clock.set(new Date(new Date(open.dueAt).getTime() + 1));
  t.equal(await run(), 1, 'overdue');
  clock.advance(30 * 24 * HOUR);
  t.equal(await run(), 0, 'once');
  const events = (await feed(app, owner)).filter(
    (e) => e.type === 'data_subject_request.due_soon' || e.type === 'data_subject_request.overdue',
  );
  t.same(
    events.map((e) => [e.type, e.data.requestId]),
    [
      ['data_subject_request.due_soon', open.id],
      ['data_subject_request.overdue', open.id],
    ],
    'none for the decided request',
  );
  t.match(events[0]!.data, {
    dueDate: open.dueDate,
    externalId: 'ext-open@example.com',
    // 168 hours before the due day's last millisecond is the first moment of its sixth-last day.
    daysRemaining: 6,
  });
});

t.test('the worker runs the reminders in its tick, before the fan-out', async (t) => {
  const clock = new TestClock('2026-12-01T00:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  await createIncident(app, owner, { awareAt: '2026-11-28T02:00:00.000Z' });
  const worker = webhookWorkerFromConfig({
    db: app.database.db,
    config: testConfig(),
    clock,
    hashSecret: testConfig().HASH_SECRET!,
    log: pino({ level: 'silent' }),
    jobs: backgroundJobs({ db: app.database.db, clock }),
  });
  t.match(await worker.tick(), { jobs: 1 }, 'one reminder sent');
  t.match(await worker.tick(), { jobs: 0 }, 'the next pass finds nothing');
  t.match(await worker.tick(), { jobs: 0 }, 'and idle jobs wait their interval');
  const events = (await feed(app, owner)).map((e) => e.type);
  t.ok(events.includes('breach_incident.deadline_approaching'));
});
