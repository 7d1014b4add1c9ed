import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import t from 'tap';
import { z } from 'zod';
import { build } from '../helper.js';
import { assertProblem } from './assert-problem.js';

const LEAKED_SECRET = 'db password is hunter2 at 10.0.0.1';

/** Test-only routes that exercise each failure path of the error mapper. */
function addTestRoutes(app: FastifyInstance) {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.post(
    '/test/widgets',
    {
      schema: {
        body: z.object({
          name: z.string().min(1),
          quantity: z.number().int().positive(),
        }),
        response: { 201: z.object({ name: z.string(), quantity: z.number() }) },
      },
    },
    async (request, reply) => reply.code(201).send(request.body),
  );
  typed.get(
    '/test/widgets',
    {
      schema: {
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }),
        response: { 200: z.object({ limit: z.number() }) },
      },
    },
    async (request) => ({ limit: request.query.limit }),
  );
  typed.get(
    '/test/explode',
    { schema: { response: { 200: z.object({ ok: z.boolean() }) } } },
    async () => {
      throw new Error(LEAKED_SECRET);
    },
  );
  // Answers an object that breaks its own response schema (id must be a string).
  typed.get(
    '/test/off-contract',
    { schema: { response: { 200: z.object({ id: z.string() }) } } },
    async () => ({ id: 42, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$leaked' }) as never,
  );
  // Answers more than its schema declares: the extra member must be stripped.
  typed.get(
    '/test/extra-members',
    { schema: { response: { 200: z.object({ id: z.string() }) } } },
    async () => ({ id: 'u1', passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$leaked' }),
  );
}

t.test('an unknown route answers 404 route_not_found', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/v1/no-such-thing?x=1' });
  const body = assertProblem(t, res, {
    status: 404,
    code: 'route_not_found',
    instance: '/v1/no-such-thing',
  });
  t.match(body.detail, /GET \/v1\/no-such-thing/);
});

t.test('paths the router refuses are problems too, with the security headers', async (t) => {
  const app = await build(t);
  // Before routing, so neither the error handler nor the onRequest hooks run for these.
  for (const [url, status, code, instance] of [
    ['/v1/contacts/%ff', 400, 'bad_url', '/v1/contacts/%ff'],
    ['/v1/contacts/%ED%A0%80', 400, 'bad_url', '/v1/contacts/%ED%A0%80'],
    [`/v1/contacts/${'x'.repeat(201)}`, 414, 'uri_too_long', `/v1/contacts/${'x'.repeat(201)}`],
  ] as const) {
    const res = await app.inject({ method: 'GET', url, headers: { 'x-request-id': 'bad-url-1' } });
    assertProblem(t, res, { status, code, instance });
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${code}: security headers`);
    t.match(String(res.headers['strict-transport-security']), /max-age=/);
    t.notMatch(res.body, /FST_ERR/, `${code}: no framework internals`);
  }
});

t.test('a known path with the wrong method answers 405 with Allow', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'DELETE', url: '/healthz' });
  const body = assertProblem(t, res, {
    status: 405,
    code: 'method_not_allowed',
    instance: '/healthz',
  });
  const allow = String(res.headers.allow).split(/,\s*/);
  t.ok(allow.includes('GET'), `Allow lists GET (${res.headers.allow})`);
  t.notOk(allow.includes('DELETE'), 'Allow does not list the refused method');
  t.match(body.detail, /DELETE/);
});

t.test('a 405 names every method of a path with several', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'PUT', url: '/test/widgets' });
  assertProblem(t, res, { status: 405, code: 'method_not_allowed', instance: '/test/widgets' });
  const allow = String(res.headers.allow).split(/,\s*/);
  t.ok(allow.includes('GET') && allow.includes('POST'), `Allow lists GET and POST (${allow})`);
});

t.test('malformed JSON answers 400 malformed_json', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    headers: { 'content-type': 'application/json' },
    payload: '{"name": "bolt", ',
  });
  assertProblem(t, res, { status: 400, code: 'malformed_json', instance: '/test/widgets' });
});

t.test('an empty JSON body answers 400 empty_body', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    headers: { 'content-type': 'application/json' },
    payload: '',
  });
  assertProblem(t, res, { status: 400, code: 'empty_body', instance: '/test/widgets' });
});

t.test('a body validation error lists each offending field', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    payload: { name: '', quantity: 'many' },
  });
  const body = assertProblem(t, res, {
    status: 400,
    code: 'validation_failed',
    instance: '/test/widgets',
  });
  const fields = (body.errors ?? []).map((e) => e.field).sort();
  t.same(fields, ['body.name', 'body.quantity'], 'both bad fields are named, nothing else');
  for (const error of body.errors ?? []) {
    t.match(error, { field: /^body\./, message: /\S/, code: /\S/ }, `${error.field} explained`);
  }
});

t.test('a missing body field is named too', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'POST', url: '/test/widgets', payload: { name: 'x' } });
  const body = assertProblem(t, res, {
    status: 400,
    code: 'validation_failed',
    instance: '/test/widgets',
  });
  t.same(
    (body.errors ?? []).map((e) => e.field),
    ['body.quantity'],
  );
});

t.test('a query validation error names query.<param>', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'GET', url: '/test/widgets?limit=lots' });
  const body = assertProblem(t, res, {
    status: 400,
    code: 'validation_failed',
    instance: '/test/widgets',
  });
  t.same(
    (body.errors ?? []).map((e) => e.field),
    ['query.limit'],
  );

  const ok = await app.inject({ method: 'GET', url: '/test/widgets?limit=5' });
  t.equal(ok.statusCode, 200, 'a valid query passes');
  t.match(ok.headers['content-type'], /^application\/json/);
  t.same(ok.json(), { limit: 5 });
});

t.test('a valid body passes (the route itself works)', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    payload: { name: 'bolt', quantity: 3 },
  });
  t.equal(res.statusCode, 201);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { name: 'bolt', quantity: 3 });
});

t.test('a body in another content type answers 415', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    headers: { 'content-type': 'text/plain' },
    payload: 'name=bolt',
  });
  assertProblem(t, res, { status: 415, code: 'unsupported_media_type', instance: '/test/widgets' });
});

t.test('a body over BODY_LIMIT_BYTES answers 413', async (t) => {
  const app = await build(t, { configure: addTestRoutes, env: { BODY_LIMIT_BYTES: '1024' } });
  const res = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    payload: { name: 'x'.repeat(2_000), quantity: 1 },
  });
  assertProblem(t, res, { status: 413, code: 'payload_too_large', instance: '/test/widgets' });

  const small = await app.inject({
    method: 'POST',
    url: '/test/widgets',
    payload: { name: 'x'.repeat(500), quantity: 1 },
  });
  t.equal(small.statusCode, 201, 'a body under the limit is accepted');
});

t.test('the rate limit answers 429 with Retry-After', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW: '1 minute' } });
  for (let i = 1; i <= 2; i++) {
    const res = await app.inject({ method: 'GET', url: '/v1' });
    t.equal(res.statusCode, 200, `request ${i} is within the limit`);
    t.match(res.headers['content-type'], /^application\/json/);
  }
  const res = await app.inject({ method: 'GET', url: '/v1' });
  assertProblem(t, res, { status: 429, code: 'rate_limited', instance: '/v1' });
  const retryAfter = Number(res.headers['retry-after']);
  t.ok(
    Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 60,
    `Retry-After is a number of seconds within the window (${res.headers['retry-after']})`,
  );

  const health = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(health.statusCode, 200, 'probes are not rate limited');
});

t.test('unknown routes are rate limited too (no free scanning)', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_MAX: '2' } });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    statuses.push((await app.inject({ method: 'GET', url: `/scan/${i}` })).statusCode);
  }
  t.same(statuses, [404, 404, 429]);
});

t.test('an unexpected error answers 500 internal_error without its message', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'GET', url: '/test/explode' });
  assertProblem(t, res, { status: 500, code: 'internal_error', instance: '/test/explode' });
  for (const fragment of ['hunter2', '10.0.0.1', 'db password', 'errors.test', 'Error:']) {
    t.notOk(res.body.includes(fragment), `the body does not contain "${fragment}"`);
  }
});

t.test('a response that breaks its schema answers 500 and leaks nothing', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'GET', url: '/test/off-contract' });
  assertProblem(t, res, { status: 500, code: 'internal_error', instance: '/test/off-contract' });
  t.notOk(res.body.includes('argon2id'), 'the hash is not in the body');
  t.notOk(/"id":\s*42/.test(res.body), 'the off-contract value is not in the body');
});

t.test('members a response schema does not declare are stripped', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  const res = await app.inject({ method: 'GET', url: '/test/extra-members' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { id: 'u1' });
});
