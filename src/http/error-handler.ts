import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { isDatabaseUnavailable } from '../db/database.js';
import { AppError, type FieldError, ServiceUnavailableError } from '../errors.js';
import { PROBLEM_CONTENT_TYPE, type Problem, problemType } from './problem.js';

const CONTEXT_NAMES: Record<string, string> = {
  body: 'body',
  querystring: 'query',
  params: 'path',
  headers: 'header',
};

/** `body` + `/contacts/0/email` -> `body.contacts.0.email` */
export function fieldName(context: string | undefined, instancePath: string): string {
  const prefix = CONTEXT_NAMES[context ?? 'body'] ?? context ?? 'body';
  const rest = instancePath.split('/').filter(Boolean).join('.');
  return rest ? `${prefix}.${rest}` : prefix;
}

/** Fastify's own client errors, by code, mapped to our stable codes. */
const FASTIFY_CODES: Record<
  string,
  { status: number; code: string; title: string; detail: string }
> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: 'unsupported_media_type',
    title: 'Unsupported media type',
    detail: 'Send the body as application/json.',
  },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    code: 'payload_too_large',
    title: 'Payload too large',
    detail: 'The request body exceeds the size limit.',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    status: 400,
    code: 'empty_body',
    title: 'Bad request',
    detail: 'The content type is application/json but the body is empty.',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    code: 'malformed_json',
    title: 'Bad request',
    detail: 'The body is not valid JSON.',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    code: 'invalid_content_length',
    title: 'Bad request',
    detail: 'The Content-Length header does not match the body.',
  },
  FST_ERR_CTP_INVALID_CONTENT_TYPE: {
    status: 415,
    code: 'unsupported_media_type',
    title: 'Unsupported media type',
    detail: 'The Content-Type header is not valid.',
  },
  // Raised by the router before any route or hook runs (see frameworkErrorHandler).
  FST_ERR_BAD_URL: {
    status: 400,
    code: 'bad_url',
    title: 'Bad request',
    detail: 'The path is not a valid URL: a percent-encoded sequence does not decode to UTF-8.',
  },
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 414,
    code: 'uri_too_long',
    title: 'URI too long',
    detail: 'A segment of the path is longer than any identifier or token of this API.',
  },
};

/** What a fault on our side answers: never its internals. */
const INTERNAL_ERROR = {
  status: 500,
  code: 'internal_error',
  title: 'Internal server error',
  detail: 'Something went wrong on our side. Quote the request id when reporting it.',
};

/**
 * Fastify's `frameworkErrors`: the router's own refusals (a path that does not decode, a
 * parameter over `maxParamLength`) happen before routing, so neither the error handler nor the
 * `onRequest` hooks see them, and Fastify would answer in a JSON shape of its own, without the
 * security headers. This answers them as every other error: problem+json, headers, request id.
 */
export function frameworkErrorHandler(headers: Record<string, string>) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const known = error.code ? FASTIFY_CODES[error.code] : undefined;
    return sendProblem(request, reply, {
      // The only other one is FST_ERR_ASYNC_CONSTRAINT, a routing constraint of ours failing
      // (none are used): a fault on our side, not the caller's.
      ...(known ?? INTERNAL_ERROR),
      headers: { ...headers, 'x-request-id': String(request.id) },
    });
  };
}

type ProblemFields = { status: number; code: string; title: string; detail: string };

/** Node's own refusals, raised while it reads a request, before Fastify sees one. */
const CLIENT_ERRORS: Record<string, ProblemFields> = {
  // Node's requestTimeout (IMPORT_BODY_TIMEOUT_MS): only import uploads get this far, every
  // other body is bounded sooner by BODY_TIMEOUT_MS (see body-timeout.ts).
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'request_timeout',
    title: 'Request timeout',
    detail: 'The request did not arrive in time.',
  },
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'header_fields_too_large',
    title: 'Request header fields too large',
    detail: 'The request line and headers exceed 16 KiB.',
  },
};

const MALFORMED_REQUEST: ProblemFields = {
  status: 400,
  code: 'malformed_request',
  title: 'Bad request',
  detail: 'The request is not valid HTTP/1.1.',
};

/**
 * Fastify's `clientErrorHandler`: what Node refuses while reading a request (headers over
 * 16 KiB, a request that takes longer than Node's requestTimeout, bytes that are not HTTP)
 * never becomes a Fastify request, and was answered in a shape of Fastify's own without the
 * security headers. This writes the same problem+json as every other error, with the headers
 * and a request id for the log line, and closes the connection (its state is unknown).
 */
export function clientErrorHandler(headers: Record<string, string>) {
  const fixed = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return function onClientError(
    this: FastifyInstance,
    err: Error & { code?: string },
    socket: Socket,
  ) {
    // A reset connection has nobody to answer; a response already under way cannot be replaced.
    const response = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    if (!socket.writable || response?.headersSent) {
      socket.destroy();
      return;
    }
    const problem = (err.code ? CLIENT_ERRORS[err.code] : undefined) ?? MALFORMED_REQUEST;
    const requestId = randomUUID();
    const body = JSON.stringify({ type: problemType(problem.code), ...problem, requestId });
    this.log.info({ requestId, code: err.code, status: problem.status }, 'client error');
    socket.write(
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n` +
        `content-type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestId}\r\n${fixed}connection: close\r\n\r\n${body}`,
    );
    socket.destroySoon();
  };
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  p: Omit<Problem, 'type' | 'instance' | 'requestId'> & { headers?: Record<string, string> },
) {
  const { headers, ...rest } = p;
  if (headers) reply.headers(headers);
  // Answered before the body has fully arrived (a refusal, or the body timeout): close the
  // connection after the answer, or Node keeps reading and discarding the rest of the body
  // for as long as the client cares to trickle it.
  if (request.raw.complete === false) reply.header('connection', 'close');
  const body: Problem = {
    type: problemType(p.code),
    ...rest,
    instance: request.url.split('?')[0],
    requestId: String(request.id),
  };
  return reply.code(p.status).type(PROBLEM_CONTENT_TYPE).send(body);
}

function sendAppError(request: FastifyRequest, reply: FastifyReply, error: AppError) {
  // A 503 is an expected state (draining, the database away) logged where it starts, not once
  // per request it turns away.
  if (error.status >= 500 && error.status !== 503) {
    request.log.error({ err: error }, 'request failed');
  }
  return sendProblem(request, reply, {
    status: error.status,
    code: error.code,
    title: error.title,
    detail: error.message,
    errors: error.errors,
    headers: error.headers,
  });
}

/** The one place that turns a failure into an HTTP answer. */
export function registerErrorHandler(app: FastifyInstance) {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (isDatabaseUnavailable(error)) {
      // Not the caller's fault nor a bug: the database is away (unreachable, frozen, restarting,
      // timed out). 503 + Retry-After says "try again"; the database module logs the outage
      // once, so each request only notes it at debug.
      request.log.debug({ err: error }, 'database unavailable');
      return sendAppError(
        request,
        reply,
        new ServiceUnavailableError(
          'The database is not reachable. Try again shortly.',
          'database_unavailable',
        ),
      );
    }
    if (error instanceof AppError) return sendAppError(request, reply, error);

    if (hasZodFastifySchemaValidationErrors(error)) {
      const errors: FieldError[] = error.validation.map((issue) => ({
        field: fieldName(error.validationContext, issue.instancePath),
        message: issue.message ?? 'is invalid',
        code: issue.keyword,
      }));
      return sendProblem(request, reply, {
        status: 400,
        code: 'validation_failed',
        title: 'Validation failed',
        detail: `Invalid ${errors.map((e) => e.field).join(', ')}.`,
        errors,
      });
    }

    const known = error.code ? FASTIFY_CODES[error.code] : undefined;
    if (known) return sendProblem(request, reply, known);
    if (error instanceof SyntaxError && error.statusCode === 400) {
      return sendProblem(request, reply, FASTIFY_CODES.FST_ERR_CTP_INVALID_JSON_BODY!);
    }

    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Some other client error raised by Fastify or a plugin: keep its status, not its internals.
      return sendProblem(request, reply, {
        status,
        code: (error.code ?? 'bad_request').toLowerCase(),
        title: 'Bad request',
        detail: error.message,
      });
    }

    request.log.error({ err: error }, 'unexpected error');
    return sendProblem(request, reply, INTERNAL_ERROR);
  });
}
