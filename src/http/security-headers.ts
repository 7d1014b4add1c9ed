import fp from 'fastify-plugin';
import helmet from 'helmet';

/**
 * The API's security headers, computed once at start-up with helmet's own rules and then set
 * as one fixed object on every response. Running helmet's middleware per request (what
 * @fastify/helmet does) cost about 14% of a trivial request's CPU in our benchmark.
 * The HTML pages (/docs, the public link pages) replace the Content-Security-Policy with
 * their own.
 *
 * Kept: what protects a JSON API and its one HTML page (OWASP's REST Security Cheat Sheet):
 * HSTS, CSP, `nosniff`, `X-Frame-Options`, `Cross-Origin-Resource-Policy`, `Referrer-Policy`,
 * `Cache-Control: no-store`. Left out: helmet's headers for old browsers rendering documents
 * (`X-XSS-Protection`, `X-Download-Options`, `X-DNS-Prefetch-Control`,
 * `X-Permitted-Cross-Domain-Policies`, `Origin-Agent-Cluster`, `Cross-Origin-Opener-Policy`):
 * they protect nothing here, and every header is validated and written on every response.
 */
export function securityHeaders(options: { hstsMaxAgeSeconds: number }): Record<string, string> {
  const headers: Record<string, string> = {};
  const fakeResponse = {
    setHeader(name: string, value: string | number | string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  const middleware = helmet({
    // An API answers JSON: nothing may be loaded or framed.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
    },
    strictTransportSecurity: { maxAge: options.hstsMaxAgeSeconds, includeSubDomains: true },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    xFrameOptions: { action: 'deny' },
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  });
  let failure: unknown;
  // helmet calls next synchronously; it never reads the request.
  middleware({} as never, fakeResponse as never, (err?: unknown) => {
    failure = err;
  });
  if (failure) throw failure;
  // Personal data must not linger in shared caches.
  headers['cache-control'] = 'no-store';
  return headers;
}

/**
 * Sets the security headers and echoes the request id (`x-request-id`, see server-options.ts)
 * on every response, errors included. An `onRequest` hook that runs first, so even a request
 * the rate limiter or the authentication turns away carries them. Not encapsulated.
 */
export const responseHeaders = fp<{ headers: Record<string, string> }>(
  async (app, { headers }) => {
    app.addHook('onRequest', (request, reply, done) => {
      reply.headers(headers);
      reply.header('x-request-id', request.id);
      done();
    });
  },
  { name: 'custodian-response-headers' },
);
