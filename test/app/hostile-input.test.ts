import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import t from 'tap';
import { cursors } from '../../src/db/keyset.js';
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
import { exchange, type RawResponse } from '../fixtures/raw-http.js';
import { build, testConfig } from '../helper.js';
import { createPurposeWithNotice } from '../modules/consents-fixtures.js';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Operation {
  parameters?: { in: string; name: string }[];
  requestBody?: { content?: Record<string, { schema?: { example?: unknown } }> };
  responses?: Record<string, { content?: Record<string, unknown> }>;
}

/** Values that each broke, or could break, something past the schemas: never a 5xx. */
const HOSTILE_VALUES: unknown[] = [
  'a\u0000b',
  'a\ud800b',
  'x'.repeat(70_000),
  '',
  ' ',
  '😀'.repeat(300),
  1e308,
  -1,
  0,
  2 ** 31,
  2 ** 53 + 2,
  1.5,
  true,
  null,
  {},
  [],
  { nested: { deeper: ['x'] } },
];

/** Query values, as they travel (already percent-encoded where that matters). */
const HOSTILE_QUERY_VALUES = [
  '%00',
  '%ff%fe',
  '%ED%A0%80',
  'x'.repeat(3000),
  '-1',
  '0',
  '1e400',
  '99999999999999999999',
  '[]',
  '%F0%9F%98%80',
  '',
];

/** Path segments, as they travel: a NUL, broken UTF-8, a surrogate, 5 kB, dots, a near-UUID. */
const HOSTILE_PATH_VALUES = [
  '%00',
  '%ff',
  '%ED%A0%80',
  'x'.repeat(5000),
  '..',
  '%2e%2e',
  '00000000-0000-0000-0000-00000000000g',
  '-1',
  '99999999999999999999',
];

/** A value nested far beyond any field of the API, in a small body. */
const DEEP_BODY = `{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;

/** Every path from the root of a JSON example to one of its leaves (scalars, empty objects). */
function leafPaths(value: unknown, path: string[] = []): string[][] {
  if (value === null || typeof value !== 'object') return [path];
  const entries = Object.entries(value);
  if (entries.length === 0) return [path];
  return entries.flatMap(([key, child]) => leafPaths(child, [...path, key]));
}

function withLeaf(example: unknown, path: string[], leaf: unknown): unknown {
  if (path.length === 0) return leaf;
  const copy = structuredClone(example) as Record<string, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[path[path.length - 1]!] = leaf;
  return copy;
}

/**
 * Walks every route of the route table (new routes are covered without touching this file):
 * each leaf of its documented request example replaced in turn by each hostile value, every
 * documented query parameter set to each hostile query value, and a body nested 20,000 levels
 * deep. Every answer must be below 500, and every error a problem document.
 */
t.test('hostile input on every /v1 route is a 4xx problem, never a 5xx', async (t) => {
  // Limits high enough that the walk measures validation, not the throttles.
  const app = await build(t, {
    env: { RATE_LIMIT_MAX: '1000000', LOGIN_MAX_PER_IP_PER_MINUTE: '1000000' },
  });
  const owner = await signup(app, { accountName: 'Hostile input' });
  const operatorEmail = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), {
    email: operatorEmail,
    password: GOOD_PASSWORD,
  });
  const operator = await login(app, operatorEmail);
  // Real resources of the owner's, so that values the schemas let through reach the services
  // and the database; other ids get a UUID that matches nothing.
  const contact = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: bearer(owner.accessToken),
    payload: { email: uniqueEmail('contact') },
  });
  // A webhook with a delivery (of a request's event, made by the worker's fan-out).
  const webhook = await app.inject({
    method: 'POST',
    url: '/v1/webhooks',
    headers: bearer(owner.accessToken),
    payload: { url: 'https://hooks.example.com/in', eventTypes: ['data_subject_request.received'] },
  });
  await app.inject({
    method: 'POST',
    url: '/v1/data-subject-requests',
    headers: bearer(owner.accessToken),
    payload: { type: 'access', subject: { email: uniqueEmail('subject') } },
  });
  await webhookWorkerFromConfig({
    db: app.database.owner,
    config: testConfig(),
    clock: systemClock,
    hashSecret: testConfig().HASH_SECRET!,
    log: pino({ level: 'silent' }),
  }).fanOut();
  const delivery = await app.inject({
    method: 'GET',
    url: `/v1/webhooks/${webhook.json().id}/deliveries`,
    headers: bearer(owner.accessToken),
  });
  t.equal(delivery.json().data.length, 1, 'a delivery to walk');
  const incident = await app.inject({
    method: 'POST',
    url: '/v1/breach-incidents',
    headers: bearer(owner.accessToken),
    payload: {
      title: 'Hostile walk',
      description: 'An incident for the walk.',
      kinds: ['availability'],
      risk: 'high',
      riskReason: 'High risk, so the subject notices are walked too.',
      contactPoint: { email: 'dpo@example.com' },
    },
  });
  t.equal(incident.statusCode, 201, incident.body);
  const noticeBatch = await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${incident.json().id}/subject-notices`,
    headers: bearer(owner.accessToken),
    payload: {
      selection: { type: 'all' },
      text: { nature: 'N', contactPoint: 'C', consequences: 'Q', measures: 'M' },
    },
  });
  t.equal(noticeBatch.statusCode, 201, noticeBatch.body);
  const ids: Record<string, string> = {
    'breach-incidents': incident.json().id,
    'subject-notice-batches': noticeBatch.json().id,
    webhooks: webhook.json().id,
    deliveries: delivery.json().data[0].id,
    contacts: contact.json().id,
    purposes: await createPurposeWithNotice(app, owner),
    users: (await addUser(app, owner, 'member')).userId,
    'api-keys': (await createApiKey(app, owner, ['contacts:read'])).id,
    accounts: owner.accountId,
  };

  const doc = app.swagger() as { paths: Record<string, Record<string, Operation>> };
  const endsSession = (url: string) => url === '/v1/auth/logout' || url === '/v1/auth/password';
  const routes = app
    .routeTable()
    .filter((r) => r.url.startsWith('/v1') && r.method !== 'HEAD' && !endsSession(r.url))
    // Deleting goes last, so the other routes still find the resources.
    .sort((x, y) => Number(x.method === 'DELETE') - Number(y.method === 'DELETE'));
  t.ok(routes.length >= 15, `${routes.length} routes walked`);

  let requests = 0;
  for (const route of routes) {
    const method = route.method as Method;
    const headers = bearer(
      route.url.startsWith('/v1/ops') ? operator.accessToken : owner.accessToken,
    );
    const segments = route.url.split('/');
    const collection = segments[segments.indexOf(':id') - 1] ?? '';
    const path = route.url
      .replace(/:id\b/, ids[collection] ?? randomUUID())
      .replace(/:deliveryId\b/, ids.deliveries!)
      .replace(/:batchId\b/, ids['subject-notice-batches']!)
      .replace(/:version\b/, '1')
      .replace(/:\w+/g, 'not-a-real-token-0123456789');
    const operation = doc.paths[route.url.replace(/:(\w+)/g, '{$1}')]?.[method.toLowerCase()];
    const content = operation?.requestBody?.content;
    const example = content?.['application/json']?.schema?.example;

    const attempts: { url: string; payload?: string; contentType?: string }[] = [];
    if (content?.['application/json']) {
      const base = example ?? {};
      for (const leaf of leafPaths(base)) {
        for (const value of HOSTILE_VALUES) {
          attempts.push({ url: path, payload: JSON.stringify(withLeaf(base, leaf, value)) });
        }
      }
      attempts.push({ url: path, payload: DEEP_BODY }, { url: path, payload: '[]' });
    }
    for (const parameter of operation?.parameters ?? []) {
      if (parameter.in !== 'query') continue;
      for (const value of HOSTILE_QUERY_VALUES) {
        attempts.push({ url: `${path}?${parameter.name}=${value}` });
      }
    }
    // Each path parameter in turn (ids, versions, link tokens), the others left valid.
    route.url.split('/').forEach((segment, index) => {
      if (!segment.startsWith(':')) return;
      for (const value of HOSTILE_PATH_VALUES) {
        const segments = path.split('/');
        segments[index] = value;
        attempts.push({ url: segments.join('/') });
      }
    });
    if (attempts.length === 0) attempts.push({ url: path });

    const failures: string[] = [];
    for (const attempt of attempts) {
      requests += 1;
      const res = await app.inject({
        method,
        url: attempt.url,
        headers: {
          ...headers,
          ...(attempt.payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(attempt.payload === undefined ? {} : { payload: attempt.payload }),
      });
      const mediaType = String(res.headers['content-type']).split(';')[0] ?? '';
      // An error is a problem document, unless the contract gives that status another media
      // type (the consent links' pages answer a browser's GET with an HTML page).
      const documented =
        mediaType === 'application/problem+json' ||
        operation?.responses?.[String(res.statusCode)]?.content?.[mediaType] !== undefined;
      if (res.statusCode >= 500 || (res.statusCode >= 400 && !documented)) {
        failures.push(
          `${res.statusCode} for ${attempt.url.slice(0, 120)} ${String(attempt.payload).slice(0, 120)}: ${res.body.slice(0, 200)}`,
        );
      }
    }
    t.same(failures, [], `${route.method} ${route.url}: ${attempts.length} hostile requests`);
  }
  t.ok(requests > 500, `${requests} requests in all`);
});

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
const UUID_SAMPLE = '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a';

/** Cursors no list issues: wrong types, wrong arity, huge numbers, bad calendars, bad bytes. */
const FORGED_CURSORS: Record<string, string> = {
  'date and a number': b64('["2026-01-01",1]'),
  fraction: b64('[1.5]'),
  'a word': b64('["x"]'),
  '2^80': b64(JSON.stringify([2 ** 80])),
  '2^53': b64(JSON.stringify([2 ** 53])),
  'past int4': b64(JSON.stringify([2 ** 31])),
  '1e400': b64('[1e400]'),
  negative: b64('[-1]'),
  'numeric string': b64('["1"]'),
  'empty array': b64('[]'),
  'three elements': b64('[1,2,3]'),
  'an object': b64('{"seq":1}'),
  'a string': b64('"x"'),
  null: b64('null'),
  'null element': b64('[null]'),
  'boolean element': b64('[true]'),
  'nested array': b64('[["x"]]'),
  'NUL in a string': b64('["a\\u0000b"]'),
  'month 13': b64(`["2026-13-01T00:00:00.000Z","${UUID_SAMPLE}"]`),
  'February 30th': b64(`["2026-02-30 10:00:00.123456+00","${UUID_SAMPLE}"]`),
  'year 0': b64(`["0000-01-01T00:00:00.000Z","${UUID_SAMPLE}"]`),
  'swapped pair': b64(`["${UUID_SAMPLE}","2026-01-01T00:00:00.000Z"]`),
  'not base64': '!!!',
  'standard base64 alphabet': `${b64('[1]')}%2B%2F`,
  'base64 of text': b64('not json at all'),
  'base64 of broken UTF-8': Buffer.from([0x5b, 0xff, 0xfe, 0x5d]).toString('base64url'),
};

/** A valid key of each list's cursor shape (the codecs' own encoding). */
const CURSOR_SAMPLES: Record<keyof typeof cursors, string> = {
  createdAt: cursors.createdAt.encode(['2026-11-25T17:00:00.000Z', UUID_SAMPLE]),
  consentLedger: cursors.consentLedger.encode(['2026-11-25 17:00:00.123456+00', UUID_SAMPLE]),
  contactId: cursors.contactId.encode([UUID_SAMPLE]),
  purposeKey: cursors.purposeKey.encode(['newsletter']),
  noticeVersion: cursors.noticeVersion.encode([1]),
  auditSeq: cursors.auditSeq.encode([1]),
  eventSeq: cursors.eventSeq.encode([1]),
  importError: cursors.importError.encode([1, 0]),
  dueDate: cursors.dueDate.encode(['2026-12-25T17:00:00.000Z', UUID_SAMPLE]),
};

/**
 * Which cursor each list takes. A list that documents `cursor` and is missing here fails the
 * test, so a new list must say which shape it accepts.
 */
const LIST_CURSORS: Record<string, keyof typeof cursors> = {
  listUsers: 'createdAt',
  listApiKeys: 'createdAt',
  listContacts: 'createdAt',
  listDataSubjectRequests: 'createdAt',
  listContactImports: 'createdAt',
  opsListAccounts: 'createdAt',
  listAuditEvents: 'auditSeq',
  listAuditCheckpoints: 'auditSeq',
  listPurposes: 'purposeKey',
  listNoticeVersions: 'noticeVersion',
  listContactImportErrors: 'importError',
  getContactConsents: 'consentLedger',
  getPurposeAudience: 'contactId',
  listEvents: 'eventSeq',
  listWebhooks: 'createdAt',
  listWebhookDeliveries: 'eventSeq',
  listBreachIncidents: 'createdAt',
  getBreachRegister: 'createdAt',
  listBreachSubjectNotices: 'contactId',
};

/**
 * Every route that documents a `cursor` query parameter gets forged cursors and the cursors of
 * the other lists' shapes: each is a 400 `invalid_cursor` problem naming `query.cursor`, never
 * a 5xx (before, a well-formed cursor of the wrong types reached SQL and failed there).
 */
t.test('forged cursors on every list are 400 invalid_cursor, never a 5xx', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_MAX: '1000000' } });
  const owner = await signup(app, { accountName: 'Forged cursors' });
  const operatorEmail = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), {
    email: operatorEmail,
    password: GOOD_PASSWORD,
  });
  const operator = await login(app, operatorEmail);

  const doc = app.swagger() as {
    paths: Record<string, Record<string, Operation & { operationId?: string }>>;
  };
  const lists = Object.entries(doc.paths).flatMap(([path, operations]) =>
    Object.entries(operations)
      .filter(([, op]) => op.parameters?.some((p) => p.in === 'query' && p.name === 'cursor'))
      .map(([method, op]) => ({ path, method, operationId: op.operationId ?? '' })),
  );
  t.same(
    lists.map((l) => l.operationId).sort(),
    Object.keys(LIST_CURSORS).sort(),
    'every list with a cursor declares its shape here',
  );

  let requests = 0;
  for (const list of lists) {
    const own = LIST_CURSORS[list.operationId]!;
    const path = list.path.replace(/\{\w+\}/g, randomUUID());
    const headers = bearer(path.startsWith('/v1/ops') ? operator.accessToken : owner.accessToken);
    const send = (cursor: string) => {
      requests += 1;
      return app.inject({ method: 'GET', url: `${path}?cursor=${cursor}`, headers });
    };
    // The other lists' shapes, and forged cursors, that this list's sort key cannot hold must
    // be refused; the rest (`["x"]` is a purpose key, 2^31 an event seq) are positions in it.
    const attempts = { ...FORGED_CURSORS };
    for (const [shape, sample] of Object.entries(CURSOR_SAMPLES)) {
      if (shape !== own) attempts[`a ${shape} cursor`] = sample;
    }
    const failures: string[] = [];
    let refused = 0;
    for (const [name, cursor] of Object.entries(attempts)) {
      const res = await send(cursor);
      const body = res.json() as { code?: string; errors?: { field: string }[] };
      if (cursors[own].tryDecode(cursor) !== undefined) {
        if (res.statusCode >= 500 || body.code === 'invalid_cursor') {
          failures.push(`${name} (a valid position): ${res.statusCode} ${res.body.slice(0, 200)}`);
        }
        continue;
      }
      refused += 1;
      if (
        res.statusCode !== 400 ||
        !/^application\/problem\+json/.test(String(res.headers['content-type'])) ||
        body.code !== 'invalid_cursor' ||
        body.errors?.[0]?.field !== 'query.cursor'
      ) {
        failures.push(`${name}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      }
    }
    t.same(failures, [], `${list.operationId}: ${refused} forged cursors refused`);
    t.ok(refused >= Object.keys(attempts).length - 3, 'nearly all are refused');
    // Its own shape passes the codec (a 404 for the made-up parent id is fine).
    const ownRes = await send(CURSOR_SAMPLES[own]);
    t.ok(
      ownRes.statusCode < 500 && ownRes.json().code !== 'invalid_cursor',
      `${list.operationId}: its own cursor shape is accepted (${ownRes.statusCode})`,
    );
  }
  t.ok(requests > 300, `${requests} requests`);
});

/**
 * A body trickled slower than the body timeout, on every /v1 route that reads one (over a real
 * socket: inject() has no timeouts), signed in or not: each ends with a 4xx problem and a
 * closed connection, never a 5xx or a hang. The import upload has the longer import timeout.
 */
t.test('a slow body on every /v1 route is a 4xx problem, never a 5xx or a hang', async (t) => {
  const app = await build(t, {
    env: {
      RATE_LIMIT_MAX: '1000000',
      BODY_TIMEOUT_MS: '200',
      IMPORT_BODY_TIMEOUT_MS: '1000',
    },
  });
  const owner = await signup(app, { accountName: 'Slow bodies' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const routes = app
    .routeTable()
    .filter(
      (r) => r.url.startsWith('/v1') && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method),
    );
  t.ok(routes.length >= 10, `${routes.length} routes that read a body`);

  const failures: string[] = [];
  await Promise.all(
    routes.flatMap((route) =>
      [bearer(owner.accessToken), {}].map(async (auth) => {
        const path = route.url.replace(/:\w+/g, randomUUID());
        const head =
          `${route.method} ${path} HTTP/1.1\r\nhost: localhost\r\n` +
          Object.entries(auth)
            .map(([name, value]) => `${name}: ${value}\r\n`)
            .join('') +
          'content-type: application/json\r\ncontent-length: 50\r\n\r\n';
        // One byte every 150 ms: the 50 announced bytes would take 7.5 s.
        const res = await exchange(port, head, Array(50).fill(' '), 150, 5_000).catch(
          (err: Error): RawResponse => ({
            status: 0,
            headers: {},
            body: err.message,
            closedAfterMs: 0,
          }),
        );
        const problem = /^application\/problem\+json/.test(res.headers['content-type'] ?? '');
        // The whole body would take 7.5 s: an answer after it means the trickle was waited out.
        if (res.status < 400 || res.status >= 500 || !problem || res.closedAfterMs > 3_000) {
          failures.push(
            `${res.status} after ${res.closedAfterMs} ms for ${route.method} ${route.url}: ${res.body.slice(0, 200)}`,
          );
        }
      }),
    ),
  );
  t.same(failures, [], 'every slow body got a 4xx problem and a close within 3 s');
});
