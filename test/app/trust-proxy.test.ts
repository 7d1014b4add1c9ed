import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

/**
 * TRUST_PROXY end to end: what `request.ip` becomes (the address the rate limiter counts and
 * the audit trail records) for each form of the setting, given an X-Forwarded-For chain. The
 * chain below is `client, edge` arriving from the load balancer 10.0.0.1.
 */
const PROXY = '10.0.0.1';
const CLIENT = '203.0.113.7';
const EDGE = '198.51.100.9';
const CHAIN = `${CLIENT}, ${EDGE}`;

async function appWith(t: Test, env: Record<string, string>): Promise<FastifyInstance> {
  return build(t, {
    env,
    configure: (app) => {
      app.get('/test/ip', { config: { auth: 'public', rateLimit: false } }, async (request) => ({
        ip: request.ip,
      }));
    },
  });
}

async function ipSeen(app: FastifyInstance, remoteAddress: string, forwardedFor?: string) {
  const res = await app.inject({
    url: '/test/ip',
    remoteAddress,
    headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
  });
  return (res.json() as { ip: string }).ip;
}

t.test('each TRUST_PROXY form picks the right client address', async (t) => {
  const cases: [string | undefined, string, string | undefined, string, string][] = [
    [undefined, PROXY, CHAIN, PROXY, 'unset: the peer, headers ignored'],
    ['false', PROXY, CHAIN, PROXY, 'false: the peer'],
    ['true', PROXY, CHAIN, CLIENT, 'true: the first address of the chain'],
    ['1', PROXY, CHAIN, EDGE, 'one hop: the address the load balancer saw'],
    ['2', PROXY, CHAIN, CLIENT, 'two hops: one more step back'],
    ['1', PROXY, undefined, PROXY, 'one hop, no header: the peer'],
    ['10.0.0.0/8', PROXY, CHAIN, EDGE, 'a CIDR: the first untrusted address from the right'],
    ['10.0.0.0/8', PROXY, `${CLIENT}, 10.0.0.2`, CLIENT, 'a CIDR: inner proxies skipped'],
    ['10.0.0.0/8', '192.0.2.50', CHAIN, '192.0.2.50', 'a CIDR: a direct client cannot spoof'],
    ['10.0.0.2, 10.0.0.1', PROXY, `${CLIENT}, 10.0.0.2`, CLIENT, 'a list of addresses'],
    ['10.0.0.2, 10.0.0.1', '10.0.0.3', CHAIN, '10.0.0.3', 'a list: others are not proxies'],
  ];
  const apps = new Map<string | undefined, FastifyInstance>();
  for (const [setting, peer, forwardedFor, expected, label] of cases) {
    let app = apps.get(setting);
    if (!app) {
      app = await appWith(t, setting === undefined ? {} : { TRUST_PROXY: setting });
      apps.set(setting, app);
    }
    t.equal(await ipSeen(app, peer, forwardedFor), expected, label);
  }
});

t.test('behind one proxy, every client has its own rate-limit bucket', async (t) => {
  const app = await appWith(t, { TRUST_PROXY: '1', RATE_LIMIT_MAX: '2' });
  const call = (client: string) =>
    app.inject({ url: '/v1', remoteAddress: PROXY, headers: { 'x-forwarded-for': client } });
  t.equal((await call('203.0.113.1')).statusCode, 200);
  t.equal((await call('203.0.113.1')).statusCode, 200);
  t.equal((await call('203.0.113.1')).statusCode, 429, 'the third call of one client is limited');
  t.equal((await call('203.0.113.2')).statusCode, 200, 'another client behind the same proxy');
  t.equal((await call('203.0.113.2')).statusCode, 200);
});

t.test('the audit trail records the client behind the proxy', async (t) => {
  const app = await appWith(t, { TRUST_PROXY: '1' });
  const owner = await signup(app);
  const res = await app.inject({
    method: 'PATCH',
    url: '/v1/account',
    remoteAddress: PROXY,
    headers: { ...bearer(owner.accessToken), 'x-forwarded-for': CHAIN },
    payload: { dpo: { email: 'privacy@example.com' } },
  });
  t.equal(res.statusCode, 200);
  const list = await app.inject({
    url: '/v1/audit-events?action=account.updated',
    headers: bearer(owner.accessToken),
  });
  t.equal(list.json().data[0].ip, EDGE);
});
