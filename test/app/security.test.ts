import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { build } from '../helper.js';
import { assertProblem } from './assert-problem.js';

function assertSecurityHeaders(t: Test, res: LightMyRequestResponse) {
  t.equal(
    res.headers['strict-transport-security'],
    'max-age=31536000; includeSubDomains',
    'HSTS for a year, subdomains included',
  );
  const csp = String(res.headers['content-security-policy']);
  t.match(csp, /(^|;)\s*default-src 'none'/, `CSP loads nothing (${csp})`);
  t.match(csp, /(^|;)\s*frame-ancestors 'none'/, 'CSP forbids framing');
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.headers['x-frame-options'], 'DENY');
  t.equal(res.headers['cross-origin-resource-policy'], 'same-origin');
  t.equal(res.headers['referrer-policy'], 'no-referrer');
  t.equal(res.headers['cache-control'], 'no-store', 'personal data is never cached');
  // Headers for browsers rendering documents: nothing to protect on a JSON API.
  for (const legacy of [
    'x-xss-protection',
    'x-download-options',
    'x-dns-prefetch-control',
    'x-permitted-cross-domain-policies',
    'origin-agent-cluster',
    'cross-origin-opener-policy',
  ]) {
    t.notOk(legacy in res.headers, `no ${legacy}`);
  }
}

t.test('API responses carry HSTS, CSP and nosniff', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/v1' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.match(res.json(), { name: 'custodian', version: 'v1' });
  assertSecurityHeaders(t, res);
});

t.test('error responses carry them too', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/v1/missing' });
  assertProblem(t, res, { status: 404, code: 'route_not_found', instance: '/v1/missing' });
  assertSecurityHeaders(t, res);
});

t.test('HSTS_MAX_AGE_SECONDS sets the HSTS lifetime', async (t) => {
  const app = await build(t, { env: { HSTS_MAX_AGE_SECONDS: '600' } });
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { status: 'ok' });
  t.equal(res.headers['strict-transport-security'], 'max-age=600; includeSubDomains');
});

t.test('/docs serves the interactive documentation as HTML', async (t) => {
  const app = await build(t);
  let res = await app.inject({ method: 'GET', url: '/docs' });
  for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 3; hops++) {
    const location = String(res.headers.location);
    res = await app.inject({ method: 'GET', url: new URL(location, 'http://x/docs/').pathname });
  }
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/html/);
  t.match(res.body, /<html/i);
  t.match(res.body, /swagger/i, 'it is Swagger UI');
  // The API's "load nothing" policy would blank the page: /docs sets its own.
  t.match(
    String(res.headers['content-security-policy']),
    /script-src 'self'/,
    'the docs page may run its own scripts',
  );
});

t.test('/openapi.json is an OpenAPI 3.1 document with our security schemes', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  const doc = res.json();
  t.match(doc.openapi, /^3\.1\./, `version ${doc.openapi}`);
  t.match(doc.info, { title: /\S/, version: /\S/ });
  t.match(doc.components.securitySchemes, {
    bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
    apiKeyAuth: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
  });
  t.match(
    doc.components.schemas.Problem,
    {
      type: 'object',
      properties: {
        type: { type: 'string' },
        title: { type: 'string' },
        status: { type: 'integer' },
        code: { type: 'string' },
        requestId: { type: 'string' },
        errors: { type: 'array' },
      },
      required: ['type', 'title', 'status', 'code', 'requestId'],
    },
    'a Problem schema component',
  );
  t.same(
    doc.paths['/v1/me']?.get?.responses?.['503'],
    { $ref: '#/components/responses/ServiceUnavailable' },
    'error responses refer to a response component',
  );
  t.match(
    doc.components.responses.ServiceUnavailable,
    {
      content: {
        'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
      },
    },
    'which refers to the Problem component',
  );
  t.notOk(doc.paths['/openapi.json'], 'the document does not describe itself');
  t.ok(doc.paths['/v1/'] ?? doc.paths['/v1'], 'the API index is described');
});
