import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { addUser, bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * `/v1/webhooks` over HTTP: registration and its URL rules, reads without the secret, ETag and
 * If-Match, rotation, deletion, who may do what, and the audit trail (field names only).
 * Deliveries themselves are in webhooks-delivery.test.ts.
 */

const URL_OK = 'https://hooks.example.com/custodian';
const TYPES = ['consent.confirmation_requested', 'consent.withdrawn'];

async function create(
  app: FastifyInstance,
  owner: SignedUp,
  payload: Record<string, unknown> = { url: URL_OK, eventTypes: TYPES },
) {
  return app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(owner.accessToken),
    payload,
  });
}

async function count(app: FastifyInstance, owner: SignedUp): Promise<number> {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/webhooks',
    headers: bearer(owner.accessToken),
  });
  return res.json().data.length;
}

function problem(
  t: Test,
  res: LightMyRequestResponse,
  status: number,
  code: string,
  field?: string,
) {
  t.equal(res.statusCode, status, `${status} ${code}: ${res.body.slice(0, 200)}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const body = res.json();
  t.equal(body.code, code);
  if (field) {
    t.ok(
      body.errors?.some((e: { field: string }) => e.field === field),
      `names ${field}: ${JSON.stringify(body.errors)}`,
    );
  }
}

t.test('create shows the secret once; reads never do', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const res = await create(app, owner, {
    url: URL_OK,
    eventTypes: TYPES,
    description: 'Mail system',
  });
  t.equal(res.statusCode, 201, res.body);
  const created = res.json();
  t.match(created, {
    url: URL_OK,
    eventTypes: TYPES,
    description: 'Mail system',
    status: 'active',
    previousSecretExpiresAt: null,
    version: 1,
  });
  t.match(created.secret, /^whsec_[A-Za-z0-9+/=]{44}$/);
  t.equal(res.headers.location, `/v1/webhooks/${created.id}`);
  t.equal(res.headers.etag, '"v1"');

  const got = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${created.id}`,
    headers: bearer(owner.accessToken),
  });
  t.equal(got.statusCode, 200);
  t.equal(got.headers.etag, '"v1"');
  t.notOk('secret' in got.json(), 'no secret on a read');
  const list = await app.inject({
    method: 'GET',
    url: '/v1/webhooks',
    headers: bearer(owner.accessToken),
  });
  t.same(
    list.json().data.map((w: { id: string }) => w.id),
    [created.id],
  );
  t.notOk(list.body.includes(created.secret.slice(6)), 'no secret in the list');

  // At rest the secret is encrypted.
  const row = await app.database.owner
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('id', '=', created.id)
    .executeTakeFirstOrThrow();
  t.notOk(JSON.stringify(row).includes(created.secret.slice(6, 20)), 'not stored in clear');
  t.match(row.secret_ciphertext, /^v1\./);

  // Audited, by field name only.
  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?entityType=webhook',
    headers: bearer(owner.accessToken),
  });
  const entry = trail.json().data.find((e: { action: string }) => e.action === 'webhook.created');
  t.ok(entry, 'webhook.created audited');
  t.notOk(trail.body.includes(URL_OK), 'no URL in the trail');
  t.notOk(trail.body.includes(created.secret), 'no secret in the trail');
});

t.test('URLs: https and public hosts only, refused with 422 naming body.url', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const refused = [
    'https://localhost/hook',
    'https://api.localhost/hook',
    'https://[::1]/hook',
    'https://10.0.0.1/hook',
    'https://172.16.5.4/hook',
    'https://192.168.1.1/hook',
    'https://169.254.169.254/latest/meta-data/',
    'https://100.64.0.1/hook',
    'https://224.0.0.1/hook',
    'https://[::ffff:127.0.0.1]/hook',
    'https://2130706433/hook',
    'https://metadata.google.internal/computeMetadata/v1/',
    'https://intranet/hook',
    'https://user:pass@hooks.example.com/hook',
    'http://hooks.example.com/hook',
  ];
  for (const url of refused) {
    const res = await create(app, owner, { url, eventTypes: TYPES });
    problem(t, res, 422, 'webhook_url_forbidden', 'body.url');
  }
  for (const url of [
    'ftp://hooks.example.com/x',
    'not a url',
    `https://x.example.com/${'a'.repeat(2100)}`,
  ]) {
    problem(
      t,
      await create(app, owner, { url, eventTypes: TYPES }),
      400,
      'validation_failed',
      'body.url',
    );
  }
  t.equal(await count(app, owner), 0, 'nothing was written');
});

t.test('bad input names the field and writes nothing', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  problem(
    t,
    await create(app, owner, { url: URL_OK, eventTypes: ['consent.granted', 'contact.sold'] }),
    400,
    'validation_failed',
    'body.eventTypes.1',
  );
  problem(
    t,
    await create(app, owner, { url: URL_OK, eventTypes: [] }),
    400,
    'validation_failed',
    'body.eventTypes',
  );
  problem(
    t,
    await create(app, owner, { url: URL_OK, eventTypes: ['consent.granted', 'consent.granted'] }),
    400,
    'validation_failed',
    'body.eventTypes',
  );
  problem(
    t,
    await create(app, owner, { url: URL_OK, eventTypes: TYPES, secret: 'whsec_mine' }),
    400,
    'validation_failed',
  );
  t.equal(await count(app, owner), 0, 'nothing was written');
});

t.test('PATCH with If-Match; 412 on a stale version; DELETE; rotation', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const headers = bearer(owner.accessToken);
  const created = (await create(app, owner)).json();
  const url = `/v1/webhooks/${created.id}`;

  const patched = await app.inject({
    method: 'PATCH',
    url,
    headers: { ...headers, 'if-match': '"v1"' },
    payload: { status: 'disabled', eventTypes: ['consent.withdrawn'] },
  });
  t.equal(patched.statusCode, 200, patched.body);
  t.match(patched.json(), { status: 'disabled', eventTypes: ['consent.withdrawn'], version: 2 });
  t.equal(patched.headers.etag, '"v2"');

  const stale = await app.inject({
    method: 'PATCH',
    url,
    headers: { ...headers, 'if-match': '"v1"' },
    payload: { description: 'late' },
  });
  problem(t, stale, 412, 'precondition_failed');
  const forbidden = await app.inject({
    method: 'PATCH',
    url,
    headers,
    payload: { url: 'https://10.1.2.3/x' },
  });
  problem(t, forbidden, 422, 'webhook_url_forbidden', 'body.url');
  problem(
    t,
    await app.inject({ method: 'PATCH', url, headers, payload: { eventTypes: ['nope'] } }),
    400,
    'validation_failed',
    'body.eventTypes.0',
  );
  problem(
    t,
    await app.inject({ method: 'PATCH', url, headers, payload: {} }),
    400,
    'validation_failed',
  );
  const unchanged = await app.inject({ method: 'GET', url, headers });
  t.match(unchanged.json(), { version: 2, url: URL_OK, description: null }, 'nothing written');

  // Rotation: a new secret, once; the old one signs for 24 more hours.
  const rotated = await app.inject({
    method: 'POST',
    url: `${url}/secret-rotation`,
    headers: { ...headers, 'if-match': '"v2"' },
  });
  t.equal(rotated.statusCode, 200, rotated.body);
  t.match(rotated.json().secret, /^whsec_/);
  t.not(rotated.json().secret, created.secret);
  t.ok(rotated.json().previousSecretExpiresAt, 'the old secret still signs for a while');
  const hours = (Date.parse(rotated.json().previousSecretExpiresAt) - Date.now()) / 3_600_000;
  t.ok(hours > 23.9 && hours <= 24, `about 24 h (${hours.toFixed(2)})`);
  problem(
    t,
    await app.inject({
      method: 'POST',
      url: `${url}/secret-rotation`,
      headers: { ...headers, 'if-match': '"v2"' },
    }),
    412,
    'precondition_failed',
  );

  problem(
    t,
    await app.inject({ method: 'DELETE', url, headers: { ...headers, 'if-match': '"v1"' } }),
    412,
    'precondition_failed',
  );
  const deleted = await app.inject({ method: 'DELETE', url, headers });
  t.equal(deleted.statusCode, 204);
  problem(t, await app.inject({ method: 'GET', url, headers }), 404, 'not_found');
  problem(
    t,
    await app.inject({ method: 'POST', url: `${url}/secret-rotation`, headers }),
    404,
    'not_found',
  );
  problem(t, await app.inject({ method: 'DELETE', url, headers }), 404, 'not_found');

  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events?entityType=webhook',
    headers,
  });
  const entries = trail.json().data as { action: string; changedFields: string[] }[];
  t.same(entries.map((e) => e.action).sort(), [
    'webhook.created',
    'webhook.deleted',
    'webhook.secret_rotated',
    'webhook.updated',
  ]);
  t.same(entries.find((e) => e.action === 'webhook.updated')?.changedFields.sort(), [
    'eventTypes',
    'status',
  ]);
});

t.test('users with webhooks:* only: members read, API keys never', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const created = (await create(app, owner)).json();
  const member = await addUser(app, owner, 'member');
  const admin = await addUser(app, owner, 'admin');

  const read = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${created.id}`,
    headers: bearer(member.accessToken),
  });
  t.equal(read.statusCode, 200, 'a member reads');
  problem(
    t,
    await app.inject({
      method: 'PATCH',
      url: `/v1/webhooks/${created.id}`,
      headers: bearer(member.accessToken),
      payload: { status: 'disabled' },
    }),
    403,
    'role_forbidden',
  );
  const byAdmin = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(admin.accessToken),
    payload: { url: URL_OK, eventTypes: TYPES },
  });
  t.equal(byAdmin.statusCode, 201, 'an admin writes');

  const key = await createApiKey(app, owner, ['events:read', 'contacts:write']);
  for (const [method, url] of [
    ['GET', '/v1/webhooks'],
    ['POST', '/v1/webhooks'],
    ['GET', `/v1/webhooks/${created.id}`],
  ] as const) {
    const res = await app.inject({
      method,
      url,
      headers: { 'x-api-key': key.key },
      ...(method === 'POST' ? { payload: { url: URL_OK, eventTypes: TYPES } } : {}),
    });
    t.equal(res.statusCode, 403, `${method} ${url} with an API key: 403`);
  }
  const keyScopes = await app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers: bearer(owner.accessToken),
    payload: { name: 'sneaky', scopes: ['webhooks:write'] },
  });
  t.equal(keyScopes.statusCode, 400, 'no API key can carry webhooks:write');
});

t.test(
  'Idempotency-Key: a retry gets the same secret back; the store keeps it encrypted',
  async (t) => {
    const app = await build(t);
    const owner = await signup(app);
    const send = (url: string, key: string, payload?: object) =>
      app.inject({
        method: 'POST',
        url,
        headers: { ...bearer(owner.accessToken), 'idempotency-key': key },
        ...(payload ? { payload } : {}),
      });
    const first = await send('/v1/webhooks', 'create-hook-1', { url: URL_OK, eventTypes: TYPES });
    t.equal(first.statusCode, 201);
    const again = await send('/v1/webhooks', 'create-hook-1', { url: URL_OK, eventTypes: TYPES });
    t.equal(again.statusCode, 201);
    t.equal(again.headers['idempotent-replayed'], 'true');
    t.equal(again.json().secret, first.json().secret, 'the same secret, once more to its caller');
    t.equal(again.headers.location, first.headers.location);
    t.equal(await count(app, owner), 1, 'one webhook');

    const rotation = `/v1/webhooks/${first.json().id}/secret-rotation`;
    const rotated = await send(rotation, 'rotate-hook-1');
    const replayed = await send(rotation, 'rotate-hook-1');
    t.equal(replayed.headers['idempotent-replayed'], 'true');
    t.equal(replayed.json().secret, rotated.json().secret);

    const stored = await app.database.owner
      .selectFrom('idempotency_keys')
      .select(['key', 'response_body'])
      .where('account_id', '=', owner.accountId)
      .execute();
    t.equal(stored.length, 2);
    for (const row of stored) {
      t.notOk(row.response_body?.includes('whsec_'), `${row.key}: no secret in clear`);
    }
  },
);
