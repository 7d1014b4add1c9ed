import { pino } from 'pino';
import t from 'tap';
import { systemClock } from '../../src/lib/clock.js';
import { createOperator } from '../../src/modules/ops/operators.js';
import { webhookWorkerFromConfig } from '../../src/modules/webhooks/webhook-worker.js';
import {
  addUser,
  bearer,
  createApiKey,
  GOOD_PASSWORD,
  login,
  signup,
  uniqueEmail,
} from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Operation {
  requestBody?: { content?: Record<string, { schema?: { example?: unknown } }> };
}

/**
 * Walks every route of the route table — new routes are covered without touching this file —
 * as a user of account A aimed at account B's resources, and as an anonymous caller. Fails on
 * any leak of B's data, any change to B, and any 5xx.
 */
t.test('tenancy matrix over every /v1 route', async (t) => {
  const app = await build(t);
  const a = await signup(app, { accountName: 'Tenant A' });
  const b = await signup(app, { accountName: 'Tenant B' });
  const bMember = await addUser(app, b, 'member');
  const bKey = await createApiKey(app, b, ['contacts:read', 'account:read']);
  // A webhook of B's, with a delivery (of the request's event, made by the worker's fan-out).
  const bWebhook = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(b.accessToken),
    payload: {
      url: 'https://tenant-b-hooks.example.com/in',
      eventTypes: ['data_subject_request.received'],
    },
  });
  t.equal(bWebhook.statusCode, 201, bWebhook.body);
  const bRequest = await app.inject({
    method: 'POST',
    url: '/v1/data-subject-requests',
    headers: bearer(b.accessToken),
    payload: { type: 'access', subject: { email: 'tenant-b-subject@example.com' } },
  });
  t.equal(bRequest.statusCode, 201, bRequest.body);
  const bIncident = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers: bearer(b.accessToken),
    payload: {
      title: 'Tenant B breach',
      description: 'Tenant B breach description',
      kinds: ['integrity'],
      contactPoint: { email: 'tenant-b-dpo@example.com' },
    },
  });
  t.equal(bIncident.statusCode, 201, bIncident.body);
  const bNotified = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${bIncident.json().id}/authority-notifications`,
    headers: bearer(b.accessToken),
    payload: { authority: 'Tenant B authority', reference: 'tenant-b-ref' },
  });
  t.equal(bNotified.statusCode, 201, bNotified.body);
  // A high-risk incident of B's with a batch of subject notices (Art. 34) to one contact.
  const bContact = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: bearer(b.accessToken),
    payload: { email: 'tenant-b-reader@example.com', status: 'unsubscribed' },
  });
  t.equal(bContact.statusCode, 201, bContact.body);
  const bHighRisk = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers: bearer(b.accessToken),
    payload: {
      title: 'Tenant B high-risk breach',
      description: 'Tenant B breach description',
      kinds: ['confidentiality'],
      risk: 'high',
      riskReason: 'Tenant B risk reason',
      contactPoint: { email: 'tenant-b-dpo@example.com' },
    },
  });
  t.equal(bHighRisk.statusCode, 201, bHighRisk.body);
  const bBatch = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${bHighRisk.json().id}/subject-notices`,
    headers: bearer(b.accessToken),
    payload: {
      selection: { type: 'all' },
      text: {
        nature: 'Tenant B notice nature',
        contactPoint: 'Tenant B notice contact',
        consequences: 'Tenant B notice consequences',
        measures: 'Tenant B notice measures',
      },
    },
  });
  t.equal(bBatch.statusCode, 201, bBatch.body);
  await webhookWorkerFromConfig({
    db: app.database.owner,
    config: testConfig(),
    clock: systemClock,
    hashSecret: testConfig().HASH_SECRET!,
    log: pino({ level: 'silent' }),
  }).fanOut();
  const bDelivery = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${bWebhook.json().id}/deliveries`,
    headers: bearer(b.accessToken),
  });
  t.equal(bDelivery.json().data.length, 1, 'B has a delivery');
  const bIds: Record<string, string> = {
    webhooks: bWebhook.json().id,
    deliveries: bDelivery.json().data[0].id,
    users: bMember.userId,
    'api-keys': bKey.id,
    accounts: b.accountId,
    'data-subject-requests': bRequest.json().id,
    'breach-incidents': bHighRisk.json().id,
    'subject-notice-batches': bBatch.json().id,
  };
  const bSecrets = [
    b.accountId,
    b.email,
    bMember.userId,
    bMember.email,
    bKey.id,
    bKey.prefix,
    'Tenant B',
    bRequest.json().id,
    'tenant-b-subject@example.com',
    bWebhook.json().id,
    'tenant-b-hooks',
    bWebhook.json().secret.slice(6),
    bDelivery.json().data[0].id,
    bIncident.json().id,
    'Tenant B breach',
    'tenant-b-dpo',
    'tenant-b-ref',
    bNotified.json().notification.id,
    bHighRisk.json().id,
    'tenant-b-reader',
    bBatch.json().id,
    'Tenant B notice',
  ];

  const bChain = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(b.accessToken),
  });
  const bChainLength: number = bChain.json().checked;

  const doc = app.swagger() as { paths: Record<string, Record<string, Operation>> };
  // Public routes are the ones that declare `config.auth: 'public'` (or sit outside /v1 auth).
  const routes = app
    .routeTable()
    .filter((r) => r.url.startsWith('/v1') && r.method !== 'HEAD')
    .map((r) => ({
      method: r.method as Method,
      url: r.url,
      isPublic: r.auth === undefined || r.auth === 'public',
    }));
  t.ok(routes.length >= 15, `${routes.length} routes walked`);
  // Routes that end A's own session (logout, password change) go last.
  const endsSession = (url: string) => url === '/v1/auth/logout' || url === '/v1/auth/password';
  routes.sort((x, y) => Number(endsSession(x.url)) - Number(endsSession(y.url)));

  for (const route of routes) {
    const key = `${route.method} ${route.url}`;
    // `:id` takes B's id of the collection named just before it; other params get a value
    // of the right shape that matches nothing.
    const segments = route.url.split('/');
    const collection = segments[segments.indexOf(':id') - 1] ?? '';
    const url = route.url
      .replace(/:id\b/, bIds[collection] ?? b.accountId)
      .replace(/:deliveryId\b/, bIds.deliveries!)
      .replace(/:batchId\b/, bIds['subject-notice-batches']!)
      .replace(/:version\b/, '1')
      .replace(/:\w+/g, 'not-a-real-token-0123456789');
    const openapiPath = route.url.replace(/:(\w+)/g, '{$1}');
    const example =
      doc.paths[openapiPath]?.[route.method.toLowerCase()]?.requestBody?.content?.[
        'application/json'
      ]?.schema?.example;
    const payload = ['POST', 'PUT', 'PATCH'].includes(route.method) ? (example ?? {}) : undefined;

    const anonymous = await app.inject({ method: route.method, url, payload: payload as object });
    t.ok(anonymous.statusCode < 500, `${key} anonymous: no 5xx (${anonymous.statusCode})`);
    if (!route.isPublic) {
      t.equal(anonymous.statusCode, 401, `${key} anonymous is 401`);
      t.match(anonymous.headers['content-type'], /problem\+json/);
    }
    if (route.isPublic) continue;

    const asA = await app.inject({
      method: route.method,
      url,
      headers: bearer(a.accessToken),
      payload: payload as object,
    });
    t.ok(asA.statusCode < 500, `${key} as A: no 5xx (${asA.statusCode} ${asA.body.slice(0, 200)})`);
    // The problem's `instance` echoes the requested path (which holds B's id): judge the rest.
    const body = asA.body.replaceAll(url, '<path>');
    for (const secret of bSecrets) {
      t.notOk(body.includes(secret), `${key} as A does not reveal B's ${secret.slice(0, 8)}…`);
    }
    if (route.url.includes(':id') && !route.url.startsWith('/v1/ops')) {
      t.equal(
        asA.statusCode,
        404,
        `${key} on B's id is 404 (got ${asA.statusCode} ${asA.body.slice(0, 160)})`,
      );
    }
  }

  // B is untouched: its member can still sign in, its key works, its chain verifies.
  await login(app, bMember.email);
  const keyStillWorks = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: { 'x-api-key': bKey.key },
  });
  t.equal(keyStillWorks.statusCode, 200);
  t.equal(keyStillWorks.json().name, 'Tenant B', "B's account name unchanged");
  const chainBefore = bChainLength;
  const verify = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(b.accessToken),
  });
  t.equal(verify.json().valid, true);
  t.equal(
    verify.json().checked,
    chainBefore + 1,
    'only B’s own login above was added to B’s chain',
  );
  // A signed a checkpoint of its own chain above (POST /v1/audit-events/checkpoints): none of B's.
  const bCheckpoints = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/checkpoints',
    headers: bearer(b.accessToken),
  });
  t.same(bCheckpoints.json().data, [], 'A signed no checkpoint of B’s chain');
  t.equal(verify.json().checkpoint, null);
});

t.test('operators act through /v1/ops, audited in the account’s chain', async (t) => {
  const app = await build(t);
  const email = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), { email, password: GOOD_PASSWORD });
  const op = await login(app, email);
  const customer = await signup(app);

  const asCustomer = await app.inject({
    method: 'GET',
    url: '/v1/ops/accounts',
    headers: bearer(customer.accessToken),
  });
  t.equal(asCustomer.statusCode, 403, 'customers cannot reach ops routes');
  const opOnAccount = await app.inject({
    method: 'GET',
    url: '/v1/account',
    headers: bearer(op.accessToken),
  });
  t.equal(opOnAccount.statusCode, 403);
  t.equal(opOnAccount.json().code, 'operator_not_in_account');

  const created = await app.inject({
    method: 'POST',
    url: '/v1/ops/accounts',
    headers: bearer(op.accessToken),
    payload: { name: 'Made by ops', owner: { email: uniqueEmail('owner') } },
  });
  t.equal(created.statusCode, 201, created.body);
  // The owner chooses their own password with the link the operator passes on.
  const set = await app.inject({
    method: 'POST',
    url: `/v1/public/password-setups/${created.json().passwordSetup.token}`,
    payload: { password: GOOD_PASSWORD },
  });
  t.equal(set.statusCode, 200, set.body);
  const owner = await login(app, created.json().owner.email);
  const trail = await app.inject({
    method: 'GET',
    url: '/v1/audit-events',
    headers: bearer(owner.accessToken),
  });
  const actions = trail
    .json()
    .data.map((e: { action: string; actor: { type: string } }) => `${e.actor.type}:${e.action}`);
  t.ok(
    actions.includes('operator:account.created'),
    'the operator’s act is in the account’s chain',
  );
  const list = await app.inject({
    method: 'GET',
    url: '/v1/ops/accounts?limit=200',
    headers: bearer(op.accessToken),
  });
  t.equal(list.statusCode, 200);
  t.ok(list.json().data.some((acc: { id: string }) => acc.id === customer.accountId));

  const other = await addUser(app, customer, 'member');
  t.ok(other.userId, 'customer accounts keep working');
});
