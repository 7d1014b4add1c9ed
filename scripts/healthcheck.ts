/**
 * The container's HEALTHCHECK (`node dist/scripts/healthcheck.js`): exits 0 when this
 * machine's service answers `GET /healthz` with 200 within 4 s, 1 otherwise. The slim image has
 * no curl, and this reads the port and TLS settings the way the service does.
 */
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { loadConfig } from '../src/config.js';

const TIMEOUT_MS = 4_000;

function probeHost(host: string): string {
  // Listening on every interface: ask over loopback.
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function check(): Promise<number> {
  const config = loadConfig();
  const tls = Boolean(config.TLS_CERT_FILE);
  const url = `${tls ? 'https' : 'http'}://${probeHost(config.HOST)}:${config.PORT}/healthz`;
  return new Promise((resolve) => {
    const options = {
      timeout: TIMEOUT_MS,
      // The certificate names the public host, not the loopback address probed here.
      ...(tls ? { rejectUnauthorized: false } : {}),
    };
    const request = (tls ? httpsGet : httpGet)(url, options, (response) => {
      response.resume();
      if (response.statusCode !== 200) process.stderr.write(`${url}: ${response.statusCode}\n`);
      resolve(response.statusCode === 200 ? 0 : 1);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    request.on('error', (err) => {
      process.stderr.write(`${url}: ${err.message}\n`);
      resolve(1);
    });
  });
}

check().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`healthcheck: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
