import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { build } from '../helper.js';

/**
 * /docs as a browser meets it: a policy that lets it load on any host over plain HTTP, and
 * Custodian's branding. The browser itself is in test/browser/docs.test.ts.
 */

const UPGRADE = /(^|;)\s*upgrade-insecure-requests\s*(;|$)/;
const DOCS_URLS = ['/docs/', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-ui.css'];

function cspOf(res: { headers: Record<string, unknown> }): string {
  return String(res.headers['content-security-policy']);
}

async function docs(app: FastifyInstance, url: string, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'GET', url, headers });
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`);
  return res;
}

t.test('over plain HTTP the docs policy does not upgrade requests to HTTPS', async (t) => {
  const app = await build(t);
  for (const url of DOCS_URLS) {
    const res = await docs(app, url);
    const csp = cspOf(res);
    t.notMatch(csp, UPGRADE, `${url}: assets stay on http:// (${csp})`);
    t.match(csp, /(^|;)\s*script-src 'self'(;|$)/, `${url}: only its own scripts`);
    t.match(csp, /(^|;)\s*style-src 'self'(;|$)/, `${url}: no inline styles`);
    t.match(csp, /(^|;)\s*object-src 'none'/);
    t.match(csp, /(^|;)\s*frame-ancestors 'none'/);
  }
  // A client's X-Forwarded-Proto means nothing without a trusted proxy.
  const spoofed = await docs(app, '/docs/', { 'x-forwarded-proto': 'https' });
  t.notMatch(cspOf(spoofed), UPGRADE, 'an untrusted X-Forwarded-Proto is ignored');
  // The API keeps its own policy.
  const api = await app.inject({ method: 'GET', url: '/v1' });
  t.equal(cspOf(api), "default-src 'none';frame-ancestors 'none'");
});

t.test('behind a trusted proxy the policy follows the protocol the client used', async (t) => {
  const app = await build(t, { env: { TRUST_PROXY: 'true' } });
  for (const url of DOCS_URLS) {
    const https = await docs(app, url, { 'x-forwarded-proto': 'https' });
    t.match(cspOf(https), UPGRADE, `${url}: the client used https`);
    const http = await docs(app, url, { 'x-forwarded-proto': 'http' });
    t.notMatch(cspOf(http), UPGRADE, `${url}: the client used http`);
  }
});

/** A certificate needs the openssl command; without it the TLS case is skipped, saying so. */
function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test(
  'served over TLS by the service itself, the policy upgrades requests',
  { skip: hasOpenssl() ? false : 'openssl is not installed: no certificate to serve TLS with' },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'custodian-tls-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=custodian.test',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    const app = await build(t, { env: { TLS_CERT_FILE: cert, TLS_KEY_FILE: key } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as { port: number };
    const csp = await new Promise<string>((resolve, reject) => {
      get({ host: '127.0.0.1', port, path: '/docs/', rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(String(res.headers['content-security-policy']));
      }).on('error', reject);
    });
    t.match(csp, UPGRADE, `over TLS (${csp})`);
  },
);

t.test('the page is branded Custodian, with no Fastify or Swagger logo', async (t) => {
  const app = await build(t);
  const page = await docs(app, '/docs/');
  t.match(page.body, /<title>Custodian API<\/title>/);
  t.match(page.body, /href="\.\/static\/theme\/favicon\.svg"/, 'our favicon');
  t.notMatch(page.body, /favicon-(16|32)x\1\.png/, 'not Swagger’s favicon');
  t.match(page.body, /href="\.\/static\/theme\/custodian\.css"/, 'our header bar');

  const favicon = await docs(app, '/docs/static/theme/favicon.svg');
  t.match(favicon.headers['content-type'], /^image\/svg\+xml/);
  t.match(favicon.body, /^<svg /);

  const css = await docs(app, '/docs/static/theme/custodian.css');
  const logo = /url\("data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)"\)/.exec(css.body);
  t.ok(logo, 'the header bar draws the logo');
  t.match(Buffer.from(logo?.[1] ?? '', 'base64').toString(), />Custodian<\/text>/);

  // The plugin's default logo is Fastify's; the initializer would embed it as base64.
  const require = createRequire(import.meta.url);
  const pluginDir = dirname(require.resolve('@fastify/swagger-ui/package.json'));
  const fastifyLogo = readFileSync(join(pluginDir, 'static/logo.svg')).toString('base64');
  const initializer = await docs(app, '/docs/static/swagger-initializer.js');
  t.notOk(initializer.body.includes(fastifyLogo.slice(0, 200)), 'the Fastify logo is not embedded');
  // Swagger UI's top bar draws its logo as inline SVG with a <style> element, which the
  // policy refuses: the page uses the layout without the bar.
  t.match(initializer.body, /"layout":"BaseLayout"/);
});

t.test('a PUBLIC_BASE_URL on another origin may be called from the page', async (t) => {
  const app = await build(t, { env: { PUBLIC_BASE_URL: 'https://api.example.com/' } });
  const csp = cspOf(await docs(app, '/docs/'));
  t.match(csp, /(^|;)\s*connect-src 'self' https:\/\/api\.example\.com(;|$)/, csp);
});
