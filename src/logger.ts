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

/**
 * Keys pino censors, at the top level of a log object and one level down. The req/res/err
 * serializers below already let only listed fields through (no headers, no bodies); these
 * paths catch credentials or personal data passed in a logged object. Kept short on purpose:
 * every path costs time on every log line.
 */
export const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`]);

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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
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
