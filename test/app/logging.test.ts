import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { pino } from 'pino';
import t from 'tap';
import { z } from 'zod';
import { loggerOptions, redactSecretParams } from '../../src/logger.js';
import { build, testConfig } from '../helper.js';
import { consentWorld, insertContact } from '../modules/consents-fixtures.js';

const TOKEN = 'secret-token-123';
const COOKIE_VALUE = 'session-cookie-value-9f8e7d';
const EMAIL = 'someone@example.com';
const PASSWORD = 'correct horse battery staple';
const SECRETS = [TOKEN, COOKIE_VALUE, EMAIL, PASSWORD];

interface LogLine {
  level: number;
  msg: string;
  requestId?: string;
  [key: string]: unknown;
}

/**
 * A logger configured exactly like production (same redaction and serializers), writing
 * each JSON line into memory instead of stdout.
 */
function captureLogger() {
  const raw: string[] = [];
  const config = testConfig({ LOG_LEVEL: 'debug' });
  const { transport: _pretty, ...options } = loggerOptions(config);
  const logger = pino(options, { write: (line: string) => void raw.push(line) });
  return {
    logger,
    raw,
    lines: () => raw.map((line) => JSON.parse(line) as LogLine),
  };
}

function addTestRoutes(app: FastifyInstance) {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.post(
    '/test/signup',
    {
      schema: {
        body: z.object({ email: z.string(), password: z.string() }),
        response: { 202: z.object({ accepted: z.boolean() }) },
      },
    },
    async (request, reply) => {
      const { email, password } = request.body;
      // A careless handler: logs personal data and a secret at depth one and two.
      request.log.info({ email, password, attempt: { email, password } }, 'signup attempt');
      // And one that binds them to a child logger.
      request.log.child({ email, token: password }).info('bound signup attempt');
      return reply.code(202).send({ accepted: true });
    },
  );
  typed.get(
    '/test/lookup-fails',
    { schema: { response: { 200: z.object({ ok: z.boolean() }) } } },
    async () => {
      throw new Error(`lookup failed for ${EMAIL}`);
    },
  );
}

/** onResponse hooks may run just after inject() resolves: wait until the lines are there. */
async function waitFor(check: () => boolean, timeoutMs = 2_000) {
  const until = Date.now() + timeoutMs;
  while (!check() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
}

t.test('no token, cookie, email or password reaches a log line', async (t) => {
  const capture = captureLogger();
  const app = await build(t, { logger: capture.logger, configure: addTestRoutes });
  const credentials = {
    authorization: `Bearer ${TOKEN}`,
    cookie: `session=${COOKIE_VALUE}`,
  };

  const requests = [
    { method: 'GET' as const, url: `/v1?contact=${EMAIL}`, expected: 200 },
    {
      method: 'POST' as const,
      url: `/test/signup?ref=${encodeURIComponent(EMAIL)}`,
      payload: { email: EMAIL, password: PASSWORD },
      expected: 202,
    },
    { method: 'GET' as const, url: `/v1/no-such-resource/${EMAIL}`, expected: 404 },
    { method: 'GET' as const, url: '/test/lookup-fails', expected: 500 },
    { method: 'GET' as const, url: '/healthz', expected: 200 },
  ];
  const ids: string[] = [];
  for (const [i, { expected, ...request }] of requests.entries()) {
    const requestId = `log-test-${i}`;
    const res = await app.inject({
      ...request,
      headers: { ...credentials, 'x-request-id': requestId },
    });
    t.equal(res.statusCode, expected, `${request.method} ${request.url}`);
    t.match(
      res.headers['content-type'],
      expected < 400 ? /^application\/json/ : /^application\/problem\+json/,
    );
    t.type(res.json(), 'object');
    ids.push(requestId);
  }

  const completed = () => capture.lines().filter((l) => l.msg === 'request completed');
  await waitFor(() => completed().length >= requests.length);

  const all = capture.raw.join('');
  for (const secret of SECRETS) {
    t.notOk(all.includes(secret), `no line contains "${secret}"`);
  }
  t.notOk(all.includes('someone%40example.com'), 'nor the URL-encoded email');

  // The captures are real: the lines that would have carried the secrets are there.
  const lines = capture.lines();
  const signup = lines.find((l) => l.msg === 'signup attempt');
  t.match(
    signup,
    {
      requestId: 'log-test-1',
      email: '[redacted]',
      password: '[redacted]',
      attempt: { email: '[redacted]', password: '[redacted]' },
    },
    'the handler’s object is logged, with its secrets censored',
  );
  t.match(
    lines.find((l) => l.msg === 'bound signup attempt'),
    { requestId: 'log-test-1', email: '[redacted]', token: '[redacted]' },
    'child-logger bindings are censored too',
  );
  const failure = lines.find((l) => l.msg === 'unexpected error');
  t.match(
    failure,
    { requestId: 'log-test-3', err: { message: 'lookup failed for [email]' } },
    'the error is logged with the email scrubbed from its message',
  );

  for (const id of ids) {
    const mine = completed().filter((l) => l.requestId === id);
    t.equal(mine.length, 1, `${id}: exactly one "request completed" line`);
    t.match(
      mine[0],
      {
        req: { method: /^[A-Z]+$/, url: /^\// },
        res: { statusCode: Number },
        responseTime: Number,
      },
      `${id}: the line names method, url, status and time`,
    );
  }
  t.equal(completed().length, requests.length, 'no other request lines');

  const v1 = completed().find((l) => l.requestId === 'log-test-0');
  t.equal((v1?.req as { url?: string })?.url, '/v1?contact=[email]', 'the URL is scrubbed');
  const signupLine = completed().find((l) => l.requestId === 'log-test-1');
  t.equal(
    (signupLine?.req as { url?: string })?.url,
    '/test/signup?ref=[email]',
    'a percent-encoded email is scrubbed too',
  );
  const health = completed().find((l) => l.requestId === 'log-test-4');
  t.equal(health?.level, 20, 'probes log at debug, not info');
  t.equal(v1?.level, 30, 'API requests log at info');
});

t.test('secret path parameters are masked by the route pattern', async (t) => {
  t.equal(
    redactSecretParams(
      '/v1/public/consent-withdrawals/abc?x=1',
      '/v1/public/consent-withdrawals/:token',
    ),
    '/v1/public/consent-withdrawals/[redacted]?x=1',
  );
  t.equal(
    redactSecretParams('/a/short/b/42', '/a/:resetToken/b/:id'),
    '/a/[redacted]/b/42',
    'any parameter named like a token, however short its value',
  );
  t.equal(
    redactSecretParams('/v1/contacts/3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a', '/v1/contacts/:id'),
    '/v1/contacts/3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a',
    'ids stay readable',
  );
  const token = 'q3J0d2xYk1R8nH6pV9sT4wZ2cB7mF5aE0gL1iO3uK8y';
  t.equal(
    redactSecretParams(`/v1/public/consent-confirmations/${token}/extra`, undefined),
    '/v1/public/consent-confirmations/[redacted]/extra',
    'a token-shaped segment of a URL that matched no route',
  );
});

/**
 * The public consent links (a confirmation is valid for days, a withdrawal for a year) act for
 * the contact: the access log must not hold them. Real links, through the real routes.
 */
t.test('consent-link tokens never reach a log line', async (t) => {
  const capture = captureLogger();
  const app = await build(t, {
    logger: capture.logger,
    configure: (app) => {
      app.get('/test/reset/:resetToken/things/:id', async () => ({ ok: true }));
    },
  });
  const world = await consentWorld(app);
  const contactId = await insertContact(app, world.owner.accountId);
  const granted = await app.inject({
    method: 'POST',
    url: `/v1/contacts/${contactId}/consents`,
    headers: world.headers,
    payload: {
      purposeId: world.purposeId,
      noticeVersion: 1,
      event: 'granted',
      method: 'double_opt_in',
    },
  });
  t.equal(granted.statusCode, 201, granted.body);
  const confirmUrl: string = granted.json().confirmation.url;
  const withdrawUrl: string = granted.json().withdrawal.url;
  const tokens = [confirmUrl, withdrawUrl].map((url) => url.split('/').pop()!);

  const requests = [
    { url: confirmUrl, expected: 200 },
    { url: confirmUrl, expected: 409 },
    { url: `${confirmUrl}x`, expected: 404 },
    { url: `${withdrawUrl}/extra`, expected: 404 },
    { url: withdrawUrl, expected: 200 },
  ];
  for (const { url, expected } of requests) {
    const res = await app.inject({ method: 'POST', url });
    t.equal(res.statusCode, expected, `POST ${url.slice(0, 40)}…: ${expected}`);
  }
  const generic = await app.inject({ method: 'GET', url: '/test/reset/abc123/things/42' });
  t.equal(generic.statusCode, 200);

  const completed = () => capture.lines().filter((l) => l.msg === 'request completed');
  await waitFor(() => completed().length >= requests.length + 3);
  const all = capture.raw.join('');
  for (const token of tokens) t.notOk(all.includes(token), 'no line holds a link token');
  t.notOk(all.includes('abc123'), 'nor a parameter named resetToken');

  const urls = completed().map((l) => (l.req as { url: string }).url);
  t.ok(urls.includes('/v1/public/consent-confirmations/[redacted]'), 'confirmations: masked');
  t.ok(urls.includes('/v1/public/consent-withdrawals/[redacted]'), 'withdrawals: masked');
  t.ok(urls.includes('/test/reset/[redacted]/things/42'), 'any route with a token parameter');
  t.ok(
    urls.includes(`/v1/contacts/${contactId}/consents`),
    'other parameters (ids) stay in the line',
  );
});
