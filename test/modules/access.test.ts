import t from 'tap';
import { parseApiKey } from '../../src/modules/identity/tokens.js';
import {
  addUser,
  bearer,
  createApiKey,
  GOOD_PASSWORD,
  signup,
  uniqueEmail,
} from '../fixtures/identity.js';
import { build } from '../helper.js';

t.test('a member can read but not write', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const member = await addUser(app, owner, 'member');
  const read = await app.inject({
    method: 'GET',
    url: '/v1/users',
    headers: bearer(member.accessToken),
  });
  t.equal(read.statusCode, 200);
  t.equal(read.json().data.length, 2);
  const writes = [
    {
      method: 'POST' as const,
      url: '/v1/users',
      payload: { email: uniqueEmail(), password: GOOD_PASSWORD },
    },
    { method: 'PATCH' as const, url: '/v1/account', payload: { name: 'Renamed' } },
    {
      method: 'POST' as const,
      url: '/v1/api-keys',
      payload: { name: 'x', scopes: ['contacts:read'] },
    },
  ];
  for (const w of writes) {
    const res = await app.inject({ ...w, headers: bearer(member.accessToken) });
    t.equal(res.statusCode, 403, `${w.method} ${w.url}`);
    t.equal(res.json().code, 'role_forbidden');
  }
});

t.test('only owners grant or remove the owner role; the last owner stays', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const admin = await addUser(app, owner, 'admin');
  const asAdmin = await app.inject({
    method: 'POST',
    url: '/v1/users',
    headers: bearer(admin.accessToken),
    payload: { email: uniqueEmail(), password: GOOD_PASSWORD, role: 'owner' },
  });
  t.equal(asAdmin.statusCode, 403);
  t.equal(asAdmin.json().code, 'owner_required');
  const demoteSelf = await app.inject({
    method: 'PATCH',
    url: `/v1/users/${owner.userId}`,
    headers: bearer(owner.accessToken),
    payload: { role: 'admin' },
  });
  t.equal(demoteSelf.statusCode, 409);
  t.equal(demoteSelf.json().code, 'last_owner');
  const promote = await app.inject({
    method: 'PATCH',
    url: `/v1/users/${admin.userId}`,
    headers: bearer(owner.accessToken),
    payload: { role: 'member' },
  });
  t.equal(promote.statusCode, 200);
  t.equal(promote.json().role, 'member');
  const demoted = await app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers: bearer(admin.accessToken),
    payload: { name: 'x', scopes: ['contacts:read'] },
  });
  t.equal(demoted.statusCode, 403, 'a role change applies to existing sessions at once');
});

t.test('removing a user ends their sessions', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const member = await addUser(app, owner, 'member');
  const del = await app.inject({
    method: 'DELETE',
    url: `/v1/users/${member.userId}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(del.statusCode, 204);
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(member.accessToken),
  });
  t.equal(me.statusCode, 401);
  const again = await app.inject({
    method: 'DELETE',
    url: `/v1/users/${member.userId}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(again.statusCode, 404);
});

t.test('users list pages with a cursor', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  for (let i = 0; i < 3; i++) await addUser(app, owner, 'member');
  const seen = new Set<string>();
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `/v1/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await app.inject({ method: 'GET', url, headers: bearer(owner.accessToken) });
    t.equal(res.statusCode, 200);
    for (const u of res.json().data) seen.add(u.id);
    cursor = res.json().nextCursor;
    pages++;
  } while (cursor);
  t.equal(seen.size, 4, 'every user once');
  t.equal(pages, 2);
  const bad = await app.inject({
    method: 'GET',
    url: '/v1/users?cursor=garbage',
    headers: bearer(owner.accessToken),
  });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().code, 'invalid_cursor');
});

t.test('API keys: shown once, hashed, scoped, revocable', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const created = await createApiKey(app, owner, ['contacts:read', 'account:read']);
  t.match(created.key, /^cst_[0-9a-f]{16}_/);
  const stored = await app.database.owner
    .selectFrom('api_keys')
    .selectAll()
    .where('id', '=', created.id)
    .executeTakeFirstOrThrow();
  // The secret is base64url, which has `_` in it: split the key the way the service does.
  const secret = parseApiKey(created.key)?.secret;
  t.equal(secret?.length, 43);
  t.notOk(JSON.stringify(stored).includes(secret!), 'the secret is not stored');

  const list = await app.inject({
    method: 'GET',
    url: '/v1/api-keys',
    headers: bearer(owner.accessToken),
  });
  t.equal(list.statusCode, 200);
  t.equal(list.json().data[0].prefix, created.prefix);
  t.notOk(list.body.includes(created.key), 'listing never shows the key');

  const ok = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: { 'x-api-key': created.key },
  });
  t.equal(ok.statusCode, 200);
  const viaBearer = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: bearer(created.key),
  });
  t.equal(viaBearer.statusCode, 200, 'also accepted as a bearer token');

  const noScope = await app.inject({
    method: 'GET',
    url: '/v1/audit-events',
    headers: { 'x-api-key': created.key },
  });
  t.equal(noScope.statusCode, 403, 'a key without the scope gets 403');
  t.equal(noScope.json().code, 'missing_scope');
  const userMgmt = await app.inject({
    method: 'GET',
    url: '/v1/users',
    headers: { 'x-api-key': created.key },
  });
  t.equal(userMgmt.statusCode, 403, 'keys never manage users');
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { 'x-api-key': created.key },
  });
  t.equal(me.statusCode, 403);

  const badScope = await app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers: bearer(owner.accessToken),
    payload: { name: 'x', scopes: ['users:write'] },
  });
  t.equal(badScope.statusCode, 400);
  t.match(badScope.json().errors[0].field, /^body\.scopes/);

  const revoke = await app.inject({
    method: 'DELETE',
    url: `/v1/api-keys/${created.id}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(revoke.statusCode, 204);
  const after = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: { 'x-api-key': created.key },
  });
  t.equal(after.statusCode, 401);
  t.equal(after.json().code, 'api_key_revoked');
  const wrong = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: { 'x-api-key': `${created.key.slice(0, -4)}AAAA` },
  });
  t.equal(wrong.statusCode, 401);
  t.equal(wrong.json().code, 'invalid_api_key');
});

t.test('account settings: ETag, If-Match, time zone validation', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const get = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: bearer(owner.accessToken),
  });
  t.equal(get.statusCode, 200);
  const etag = get.headers.etag as string;
  t.equal(etag, '"v1"');
  const update = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers: { ...bearer(owner.accessToken), 'if-match': etag },
    payload: {
      timeZone: 'Europe/Berlin',
      dpo: { name: 'Privacy Desk', email: 'privacy@example.com' },
    },
  });
  t.equal(update.statusCode, 200, update.body);
  t.equal(update.json().timeZone, 'Europe/Berlin');
  t.equal(update.json().dpo.email, 'privacy@example.com');
  t.equal(update.headers.etag, '"v2"');
  const stale = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers: { ...bearer(owner.accessToken), 'if-match': etag },
    payload: { name: 'Lost update' },
  });
  t.equal(stale.statusCode, 412);
  t.equal(stale.json().code, 'precondition_failed');
  const badZone = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers: bearer(owner.accessToken),
    payload: { timeZone: 'Mars/Olympus' },
  });
  t.equal(badZone.statusCode, 400);
  t.equal(badZone.json().errors[0].field, 'body.timeZone');
  const unknownField = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    headers: bearer(owner.accessToken),
    payload: { id: 'x' },
  });
  t.equal(unknownField.statusCode, 400);
});

t.test('account holiday country: unset by default, set, audited, cleared, checked', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const patch = (payload: Record<string, unknown>) =>
    app.inject({
      method: 'PATCH',
      url: '/v1/account',
      headers: bearer(owner.accessToken),
      payload,
    });
  const read = async () =>
    (
      await app.inject({ method: 'GET', url: '/v1/account', headers: bearer(owner.accessToken) })
    ).json().holidayCountry;

  t.equal(await read(), null, 'weekends only until set');
  const set = await patch({ holidayCountry: 'SI' });
  t.equal(set.statusCode, 200, set.body);
  t.equal(set.json().holidayCountry, 'SI');
  t.equal(set.json().timeZone, 'Europe/Ljubljana', 'other settings untouched');
  t.equal(await read(), 'SI');
  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(owner.accessToken) });
  t.equal(me.json().account.holidayCountry, 'SI', 'the session’s account shows it too');
  const audit = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?action=account.updated',
    headers: bearer(owner.accessToken),
  });
  t.same(audit.json().data[0].changedFields, ['holidayCountry']);

  for (const bad of ['QQ', 'si', 'SVN', '', 7]) {
    const res = await patch({ holidayCountry: bad });
    t.equal(res.statusCode, 400, `${JSON.stringify(bad)} is refused`);
    t.equal(res.json().errors[0].field, 'body.holidayCountry');
  }
  t.equal(await read(), 'SI', 'a refused change leaves it as it was');

  const cleared = await patch({ holidayCountry: null });
  t.equal(cleared.statusCode, 200, cleared.body);
  t.equal(cleared.json().holidayCountry, null);
  t.equal(await read(), null);

  await t.rejects(
    app.database.owner
      .updateTable('accounts')
      .set({ holiday_country: 'si' })
      .where('id', '=', owner.accountId)
      .execute(),
    /accounts_holiday_country_valid/,
    'the database refuses what is not two upper-case letters',
  );
});
