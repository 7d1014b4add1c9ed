import { createRequire } from 'node:module';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { LoggerOptions } from 'pino';

/**
 * Anything shaped like an email address inside a string (URLs, messages). Query strings
 * usually carry the `@` percent-encoded (`%40`, as URLSearchParams writes it), so match that too.
 */
const EMAIL_PATTERN = /[^\s@/?&=:;,"'<>]+(?:@|%40)[^\s@/?&=:;,"'<>]+\.[a-z]{2,}/gi;

/** Replaces email-looking substrings so no address reaches a log line. */
export function scrubEmails(text: string): string {
  return text.replace(EMAIL_PATTERN, '[email]');
}

const SECRET_KEYS = [
  'password',
  'currentPassword',
  'newPassword',
  'token',
  'accessToken',
  'refreshToken',
  'apiKey',
  'secret',
  'passphrase',
  'email',
  'firstName',
  'lastName',
  'name',
];

const SECRET_KEY_SET: ReadonlySet<string> = new Set(SECRET_KEYS);
const CENSORED = '[redacted]';

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** `record` with its secret keys censored, or `record` itself when it has none. */
function censorKeys(record: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key in record) {
    if (SECRET_KEY_SET.has(key) && record[key] !== undefined) {
      copy ??= { ...record };
      copy[key] = CENSORED;
    }
  }
  return copy ?? record;
}

/**
 * Censors credentials and personal data in a logged object: the keys above, at the top level
 * and one level down, in plain objects only (`req`, `res` and `err` go through the serializers
 * below, which let only listed fields through). pino's `redact` option does the same by path,
 * but its wildcard paths ran on every request's bindings as well as on every line, and cost
 * more than the rest of the access log; this is a set lookup per key.
 */
export function censorSecrets(object: Record<string, unknown>): Record<string, unknown> {
  let result = censorKeys(object);
  for (const key in result) {
    const value = result[key];
    if (!isPlainRecord(value)) continue;
    const censored = censorKeys(value);
    if (censored === value) continue;
    if (result === object) result = { ...object };
    result[key] = censored;
  }
  return result;
}

/**
 * A path segment shaped like a link token (256 random bits in base64url are 43 characters; a
 * UUID is 36 with dashes only at fixed places). Masks tokens in URLs that matched no route (a
 * link with a stray character or trailing slash), where there is no pattern to go by.
 */
const TOKEN_SHAPED_SEGMENT = /(?<=\/)[A-Za-z0-9_-]{40,}(?=[/?#]|$)/g;

function redactTokenShapes(url: string): string {
  const queryAt = url.indexOf('?');
  if (queryAt === -1) return url.replace(TOKEN_SHAPED_SEGMENT, CENSORED);
  return url.slice(0, queryAt).replace(TOKEN_SHAPED_SEGMENT, CENSORED) + url.slice(queryAt);
}

/** Path parameters that are credentials: a link token acts for whoever holds it. */
const SECRET_PARAM = /token|secret/i;

/**
 * The request URL with every path segment that the route declares as a secret parameter
 * (`:token`, `:resetToken`, …) replaced by `[redacted]`. It goes by the route's pattern and
 * parameter names, so a public link route added later is covered when its parameter is
 * named `token`.
 * Consent links stay valid for up to a year (Art. 7(3)); a log line must not be one.
 */
export function redactSecretParams(url: string, routePattern: string | undefined): string {
  if (!routePattern?.includes(':')) return redactTokenShapes(url);
  const patternSegments = routePattern.split('/');
  if (!patternSegments.some((s) => s.startsWith(':') && SECRET_PARAM.test(s))) {
    return redactTokenShapes(url);
  }
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const segments = path.split('/');
  for (const [i, segment] of patternSegments.entries()) {
    if (segment.startsWith(':') && SECRET_PARAM.test(segment) && i < segments.length) {
      segments[i] = CENSORED;
    }
  }
  // A wildcard route can put the secret past the pattern's own segments: mask all of those.
  if (patternSegments.at(-1) === '*' || segments.length !== patternSegments.length) {
    const first = patternSegments.findIndex((s) => s.startsWith(':') && SECRET_PARAM.test(s));
    for (let i = first; i < segments.length; i += 1) segments[i] = CENSORED;
  }
  return segments.join('/') + (queryAt === -1 ? '' : url.slice(queryAt));
}

function hasPrettyPrinter(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

export function loggerOptions(config: {
  LOG_LEVEL: string;
  LOG_PRETTY: boolean;
  NODE_ENV: string;
}): LoggerOptions {
  // Pretty output only for a person at a terminal; machines get one JSON object per line.
  const pretty =
    (config.LOG_PRETTY || (process.stdout.isTTY && config.NODE_ENV !== 'production')) &&
    hasPrettyPrinter();
  return {
    level: config.LOG_LEVEL,
    formatters: { log: censorSecrets },
    serializers: {
      // Child-logger bindings skip formatters.log but not serializers, which go by key.
      ...Object.fromEntries(SECRET_KEYS.map((key) => [key, () => CENSORED])),
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: scrubEmails(redactSecretParams(req.url, req.routeOptions?.url)),
        remoteAddress: req.ip,
      }),
      res: (reply: FastifyReply) => ({ statusCode: reply.statusCode }),
      err: (err: Error & { code?: string; statusCode?: number }) => ({
        type: err.name,
        message: scrubEmails(err.message ?? ''),
        code: err.code,
        statusCode: err.statusCode,
        stack: err.stack ? scrubEmails(err.stack) : undefined,
      }),
    },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard' } } }
      : {}),
  };
}
