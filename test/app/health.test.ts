import t from 'tap';
import { build } from '../helper.js';

t.test('GET /healthz answers ok with a request id', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /application\/json/);
  t.same(res.json(), { status: 'ok' });
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
});
