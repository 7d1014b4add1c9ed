import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { addUser, bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import {
  assertFieldProblem,
  createIncident,
  footprint,
  MINIMAL_INCIDENT,
} from './breach-incidents-fixtures.js';

const HOUR = 3_600_000;
const LJ = 'Europe/Ljubljana';

t.test('72 hours on the instant, across both DST changes (Europe/Ljubljana)', async (t) => {
  const clock = new TestClock('2026-03-28T12:30:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  await app.inject({ method: 'PATCH', url: '/v1/account', headers, payload: { timeZone: LJ } });
  for (const [awareAt, deadline, threeLocalDays] of [
    // Summer time starts 29 March 2026 (02:00 → 03:00): 13:00 CET on the 28th to 13:00 CEST
    // on the 31st, three local days, would be 71 hours.
    ['2026-03-28T12:00:00.000Z', '2026-03-31T12:00:00.000Z', '2026-03-31T11:00:00.000Z'],
    // Summer time ends 25 October 2026 (03:00 → 02:00): 14:00 CEST on the 24th to 14:00 CET
    // on the 27th would be 73 hours.
    ['2026-10-24T12:00:00.000Z', '2026-10-27T12:00:00.000Z', '2026-10-27T13:00:00.000Z'],
  ] as const) {
    clock.set(new Date(new Date(awareAt).getTime() + 30 * 60_000));
    const incident = await createIncident(app, owner, { awareAt });
    t.equal(incident.awareAt, awareAt);
    t.equal(incident.authorityDeadlineAt, deadline, `${awareAt}: deadline ${deadline}`);
    t.equal(
      new Date(deadline).getTime() - new Date(awareAt).getTime(),
      72 * HOUR,
      'exactly 72 h on the instant',
    );
    t.not(incident.authorityDeadlineAt, threeLocalDays, 'not three local calendar days');
    t.equal(incident.hoursRemaining, 71, '71 whole hours left half an hour in');
    t.equal(incident.overdue, false);
    // Just past the deadline, unnotified: overdue.
    clock.set(new Date(new Date(deadline).getTime() + 1000));
    const later = await app.inject({
      method: 'GET',
      url: `/v1/breach-incidents/${incident.id}`,
      headers,
    });
    t.equal(later.json().overdue, true, 'overdue once past, unnotified');
    t.equal(later.json().hoursRemaining, -1);
    t.equal(later.json().authorityDeadlineAt, deadline, 'the stored deadline is read back');
  }
});

t.test('default awareAt is the clock, stored, and PATCH of other fields keeps it', async (t) => {
  const clock = new TestClock('2026-12-01T10:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner);
  t.equal(incident.awareAt, '2026-12-01T10:00:00.000Z', 'awareAt defaults to now');
  t.equal(incident.createdAt, '2026-12-01T10:00:00.000Z');
  t.equal(incident.authorityDeadlineAt, '2026-12-04T10:00:00.000Z');
  t.equal(incident.status, 'open');
  t.equal(incident.risk, 'unassessed');

  clock.advance(5 * HOUR);
  const patched = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers: { ...headers, 'if-match': `"v${incident.version}"` },
    payload: {
      title: 'Lost backup drive (courier)',
      approximateSubjects: 300,
      kinds: ['confidentiality', 'availability'],
    },
  });
  t.equal(patched.statusCode, 200, patched.body);
  t.equal(patched.json().awareAt, '2026-12-01T10:00:00.000Z', 'awareAt unchanged');
  t.equal(patched.json().authorityDeadlineAt, '2026-12-04T10:00:00.000Z', 'deadline unchanged');
  t.equal(patched.json().hoursRemaining, 67);
  t.equal(patched.headers.etag, `"v${incident.version + 1}"`);

  const stale = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers: { ...headers, 'if-match': `"v${incident.version}"` },
    payload: { title: 'Stale' },
  });
  t.equal(stale.statusCode, 412, 'a stale If-Match is refused');

  const timeline = await app.inject({
    method: 'GET',
    url: `/v1/breach-incidents/${incident.id}/timeline`,
    headers,
  });
  const updated = timeline
    .json()
    .data.find((e: { action: string }) => e.action.endsWith('updated'));
  t.equal(updated.action, 'breach_incident.updated');
  t.same(updated.changedFields.sort(), ['approximateSubjects', 'kinds', 'title']);
});

t.test('a correction of awareAt needs a reason, recomputes the deadline, is audited', async (t) => {
  const clock = new TestClock('2026-12-03T12:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner, { awareAt: '2026-12-03T08:00:00.000Z' });
  const before = await footprint(app, owner);

  const noReason = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers,
    payload: { awareAt: '2026-12-02T18:00:00.000Z' },
  });
  assertFieldProblem(
    t,
    noReason,
    422,
    'body.awareAtCorrectionReason',
    'correction_reason_required',
  );
  const reasonAlone = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers,
    payload: { awareAtCorrectionReason: 'no new time' },
  });
  assertFieldProblem(t, reasonAlone, 400, 'body.awareAtCorrectionReason');
  const future = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers,
    payload: { awareAt: '2026-12-04T12:00:00.000Z', awareAtCorrectionReason: 'typo' },
  });
  assertFieldProblem(t, future, 400, 'body.awareAt', 'validation_failed');
  t.same(await footprint(app, owner), before, 'nothing written');
  const unchanged = await app.inject({
    method: 'GET',
    url: `/v1/breach-incidents/${incident.id}`,
    headers,
  });
  t.equal(unchanged.json().version, incident.version);

  const corrected = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${incident.id}`,
    headers,
    payload: {
      awareAt: '2026-12-02T18:00:00.000Z',
      awareAtCorrectionReason: 'The night shift saw the alert at 19:00 local time.',
    },
  });
  t.equal(corrected.statusCode, 200, corrected.body);
  const body = corrected.json();
  t.equal(body.awareAt, '2026-12-02T18:00:00.000Z');
  t.equal(body.authorityDeadlineAt, '2026-12-05T18:00:00.000Z', 'deadline recomputed');
  t.same(body.awareAtCorrections, [
    {
      previousAwareAt: '2026-12-03T08:00:00.000Z',
      awareAt: '2026-12-02T18:00:00.000Z',
      reason: 'The night shift saw the alert at 19:00 local time.',
      correctedAt: '2026-12-03T12:00:00.000Z',
    },
  ]);
  const timeline = await app.inject({
    method: 'GET',
    url: `/v1/breach-incidents/${incident.id}/timeline`,
    headers,
  });
  const entry = timeline
    .json()
    .data.find((e: { action: string }) => e.action === 'breach_incident.aware_at_corrected');
  t.ok(entry, 'the correction has its audit entry');
  t.ok(entry.changedFields.includes('awareAt'), 'naming awareAt');
  t.ok(entry.changedFields.includes('authorityDeadlineAt'), 'and authorityDeadlineAt');
  const after = await footprint(app, owner);
  t.equal(after.audit, before.audit + 1, 'one audit entry for the correction');
});

t.test('authority notifications: phases in order, immutable, late ones need reasons', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner, {
    kinds: ['confidentiality', 'integrity', 'confidentiality'],
  });
  t.same(incident.kinds, ['confidentiality', 'integrity'], 'several kinds on one incident');
  const url = `/v1/breach-incidents/${incident.id}/authority-notifications`;

  // No authority named and none on the account.
  const noAuthority = await app.inject({ method: 'POST', url, headers, payload: {} });
  assertFieldProblem(t, noAuthority, 422, 'body.authority', 'authority_required');
  await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers,
    payload: { supervisoryAuthority: 'Information Commissioner (SI)' },
  });

  // Past the deadline, nothing notified: overdue; a first phase now is late.
  clock.set('2026-12-04T10:00:00.000Z');
  const before = await footprint(app, owner);
  const noReason = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { reference: 'IP-1', channel: 'web form' },
  });
  assertFieldProblem(t, noReason, 422, 'body.delayReason', 'delay_reason_required');
  t.same(await footprint(app, owner), before, 'nothing written');
  const none = await app.inject({ method: 'GET', url, headers });
  t.same(none.json().data, [], 'no phase');

  const first = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: {
      reference: 'IP-1',
      channel: 'web form',
      summary: 'Initial report.',
      delayReason: 'The courier confirmed the loss only on day four.',
    },
  });
  t.equal(first.statusCode, 201, first.body);
  const phase1 = first.json().notification;
  t.equal(phase1.phase, 1);
  t.equal(phase1.late, true, 'marked late');
  t.equal(phase1.authority, 'Information Commissioner (SI)', 'the account’s authority');
  t.equal(phase1.notifiedAt, '2026-12-04T10:00:00.000Z', 'notifiedAt defaults to now');
  t.equal(phase1.content.title, MINIMAL_INCIDENT.title, 'a snapshot of the content');
  t.equal(phase1.content.summary, 'Initial report.');
  t.equal(first.json().incident.status, 'notified');
  t.equal(first.headers.etag, `"v${first.json().incident.version}"`, 'the incident’s new ETag');
  t.equal(first.json().incident.overdue, false, 'no longer overdue');
  t.same(first.json().incident.authorityNotification, {
    phases: 1,
    firstNotifiedAt: '2026-12-04T10:00:00.000Z',
    late: true,
  });

  // A second phase before the first is out of order; after it, it is phase 2 and not late.
  clock.advance(HOUR);
  const early = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { notifiedAt: '2026-12-04T09:00:00.000Z', summary: 'Numbers.' },
  });
  assertFieldProblem(t, early, 422, 'body.notifiedAt', 'phase_out_of_order');
  const future = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { notifiedAt: '2026-12-05T11:00:00.000Z' },
  });
  assertFieldProblem(t, future, 400, 'body.notifiedAt');
  const second = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { summary: 'Final numbers.', authority: 'Information Commissioner (SI), case desk' },
  });
  t.equal(second.statusCode, 201, second.body);
  t.equal(second.json().notification.phase, 2);
  t.equal(second.json().notification.late, false, 'only a first phase can be late');
  const phases = await app.inject({ method: 'GET', url, headers });
  t.same(
    phases.json().data.map((p: { phase: number }) => p.phase),
    [1, 2],
    'phases in order',
  );

  // The database keeps the phases as sent, whatever SQL the service sends: it has no UPDATE
  // or DELETE grant, and even the tables' owner cannot UPDATE (the trigger).
  const db = app.database.db;
  await t.rejects(
    db.updateTable('breach_authority_notifications').set({ authority: 'someone else' }).execute(),
    /permission denied|append-only/,
    'UPDATE refused to the service',
  );
  await t.rejects(
    db.deleteFrom('breach_authority_notifications').execute(),
    /permission denied|append-only/,
    'DELETE refused to the service',
  );
  await t.rejects(
    app.database.owner
      .updateTable('breach_authority_notifications')
      .set({ authority: 'someone else' })
      .execute(),
    /append-only/,
    'UPDATE refused to the owner by the trigger',
  );
});

t.test('a first phase in time is not late; lateness is judged by notifiedAt', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner);
  clock.advance(71 * HOUR + 59 * 60_000);
  const inTime = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${incident.id}/authority-notifications`,
    headers,
    payload: { authority: 'Authority' },
  });
  t.equal(inTime.statusCode, 201, inTime.body);
  t.equal(inTime.json().notification.late, false);
  t.equal(inTime.json().incident.hoursRemaining, 0, 'counted to the notification');
  // A backdated first notification after the deadline is late too (judged by notifiedAt).
  const other = await createIncident(app, owner, { awareAt: '2026-12-01T08:00:00.000Z' });
  const backdated = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${other.id}/authority-notifications`,
    headers,
    payload: { authority: 'Authority', notifiedAt: '2026-12-04T08:30:00.000Z' },
  });
  assertFieldProblem(t, backdated, 422, 'body.delayReason', 'delay_reason_required');
  const beforeAware = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${other.id}/authority-notifications`,
    headers,
    payload: { authority: 'Authority', notifiedAt: '2026-12-01T07:00:00.000Z' },
  });
  assertFieldProblem(t, beforeAware, 422, 'body.notifiedAt', 'notified_before_aware');
});

t.test('lifecycle: open → assessed → notified → closed, with its events', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner);
  const base = `/v1/breach-incidents/${incident.id}`;

  const before = await footprint(app, owner);
  const closeOpen = await app.inject({
    method: 'POST',
    url: `${base}/close`,
    headers,
    payload: {},
  });
  t.equal(closeOpen.statusCode, 409);
  t.equal(closeOpen.json().code, 'invalid_transition', 'an open incident cannot close');

  const assessed = await app.inject({
    method: 'POST',
    url: `${base}/assessment`,
    headers,
    payload: { risk: 'high', reason: 'Health data of customers.' },
  });
  t.equal(assessed.statusCode, 200, assessed.body);
  t.equal(assessed.json().status, 'assessed');
  t.equal(assessed.json().risk, 'high');
  t.equal(assessed.json().riskReason, 'Health data of customers.');

  const premature = await app.inject({
    method: 'POST',
    url: `${base}/close`,
    headers,
    payload: { noNotificationReason: 'We think it is fine.' },
  });
  assertFieldProblem(t, premature, 422, 'body.noNotificationReason', 'notification_required');
  const afterRefusals = await footprint(app, owner);
  t.equal(afterRefusals.audit, before.audit + 1, 'only the assessment was written');

  const notified = await app.inject({
    method: 'POST',
    url: `${base}/authority-notifications`,
    headers,
    payload: { authority: 'Authority' },
  });
  t.equal(notified.statusCode, 201);
  const closed = await app.inject({
    method: 'POST',
    url: `${base}/close`,
    headers,
    payload: { summary: 'Done.' },
  });
  t.equal(closed.statusCode, 200, closed.body);
  t.equal(closed.json().status, 'closed');
  t.equal(closed.json().closedAt, '2026-12-01T09:00:00.000Z');

  for (const [method, path, payload] of [
    ['POST', `${base}/close`, {}],
    ['POST', `${base}/assessment`, { risk: 'none', reason: 'x' }],
    ['POST', `${base}/authority-notifications`, { authority: 'A' }],
    ['PATCH', base, { title: 'After closing' }],
  ] as const) {
    const res = await app.inject({ method, url: path, headers, payload });
    t.equal(res.statusCode, 409, `${method} ${path} on a closed incident`);
    t.equal(res.json().code, 'invalid_transition');
  }

  const feed = await app.inject({
    method: 'GET',
    url: '/v1/events?limit=100',
    headers,
  });
  const types = feed
    .json()
    .data.filter((e: { data: { incidentId?: string } }) => e.data.incidentId === incident.id)
    .map((e: { type: string }) => e.type);
  t.same(types, [
    'breach_incident.created',
    'breach_incident.assessed',
    'breach_incident.notified',
    'breach_incident.closed',
  ]);
});

t.test('risk none closes without a notification, with the reason only', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const incident = await createIncident(app, owner, {
    kinds: ['availability'],
    risk: 'none',
    riskReason: 'A ten-minute outage; nothing was lost.',
  });
  t.equal(incident.status, 'assessed', 'a risk given at creation is the first assessment');
  const url = `/v1/breach-incidents/${incident.id}/close`;
  const noReason = await app.inject({ method: 'POST', url, headers, payload: {} });
  assertFieldProblem(
    t,
    noReason,
    422,
    'body.noNotificationReason',
    'no_notification_reason_required',
  );
  const closed = await app.inject({
    method: 'POST',
    url,
    headers,
    payload: { noNotificationReason: 'Unlikely to result in a risk (Art. 33(1)).' },
  });
  t.equal(closed.statusCode, 200, closed.body);
  t.equal(closed.json().noNotificationReason, 'Unlikely to result in a risk (Art. 33(1)).');
  t.equal(closed.json().overdue, false);
});

t.test('bad input: a problem naming the field, and nothing written', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const before = await footprint(app, owner);
  const { kinds: _kinds, ...withoutKinds } = MINIMAL_INCIDENT;
  const cases: [string, Record<string, unknown>, number, RegExp | string, string?][] = [
    ['no kinds', withoutKinds, 400, 'body.kinds'],
    ['empty kinds', { ...MINIMAL_INCIDENT, kinds: [] }, 400, 'body.kinds'],
    ['unknown kind', { ...MINIMAL_INCIDENT, kinds: ['reputation'] }, 400, /^body\.kinds/],
    [
      'future awareAt',
      { ...MINIMAL_INCIDENT, awareAt: '2026-12-02T09:00:00.000Z' },
      400,
      'body.awareAt',
    ],
    [
      'occurredAt after awareAt',
      {
        ...MINIMAL_INCIDENT,
        occurredAt: '2026-12-01T08:00:00.000Z',
        awareAt: '2026-12-01T07:00:00.000Z',
      },
      400,
      'body.occurredAt',
    ],
    ['risk without reason', { ...MINIMAL_INCIDENT, risk: 'high' }, 400, 'body.riskReason'],
    [
      'missing contact point (no DPO on the account)',
      { ...MINIMAL_INCIDENT, contactPoint: undefined },
      422,
      'body.contactPoint',
      'contact_point_required',
    ],
    ['empty contact point', { ...MINIMAL_INCIDENT, contactPoint: {} }, 400, /^body\.contactPoint/],
  ];
  for (const [name, payload, status, field, code] of cases) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/breach-incidents',
      headers,
      payload,
    });
    t.test(name, async (t) => assertFieldProblem(t, res, status, field, code));
  }
  t.same(await footprint(app, owner), before, 'no incident, audit entry or event written');

  // With the DPO set on the account, it becomes the contact point, copied.
  await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers,
    payload: { dpo: { name: 'Data Protection Officer', email: 'dpo@example.com' } },
  });
  const { contactPoint: _cp, ...noContact } = MINIMAL_INCIDENT;
  const created = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers,
    payload: noContact,
  });
  t.equal(created.statusCode, 201, created.body);
  t.same(created.json().contactPoint, {
    name: 'Data Protection Officer',
    email: 'dpo@example.com',
    phone: null,
  });
});

t.test('members read, cannot write; Idempotency-Key replays the creation', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const member = await addUser(app, owner, 'member');
  const write = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers: bearer(member.accessToken),
    payload: MINIMAL_INCIDENT,
  });
  t.equal(write.statusCode, 403);
  const read = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents',
    headers: bearer(member.accessToken),
  });
  t.equal(read.statusCode, 200);

  const send = () =>
    app.inject({
      method: 'POST',
      url: '/v1/breach-incidents',
      headers: { ...bearer(owner.accessToken), 'idempotency-key': 'breach-1' },
      payload: MINIMAL_INCIDENT,
    });
  const first = await send();
  const again = await send();
  t.equal(first.statusCode, 201);
  t.equal(again.statusCode, 201);
  t.equal(again.json().id, first.json().id, 'the same incident');
  t.equal(again.headers['idempotent-replayed'], 'true');
  const list = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents',
    headers: bearer(owner.accessToken),
  });
  t.equal(list.json().data.length, 1, 'one incident');
});

t.test('PATCH checks occurredAt against awareAt; the list filters the overdue', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const early = await createIncident(app, owner, { awareAt: '2026-11-27T09:00:00.000Z' });
  const recent = await createIncident(app, owner);
  const before = await footprint(app, owner);
  const afterAware = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${recent.id}`,
    headers,
    payload: { occurredAt: '2026-12-01T09:01:00.000Z' },
  });
  assertFieldProblem(t, afterAware, 400, 'body.occurredAt');
  const awareBeforeOccurred = await app.inject({
    method: 'PATCH',
    url: `/v1/breach-incidents/${early.id}`,
    headers,
    payload: {
      occurredAt: '2026-11-26T09:00:00.000Z',
      awareAt: '2026-11-25T09:00:00.000Z',
      awareAtCorrectionReason: 'Earlier than recorded.',
    },
  });
  assertFieldProblem(t, awareBeforeOccurred, 400, 'body.occurredAt');
  t.same(await footprint(app, owner), before, 'nothing written');

  const overdue = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents?overdue=true',
    headers,
  });
  t.same(
    overdue.json().data.map((i: { id: string }) => i.id),
    [early.id],
    'only the incident past its 72 hours',
  );
  const notOverdue = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents?overdue=false',
    headers,
  });
  t.same(
    notOverdue.json().data.map((i: { id: string }) => i.id),
    [recent.id],
  );
  const open = await app.inject({
    method: 'GET',
    url: '/v1/breach-incidents?status=open',
    headers,
  });
  t.equal(open.json().data.length, 2);
});
