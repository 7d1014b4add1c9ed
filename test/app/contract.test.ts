import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { OPENAPI_PATH } from '../../scripts/lib/openapi.js';
import { buildApp } from '../../src/app.js';
import { MAX_PATH_SEGMENT_LENGTH } from '../../src/http/schemas.js';
import { checkContract } from '../fixtures/contract-check.js';
import { build, testConfig, testDatabase } from '../helper.js';
import { assertProblem } from './assert-problem.js';

/**
 * The contract says what the service does. Most of it is checked by every test: build(t) checks
 * each answer against openapi.yaml (fixtures/contract-check.ts). This file checks the document
 * itself, the statuses no ordinary test provokes on every operation, and the checker.
 */

type Json = Record<string, unknown>;
interface Document {
  paths: Record<string, Record<string, Json>>;
  components: { responses: Record<string, Json>; headers: Record<string, Json>; schemas: Json };
}

const document = parse(await readFile(OPENAPI_PATH, 'utf8')) as Document;

function resolve(node: Json): Json {
  if (typeof node.$ref !== 'string') return node;
  const [, , kind, name] = node.$ref.split('/');
  return (document.components as unknown as Record<string, Record<string, Json>>)[kind!]![name!]!;
}

function operations() {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      path,
      method: method.toUpperCase(),
      operation,
      responses: operation.responses as Record<string, Json>,
    })),
  );
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

t.test('every answer is described, every error with an example of its own status', async (t) => {
  for (const { path, method, responses } of operations()) {
    for (const [status, reference] of Object.entries(responses)) {
      const response = resolve(reference);
      const where = `${method} ${path} ${status}`;
      t.not(response.description, 'Default Response', `${where}: described`);
      if (Number(status) < 400) continue;
      const content = response.content as Record<string, Json>;
      const media = content['application/problem+json'];
      // An error is a problem document, or (a link page for a person) an HTML page.
      t.ok(media ?? content['text/html'], `${where}: a problem document or a page`);
      if (!media) continue;
      const example = media.example as { status?: number; type?: string; code?: string };
      t.equal(example?.status, Number(status), `${where}: the example is a ${status}`);
      t.equal(example?.type, `urn:custodian:problem:${example?.code}`, `${where}: type and code`);
    }
  }
  const { responses } = document.components;
  t.same(Object.keys(resolve({ $ref: '#/components/responses/Unauthorized' }).headers as Json), [
    'WWW-Authenticate',
  ]);
  t.same(Object.keys(responses.TooManyRequests?.headers as Json).sort(), [
    'Retry-After',
    'X-RateLimit-Limit',
    'X-RateLimit-Remaining',
    'X-RateLimit-Reset',
  ]);
  t.same(Object.keys(responses.ServiceUnavailable?.headers as Json), ['Retry-After']);
});

t.test('every operation lists the statuses of the machinery before its handler', async (t) => {
  for (const { path, method, operation, responses } of operations()) {
    const where = `${method} ${path}`;
    const statuses = Object.keys(responses).map(Number);
    t.ok(statuses.includes(500) && statuses.includes(503), `${where}: 500 and 503`);
    if (path.startsWith('/v1')) t.ok(statuses.includes(429), `${where}: 429 (rate limited)`);
    if (BODY_METHODS.has(method)) {
      for (const status of [400, 408, 413, 415]) {
        t.ok(statuses.includes(status), `${where}: ${status}`);
      }
    }
    if (path.includes('{')) t.ok(statuses.includes(414), `${where}: 414`);
    if ((operation.security as unknown[] | undefined)?.length) {
      t.ok(statuses.includes(401) && statuses.includes(403), `${where}: 401 and 403`);
    }
    // Success answers of rate-limited operations carry the limiter's headers.
    for (const [status, response] of Object.entries(responses)) {
      if (Number(status) >= 300 || !statuses.includes(429)) continue;
      t.ok((resolve(response).headers as Json | undefined)?.['X-RateLimit-Limit'], where);
    }
  }
});

t.test('the router and the contract agree on the longest path segment', async (t) => {
  const app = await build(t);
  for (const { path, operation } of operations()) {
    for (const parameter of (operation.parameters ?? []) as Json[]) {
      if (parameter.in !== 'path') continue;
      const schema = parameter.schema as { maxLength?: number; anyOf?: { maxLength?: number }[] };
      const lengths = [schema.maxLength, ...(schema.anyOf ?? []).map((s) => s.maxLength)];
      for (const length of lengths.filter((n) => n !== undefined)) {
        t.ok(length! <= MAX_PATH_SEGMENT_LENGTH, `${path} {${parameter.name}}: ${length}`);
      }
    }
  }
  const confirm = document.paths['/v1/public/consent-confirmations/{token}']?.post ?? {};
  const tokenParameter = (confirm.parameters as { schema: { maxLength: number } }[])[0];
  t.equal(tokenParameter?.schema.maxLength, MAX_PATH_SEGMENT_LENGTH, 'tokens: the router’s limit');
  const longest = `/v1/public/consent-confirmations/${'a'.repeat(MAX_PATH_SEGMENT_LENGTH)}`;
  const routed = await app.inject({ method: 'POST', url: longest });
  assertProblem(t, routed, { status: 404, code: 'token_invalid', instance: longest });
  const tooLong = `/v1/public/consent-confirmations/${'a'.repeat(MAX_PATH_SEGMENT_LENGTH + 1)}`;
  const refused = await app.inject({ method: 'POST', url: tooLong });
  assertProblem(t, refused, { status: 414, code: 'uri_too_long', instance: tooLong });
});

t.test('the import upload declares its two media types and its answer', async (t) => {
  const operation = document.paths['/v1/contact-imports']?.post ?? {};
  const content = (operation.requestBody as { required: boolean; content: Record<string, Json> })
    .content;
  t.same(Object.keys(content).sort(), ['application/x-ndjson', 'text/csv']);
  t.match(content['application/x-ndjson']?.schema, {
    type: 'string',
    contentMediaType: 'application/x-ndjson',
    contentSchema: { $ref: '#/components/schemas/ContactImportRow' },
  });
  t.match(content['text/csv']?.schema, { type: 'string', contentMediaType: 'text/csv' });
  t.match(document.components.schemas.ContactImportRow, {
    type: 'object',
    required: ['email'],
    properties: { consent: { required: ['purpose', 'noticeVersion', 'method', 'grantedAt'] } },
  });
  const created = (operation.responses as Record<string, Json>)['201'] ?? {};
  t.match(created, {
    headers: { Location: { $ref: '#/components/headers/Location' } },
    content: { 'application/json': { schema: { $ref: '#/components/schemas/ContactImport' } } },
  });
});

/**
 * Provokes, on every operation, the answers that come from the machinery in front of the
 * handler; build(t) checks each one against the contract (status, media type, body, headers).
 */
t.test('every operation answers 401, 415 and 429 as its contract says', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_MAX: '1', LOGIN_MAX_PER_IP_PER_MINUTE: '1' } });
  const routes = app.routeTable().filter((route) => route.url.startsWith('/v1'));
  t.ok(routes.length >= 50, `${routes.length} operations`);
  let client = 0;
  const from = () => `198.51.100.${++client}`;
  for (const route of routes) {
    const url = route.url.replace(/:[A-Za-z]+/g, '0f0e0d0c-0b0a-4908-8706-050403020100');
    const method = route.method as 'GET';
    if (route.auth !== undefined && route.auth !== 'public') {
      const anonymous = await app.inject({ method, url, remoteAddress: from() });
      t.equal(anonymous.statusCode, 401, `${route.method} ${route.url}: 401`);
    }
    if (BODY_METHODS.has(route.method)) {
      const text = await app.inject({
        method,
        url,
        remoteAddress: from(),
        headers: { 'content-type': 'text/html' },
        payload: '<p>not this</p>',
      });
      t.equal(text.statusCode, 415, `${route.method} ${route.url}: 415`);
    }
    const address = from();
    await app.inject({ method, url, remoteAddress: address });
    const limited = await app.inject({ method, url, remoteAddress: address });
    t.equal(limited.statusCode, 429, `${route.method} ${route.url}: 429`);
  }
});

/** An app as build(t) makes it, but whose contract violations are collected, not failed. */
async function appWithCollectedViolations(
  t: Test,
  tamper: (app: FastifyInstance) => void,
): Promise<{ app: FastifyInstance; violations: string[] }> {
  const app = await buildApp({
    config: testConfig(),
    database: await testDatabase(),
    logger: false,
    rateLimitNamespace: randomBytes(6).toString('hex'),
  });
  t.teardown(() => app.close());
  tamper(app);
  const violations: string[] = [];
  checkContract(app, { fail: (message) => violations.push(message) });
  await app.ready();
  return { app, violations };
}

t.test('the checker finds an answer that breaks the contract', async (t) => {
  const cases: [string, (app: FastifyInstance) => void, RegExp][] = [
    ['a conforming answer', () => {}, /^$/],
    [
      'an undocumented status',
      (app) =>
        app.addHook('onSend', async (_request, reply, payload) => {
          reply.code(418);
          return payload;
        }),
      /getApiIndex \(GET \/v1\) answered 418: status not documented/,
    ],
    [
      'a body off its schema',
      (app) => app.addHook('onSend', async () => JSON.stringify({ name: 7 })),
      /answered 200: body does not match the schema/,
    ],
    [
      'an undeclared media type',
      (app) =>
        app.addHook('onSend', async (_request, reply, payload) => {
          reply.type('text/html');
          return payload;
        }),
      /media type text\/html not declared/,
    ],
    [
      'a required header missing',
      (app) =>
        app.addHook('onSend', async (_request, reply, payload) => {
          reply.removeHeader('x-ratelimit-limit');
          return payload;
        }),
      /required header X-RateLimit-Limit missing/,
    ],
    [
      'an ETag the contract does not declare',
      (app) =>
        app.addHook('onSend', async (_request, reply, payload) => {
          reply.header('etag', '"v1"');
          return payload;
        }),
      /sends etag but the contract does not declare it/,
    ],
  ];
  for (const [name, tamper, expected] of cases) {
    const { app, violations } = await appWithCollectedViolations(t, tamper);
    await app.inject({ method: 'GET', url: '/v1' });
    t.match(violations.join('\n'), expected, name);
  }
});

t.test('build(t) reports a violation to the test that caused it', async (t) => {
  const failures: string[] = [];
  const app = await build(
    {
      teardown: (fn: () => unknown) => t.teardown(fn),
      fail: (message: string) => failures.push(message) > 0,
    },
    {
      configure: (app) => {
        app.addHook('onSend', async (_request, reply, payload) => {
          reply.code(418);
          return payload;
        });
      },
    },
  );
  await app.inject({ method: 'GET', url: '/v1' });
  t.match(failures, [/^contract: getApiIndex .* 418: status not documented/]);
});
