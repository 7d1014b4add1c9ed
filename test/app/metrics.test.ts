import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import t from 'tap';
import { z } from 'zod';
import { signup } from '../fixtures/identity.js';
import { build, ENGINE } from '../helper.js';

function addTestRoutes(app: FastifyInstance) {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/test/widgets/:widgetId',
    {
      schema: {
        params: z.object({ widgetId: z.string() }),
        response: { 200: z.object({ id: z.string() }) },
      },
    },
    async (request) => ({ id: request.params.widgetId }),
  );
}

/** The value of one sample line, e.g. `name{a="b"} 3`, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('/metrics exposes request, latency and pool metrics by route pattern', async (t) => {
  const app = await build(t, { configure: addTestRoutes });
  for (const id of ['widget-a1b2', 'widget-c3d4']) {
    const res = await app.inject({ method: 'GET', url: `/test/widgets/${id}` });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    t.same(res.json(), { id });
  }
  const missing = await app.inject({ method: 'GET', url: '/no/such/page-x9y8' });
  t.equal(missing.statusCode, 404);
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200, 'readiness touched the database');
  // Readiness pings through the login's own pool; a sign-up uses the service's.
  await signup(app);

  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain/);
  const text = res.body;

  const route = 'route="/test/widgets/:widgetId"';
  t.equal(
    sample(text, `http_requests_total{method="GET",${route},status_code="200"}`),
    2,
    'both requests counted under the route pattern',
  );
  t.equal(
    sample(text, `http_request_duration_seconds_count{method="GET",${route},status_code="200"}`),
    2,
    'both durations observed under the route pattern',
  );
  t.match(
    text,
    /^http_request_duration_seconds_bucket\{le="[\d.]+",method="GET",route="\/test\/widgets\/:widgetId",status_code="200"\} \d+$/m,
    'a latency histogram with buckets',
  );
  for (const raw of ['widget-a1b2', 'widget-c3d4', 'page-x9y8']) {
    t.notOk(text.includes(raw), `the raw URL part "${raw}" is no label`);
  }
  t.match(
    text,
    /^http_requests_total\{method="GET",route="[^"]*",status_code="404"\} 1$/m,
    'unmatched requests are counted under one label',
  );
  t.match(text, /^# TYPE db_pool_connections gauge$/m);
  const total = sample(text, 'db_pool_connections{state="total"}');
  const idle = sample(text, 'db_pool_connections{state="idle"}');
  const waiting = sample(text, 'db_pool_connections{state="waiting"}');
  t.ok(total !== undefined && total >= 1, `the pool has connections (total ${total})`);
  t.ok(idle !== undefined && idle >= 0 && idle <= (total ?? 0), `idle ${idle} of ${total}`);
  t.equal(waiting, 0, 'nobody waits for a connection');
  if (ENGINE === 'embedded') t.equal(total, 1, 'the embedded engine has one connection');
  t.match(text, /^process_cpu_seconds_total /m, 'default process metrics are collected');
});

t.test('each app counts on its own registry', async (t) => {
  const first = await build(t, { configure: addTestRoutes });
  const second = await build(t, { configure: addTestRoutes });
  const res1 = await first.inject({ method: 'GET', url: '/test/widgets/w1' });
  t.equal(res1.statusCode, 200);
  const res = await second.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain/);
  t.notOk(
    res.body.includes('route="/test/widgets/:widgetId"'),
    'the other app’s requests are not in this app’s metrics',
  );
});
