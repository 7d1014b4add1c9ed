import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpServerOptions } from 'node:http';
import { type FastifyServerOptions, LogController } from 'fastify';
import type { Logger } from 'pino';
import { type Config, trustProxyOption } from '../config.js';
import { loggerOptions } from '../logger.js';
import { clientErrorHandler, frameworkErrorHandler } from './error-handler.js';
import { MAX_PATH_SEGMENT_LENGTH } from './schemas.js';

/** Incoming request ids are echoed only when they are short and harmless. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export type ServerOptions = FastifyServerOptions & {
  http?: HttpServerOptions;
  https?: (HttpServerOptions & { key: Buffer; cert: Buffer }) | null;
};

/**
 * Fastify's and Node's server options: timeouts, limits, proxy trust, logging, TLS.
 * `headers` (the security headers) go on the answers Fastify gives before any hook runs.
 */
export function serverOptions(
  config: Config,
  logger: Logger | false | undefined,
  headers: Record<string, string>,
): ServerOptions {
  const http: HttpServerOptions = {
    // Slow headers get no more time than a slow body (Node's default is 60 s). Node also
    // ignores a requestTimeout shorter than headersTimeout, which this rules out.
    headersTimeout: Math.min(60_000, config.BODY_TIMEOUT_MS),
    // Node checks both on an interval (30 s by default): a tenth of the request timeout keeps
    // a short one from overshooting by far, and changes nothing for the hour.
    connectionsCheckingInterval:
      config.IMPORT_BODY_TIMEOUT_MS > 0
        ? Math.min(30_000, Math.max(100, Math.floor(config.IMPORT_BODY_TIMEOUT_MS / 10)))
        : 30_000,
  };
  const options: ServerOptions = {
    // One log line per request, written by the access log's onResponse hook (with scrubbed URL).
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    bodyLimit: config.BODY_LIMIT_BYTES,
    http,
    // Every body but an import's is bounded sooner, per route (registerBodyTimeout).
    requestTimeout: config.IMPORT_BODY_TIMEOUT_MS,
    connectionTimeout: config.CONNECTION_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    trustProxy: trustProxyOption(config.TRUST_PROXY),
    return503OnClosing: true,
    frameworkErrors: frameworkErrorHandler(headers),
    clientErrorHandler: clientErrorHandler(headers),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PATH_SEGMENT_LENGTH },
  };
  if (logger === false) options.logger = false;
  else if (logger) options.loggerInstance = logger;
  else options.logger = loggerOptions(config);
  if (config.TLS_CERT_FILE && config.TLS_KEY_FILE) {
    options.https = {
      ...http,
      cert: readFileSync(config.TLS_CERT_FILE),
      key: readFileSync(config.TLS_KEY_FILE),
    };
  }
  return options;
}
