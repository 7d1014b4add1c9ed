import t from 'tap';
import { build } from '../helper.js';
import { assertProblem } from './assert-problem.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('a valid incoming X-Request-Id is echoed and used in problems', async (t) => {
  const app = await build(t);
  const incoming = 'edge-7f3a.2025:abc_DEF';

  const ok = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { 'x-request-id': incoming },
  });
  t.equal(ok.statusCode, 200);
  t.match(ok.headers['content-type'], /^application\/json/);
  t.same(ok.json(), { status: 'ok' });
  t.equal(ok.headers['x-request-id'], incoming, 'echoed on success');

  const missing = await app.inject({
    method: 'GET',
    url: '/nowhere',
    headers: { 'x-request-id': incoming },
  });
  const body = assertProblem(t, missing, {
    status: 404,
    code: 'route_not_found',
    instance: '/nowhere',
  });
  t.equal(body.requestId, incoming, 'the problem quotes the caller’s id');
});

t.test('an id of exactly 128 allowed characters is kept', async (t) => {
  const app = await build(t);
  const incoming = 'a'.repeat(128);
  const res = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { 'x-request-id': incoming },
  });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { status: 'ok' });
  t.equal(res.headers['x-request-id'], incoming);
});

t.test('an invalid incoming X-Request-Id is replaced by a UUID', async (t) => {
  const app = await build(t);
  const invalid = {
    'too long': 'a'.repeat(129),
    spaces: 'two words',
    markup: '<script>alert(1)</script>',
    'log forging': 'id\\nlevel=error',
    'non-ASCII': 'idé',
    'empty value': '',
  };
  for (const [why, incoming] of Object.entries(invalid)) {
    const res = await app.inject({
      method: 'GET',
      url: '/nowhere',
      headers: { 'x-request-id': incoming },
    });
    const body = assertProblem(t, res, {
      status: 404,
      code: 'route_not_found',
      instance: '/nowhere',
    });
    t.match(res.headers['x-request-id'], UUID, `${why}: replaced by a UUID`);
    t.not(res.headers['x-request-id'], incoming, `${why}: not echoed`);
    t.equal(body.requestId, res.headers['x-request-id'], `${why}: the problem quotes the UUID`);
  }
});

t.test('without an incoming id every request gets its own UUID', async (t) => {
  const app = await build(t);
  const ids = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    t.same(res.json(), { status: 'ok' });
    t.match(res.headers['x-request-id'], UUID);
    ids.add(String(res.headers['x-request-id']));
  }
  t.equal(ids.size, 3, 'ids are not reused');
});
