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
        url: scrubEmails(req.url),
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
