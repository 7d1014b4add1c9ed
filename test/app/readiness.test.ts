import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { sql } from 'kysely';
import t from 'tap';
import { createPostgresDatabase } from '../../src/db/database.js';
import { build, ENGINE, testDatabase } from '../helper.js';
import { assertProblem } from './assert-problem.js';

/**
 * A TCP proxy in front of Postgres that the test can cut and restore, to play a database
 * that goes away and comes back.
 */
class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops listening and kills every open connection, as a crashed database would. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

t.test('/readyz names the engine of this run', async (t) => {
  const app = await build(t);
  const res = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { status: 'ready', database: ENGINE, checks: { redis: 'not_configured' } });
});

t.test(
  'Postgres going away answers 503 quickly, and readiness recovers by itself',
  { skip: ENGINE !== 'postgres' ? 'needs Postgres (DATABASE_URL)' : false },
  async (t) => {
    const target = new URL(process.env.DATABASE_URL!);
    const proxy = new CuttableProxy(target.hostname, Number(target.port || 5432));
    await proxy.start();
    t.teardown(() => proxy.cut());

    const proxied = new URL(target);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const database = createPostgresDatabase({
      url: proxied.toString(),
      // This file's migrated schema: readiness also asks whether the schema is current.
      schema: (await testDatabase()).schema,
      poolMax: 2,
      connectionTimeoutMs: 1_000,
      statementTimeoutMs: 2_000,
      idleTimeoutMs: 30_000,
    });
    t.teardown(() => database.close());
    const app = await build(t, { database, env: { DB_CONNECTION_TIMEOUT_MS: '1000' } });

    const up = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(up.statusCode, 200, 'ready through the proxy');
    t.match(up.headers['content-type'], /^application\/json/);
    t.same(up.json(), {
      status: 'ready',
      database: 'postgres',
      checks: { redis: 'not_configured' },
    });
    t.ok(database.poolStats().total >= 1, 'a pooled connection now runs through the proxy');

    await proxy.cut();
    const started = Date.now();
    const down = await app.inject({ method: 'GET', url: '/readyz' });
    const elapsed = Date.now() - started;
    assertProblem(t, down, { status: 503, code: 'database_unavailable', instance: '/readyz' });
    t.equal(down.headers['retry-after'], '5', 'tells the orchestrator when to look again');
    t.ok(elapsed < 4_000, `answered in ${elapsed} ms, not hanging`);
    const again = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(again.statusCode, 503, 'stays unavailable while the database is away');

    await proxy.start(); // same port: the pool's URL still points at it
    const recovered = await waitUntil(
      async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
      10_000,
    );
    t.ok(recovered, 'ready again without a restart');
    const back = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(back.statusCode, 200);
    t.match(back.headers['content-type'], /^application\/json/);
    t.same(back.json(), {
      status: 'ready',
      database: 'postgres',
      checks: { redis: 'not_configured' },
    });
  },
);

t.test(
  'a query in flight when Postgres goes away rejects without crashing the process',
  { skip: ENGINE !== 'postgres' ? 'needs Postgres (DATABASE_URL)' : false },
  async (t) => {
    const target = new URL(process.env.DATABASE_URL!);
    const proxy = new CuttableProxy(target.hostname, Number(target.port || 5432));
    await proxy.start();
    t.teardown(() => proxy.cut());
    const proxied = new URL(target);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const database = createPostgresDatabase({
      url: proxied.toString(),
      poolMax: 2,
      connectionTimeoutMs: 1_000,
      statementTimeoutMs: 5_000,
      idleTimeoutMs: 30_000,
    });
    t.teardown(() => database.close());

    const slowQuery = sql`select pg_sleep(3)`.execute(database.owner).then(
      () => 'completed',
      (err: Error) => err.message,
    );
    await waitUntil(async () => database.poolStats().idle === 0, 2_000);
    await new Promise((r) => setTimeout(r, 200)); // the query is now running on the server
    await proxy.cut();
    // An unhandled 'error' event on the client would end this process here (tap reports it).
    t.match(await slowQuery, /terminated|ECONNRESET|Connection/i, 'the query rejects');

    await proxy.start();
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.owner);
    t.same(rows, [{ one: 1 }], 'the pool serves again once the database is back');
  },
);

// Last in this file: it closes the file's database (its teardown tolerates a second close).
t.test(
  'a closed embedded database answers 503',
  { skip: ENGINE !== 'embedded' ? 'embedded engine only (Postgres is covered above)' : false },
  async (t) => {
    const database = await testDatabase();
    const app = await build(t, { database, env: { DB_CONNECTION_TIMEOUT_MS: '1000' } });

    const up = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(up.statusCode, 200);
    t.match(up.headers['content-type'], /^application\/json/);
    t.same(up.json(), {
      status: 'ready',
      database: 'embedded',
      checks: { redis: 'not_configured' },
    });

    await database.close();
    const started = Date.now();
    const down = await app.inject({ method: 'GET', url: '/readyz' });
    assertProblem(t, down, { status: 503, code: 'database_unavailable', instance: '/readyz' });
    t.equal(down.headers['retry-after'], '5');
    t.ok(Date.now() - started < 4_000, 'answered without hanging');
  },
);
