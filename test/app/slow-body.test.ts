import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { securityHeaders } from '../../src/http/security-headers.js';
import { bearer, signup } from '../fixtures/identity.js';
import { exchange, open, type RawResponse } from '../fixtures/raw-http.js';
import { build, testConfig } from '../helper.js';

/**
 * Slow and oversized requests over a real socket (inject() has no socket, no timeouts and no
 * header limit): a trickled body is cut off with a 408 problem after BODY_TIMEOUT_MS, except
 * on the import upload, which has IMPORT_BODY_TIMEOUT_MS; headers over Node's limit get a 431
 * problem; connections past MAX_CONNECTIONS are refused. Timeouts are configured small, and
 * every bound asserted is several times the timeout.
 */

const BODY_TIMEOUT_MS = 300;
const IMPORT_BODY_TIMEOUT_MS = 1_500;

async function listen(t: Test, env: Record<string, string> = {}) {
  const app = await build(t, {
    env: {
      BODY_TIMEOUT_MS: String(BODY_TIMEOUT_MS),
      IMPORT_BODY_TIMEOUT_MS: String(IMPORT_BODY_TIMEOUT_MS),
      ...env,
    },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, port: (app.server.address() as AddressInfo).port };
}

/** A login body, cut into `parts` chunks. */
function jsonChunks(parts: number): string[] {
  const body = JSON.stringify({ email: 'slow@example.com', password: 'x'.repeat(60) });
  const size = Math.ceil(body.length / parts);
  return Array.from({ length: parts }, (_, i) => body.slice(i * size, (i + 1) * size));
}

const lengthOf = (chunks: string[]) => chunks.join('').length;

function post(url: string, contentLength: number, headers: Record<string, string> = {}) {
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return (
    `POST ${url} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
    `content-length: ${contentLength}\r\n${extra}\r\n`
  );
}

function assertProblem(t: Test, res: RawResponse, status: number, code: string) {
  t.equal(res.status, status, `answers ${status}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const problem = JSON.parse(res.body);
  t.equal(problem.code, code);
  t.equal(problem.status, status);
  t.equal(problem.requestId, res.headers['x-request-id'], 'with the request id');
  const expected = securityHeaders({ hstsMaxAgeSeconds: testConfig().HSTS_MAX_AGE_SECONDS });
  for (const [name, value] of Object.entries(expected)) {
    t.equal(res.headers[name], value, `with ${name}`);
  }
}

t.test('a body trickled slower than BODY_TIMEOUT_MS gets a 408 problem and a close', async (t) => {
  const { port } = await listen(t);
  // 60 chunks, one every 100 ms: 6 s in all, of which the client sends only what it can
  // before the answer. The bound is "long before the body would have ended", with room for a
  // loaded machine whose event loop stalls for a second or two.
  const chunks = jsonChunks(60);
  const res = await exchange(port, post('/v1/auth/login', lengthOf(chunks)), chunks, 100);
  assertProblem(t, res, 408, 'request_timeout');
  t.equal(res.headers.connection, 'close');
  t.ok(
    res.closedAfterMs >= BODY_TIMEOUT_MS && res.closedAfterMs < 4_500,
    `answered and closed after ${res.closedAfterMs} ms (timeout ${BODY_TIMEOUT_MS} ms)`,
  );
});

t.test('a body that arrives in time is served as usual', async (t) => {
  const { port } = await listen(t);
  const chunks = jsonChunks(2); // 2 chunks, 50 ms apart
  const head = post('/v1/auth/login', lengthOf(chunks), { connection: 'close' });
  const res = await exchange(port, head, chunks, 50);
  t.equal(res.status, 401, 'read and answered: unknown credentials, not a timeout');
});

t.test('a refusal before the body has arrived closes the connection', async (t) => {
  const { port } = await listen(t);
  // Refused before reading (413: over the size limit; 415: not JSON): the client would
  // otherwise keep the connection for as long as it trickles the announced body.
  for (const [status, head] of [
    [413, post('/v1/auth/login', 2_000_000)],
    [415, post('/v1/auth/login', 1_000).replace('application/json', 'text/plain')],
  ] as const) {
    const res = await exchange(port, head, Array(30).fill('x'), 100);
    t.equal(res.status, status);
    t.equal(res.headers.connection, 'close', `${status} closes the connection`);
    t.ok(res.closedAfterMs < 1_500, `closed after ${res.closedAfterMs} ms`);
  }
});

t.test('an unknown route reads a body within BODY_TIMEOUT_MS too', async (t) => {
  const { port } = await listen(t);
  const res = await exchange(port, post('/v1/nowhere', 1_000), ['{', '"', 'a'], 200);
  assertProblem(t, res, 408, 'request_timeout');
  t.ok(res.closedAfterMs < 1_500, `closed after ${res.closedAfterMs} ms`);
});

t.test('an import upload may take longer, up to IMPORT_BODY_TIMEOUT_MS', async (t) => {
  const { app, port } = await listen(t);
  const owner = await signup(app as FastifyInstance);
  const rows = Array.from({ length: 8 }, (_, i) => `{"email":"slow-${i}@example.com"}\n`);
  const length = rows.join('').length;
  const head =
    `POST /v1/contact-imports?format=ndjson HTTP/1.1\r\nhost: localhost\r\n` +
    `authorization: ${bearer(owner.accessToken).authorization}\r\n` +
    `content-type: application/x-ndjson\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`;
  // 8 rows, one every 100 ms: 800 ms, well past BODY_TIMEOUT_MS, within the import's.
  const res = await exchange(port, head, rows, 100);
  t.ok(res.status >= 200 && res.status < 300, `the import is accepted (${res.status})`);
  t.ok(res.closedAfterMs >= 700, `after the whole body (${res.closedAfterMs} ms)`);

  // Past IMPORT_BODY_TIMEOUT_MS, Node itself cuts the upload off, answered as a problem too.
  const endless = Array.from({ length: 40 }, (_, i) => `{"email":"late-${i}@example.com"}\n`);
  const cut = await exchange(
    port,
    head.replace(/content-length: \d+/, 'content-length: 100000'),
    endless,
    100,
  );
  assertProblem(t, cut, 408, 'request_timeout');
  t.ok(
    cut.closedAfterMs >= IMPORT_BODY_TIMEOUT_MS &&
      cut.closedAfterMs < IMPORT_BODY_TIMEOUT_MS + 2_500,
    `cut off after ${cut.closedAfterMs} ms (timeout ${IMPORT_BODY_TIMEOUT_MS} ms)`,
  );
});

t.test('headers over the limit get a 431 problem with the security headers', async (t) => {
  const { port } = await listen(t);
  const head = `GET /v1 HTTP/1.1\r\nhost: localhost\r\nx-filler: ${'a'.repeat(20_000)}\r\n\r\n`;
  const res = await exchange(port, head);
  assertProblem(t, res, 431, 'header_fields_too_large');
  t.equal(res.headers.connection, 'close');
});

t.test('bytes that are not HTTP get a 400 problem', async (t) => {
  const { port } = await listen(t);
  const res = await exchange(port, 'HELLO there\r\n\r\n');
  assertProblem(t, res, 400, 'malformed_request');
});

t.test('connections beyond MAX_CONNECTIONS are refused', async (t) => {
  const { port } = await listen(t, { MAX_CONNECTIONS: '2' });
  const held = [await open(port), await open(port)];
  t.teardown(() => {
    for (const socket of held) socket.destroy();
  });
  // Both held connections are served (so the server has counted them).
  for (const socket of held) {
    socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n');
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    t.match(chunk.toString(), /^HTTP\/1\.1 200/);
  }
  const refused = await exchange(
    port,
    'GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n',
    [],
    0,
    2_000,
  );
  t.equal(refused.status, 0, 'the third connection is closed without an answer');

  held.pop()?.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const again = await exchange(
    port,
    'GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n',
  );
  t.equal(again.status, 200, 'once one closes, a new connection is served');
});
