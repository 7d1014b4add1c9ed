import { sql } from 'kysely';
import t from 'tap';
import { bearer, createApiKey, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

t.test('changes are audited with actor, request id and field names only', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const res = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers: { ...bearer(owner.accessToken), 'x-request-id': 'req-audit-1' },
    payload: { dpo: { email: 'privacy@example.com' } },
  });
  t.equal(res.statusCode, 200);
  const list = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=account.updated',
    headers: bearer(owner.accessToken),
  });
  t.equal(list.statusCode, 200);
  const [event] = list.json().data;
  t.equal(event.action, 'account.updated');
  t.same(event.actor, { type: 'user', id: owner.userId });
  t.equal(event.requestId, 'req-audit-1');
  t.same(event.changedFields, ['dpo.email']);
  t.notOk(list.body.includes('privacy@example.com'), 'no personal data in the trail');
});

t.test('the trail is append-only at the database level', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  // The service role holds no UPDATE or DELETE on it; even the owner is stopped by its trigger.
  for (const [who, db, refusal] of [
    ['the service', app.database.db, /permission denied/],
    ['the owner', app.database.owner, /append-only/],
  ] as const) {
    await t.rejects(
      db
        .updateTable('audit_events')
        .set({ action: 'forged' })
        .where('account_id', '=', owner.accountId)
        .execute(),
      refusal,
      `${who} cannot update an entry`,
    );
    await t.rejects(
      db.deleteFrom('audit_events').where('account_id', '=', owner.accountId).execute(),
      refusal,
      `${who} cannot delete an entry`,
    );
  }
});

t.test('verify reports exactly the entry changed behind its back', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  for (let i = 0; i < 3; i++) await createApiKey(app, owner, ['contacts:read']);
  const ok = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  t.equal(ok.statusCode, 200);
  t.equal(ok.json().valid, true);
  t.equal(ok.json().checked, 5);

  const db = app.database.owner;
  await sql`alter table audit_events disable trigger audit_events_no_update_delete`.execute(db);
  await db
    .updateTable('audit_events')
    .set({ changed_fields: ['tampered'] })
    .where('account_id', '=', owner.accountId)
    .where('seq', '=', 3)
    .execute();
  await sql`alter table audit_events enable trigger audit_events_no_update_delete`.execute(db);
  const broken = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  t.equal(broken.json().valid, false);
  const target = await db
    .selectFrom('audit_events')
    .select('id')
    .where('account_id', '=', owner.accountId)
    .where('seq', '=', 3)
    .executeTakeFirstOrThrow();
  t.same(broken.json().firstBroken, { seq: 3, id: target.id, reason: 'hash_mismatch' });
  t.equal(broken.json().lastSeq, 2, 'everything before it is intact');
});

t.test('a removed entry is reported as a gap', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  await createApiKey(app, owner, ['contacts:read']);
  await createApiKey(app, owner, ['contacts:read']);
  const db = app.database.owner;
  await sql`alter table audit_events disable trigger audit_events_no_update_delete`.execute(db);
  await db
    .deleteFrom('audit_events')
    .where('account_id', '=', owner.accountId)
    .where('seq', '=', 2)
    .execute();
  await sql`alter table audit_events enable trigger audit_events_no_update_delete`.execute(db);
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  t.equal(res.json().valid, false);
  t.equal(res.json().firstBroken.seq, 3);
  t.equal(res.json().firstBroken.reason, 'gap');
});

t.test('50 concurrent writes on one account leave an unbroken chain', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: bearer(owner.accessToken),
        payload: { name: `key ${i}`, scopes: ['contacts:read'] },
      }),
    ),
  );
  t.same([...new Set(results.map((r) => r.statusCode))], [201]);
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  t.same(res.json(), { ...res.json(), valid: true, checked: 52, lastSeq: 52, firstBroken: null });
  const seqs = await app.database.owner
    .selectFrom('audit_events')
    .select('seq')
    .where('account_id', '=', owner.accountId)
    .orderBy('seq')
    .execute();
  t.same(
    seqs.map((r) => r.seq),
    Array.from({ length: 52 }, (_, i) => i + 1),
    'no fork, no gap',
  );
});

t.test('the trail pages newest first and filters', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  for (let i = 0; i < 4; i++) await createApiKey(app, owner, ['contacts:read']);
  const first = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?limit=4',
    headers: bearer(owner.accessToken),
  });
  t.equal(first.statusCode, 200);
  t.same(
    first.json().data.map((e: { seq: number }) => e.seq),
    [6, 5, 4, 3],
  );
  const second = await app.inject({
    method: 'GET',
    url: `/v1/audit-events?limit=4&cursor=${first.json().nextCursor}`,
    headers: bearer(owner.accessToken),
  });
  t.same(
    second.json().data.map((e: { seq: number }) => e.seq),
    [2, 1],
  );
  t.equal(second.json().nextCursor, null);
  const filtered = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?entityType=api_key',
    headers: bearer(owner.accessToken),
  });
  t.equal(filtered.json().data.length, 4);
  const since = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?since=not-a-date',
    headers: bearer(owner.accessToken),
  });
  t.equal(since.statusCode, 400);
  t.equal(since.json().errors[0].field, 'query.since');
});
