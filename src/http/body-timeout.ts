import { finished, PassThrough, type Readable } from 'node:stream';
import type { FastifyInstance, preParsingHookHandler } from 'fastify';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The body may take up to IMPORT_BODY_TIMEOUT_MS to arrive instead of BODY_TIMEOUT_MS: for
     * uploads that are processed while they stream in (bulk imports).
     */
    longBody?: boolean;
  }
}

/** Methods whose body Fastify reads; GET and HEAD bodies are never parsed. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Bounds the time to receive a request body on every route that reads one, except the
 * `longBody` uploads. Node's `requestTimeout` is one value for the whole server, and it must be
 * long enough for an import; without this, any route let a client trickle a body for that long
 * and hold a connection (and its memory) the whole time.
 *
 * Attached per route when routes are registered, so bodiless routes (the GETs) pay nothing.
 * A body still arriving (on a socket, nearly always: Fastify reaches this hook before Node has
 * parsed the body) is read through a stream with a deadline, about 15 µs measured, against the
 * milliseconds of any route that reads a body; past the deadline the parser receives a 408
 * problem, and the answer closes the connection (see sendProblem). Returns the hook, for the
 * not-found handler (which reads bodies too, but is no route).
 */
export function registerBodyTimeout(
  app: FastifyInstance,
  timeoutMs: number,
): preParsingHookHandler {
  const deadline: preParsingHookHandler = (request, _reply, payload, done) => {
    // `complete` is undefined on injected requests, whose body is all there.
    if (request.raw.complete !== false) {
      done(null, payload);
      return;
    }
    done(null, withDeadline(payload, timeoutMs));
  };
  app.addHook('onRoute', (route) => {
    if (route.config?.longBody) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((method) => BODY_METHODS.has(method.toUpperCase()))) return;
    const existing = route.preParsing;
    route.preParsing = existing
      ? [deadline, ...(Array.isArray(existing) ? existing : [existing])]
      : [deadline];
  });
  return deadline;
}

/**
 * The body as a stream that fails with a 408 if it has not ended within `timeoutMs`. The
 * request itself is not destroyed (that would destroy the socket before the answer): it is
 * drained and the connection closes after the answer.
 */
function withDeadline(payload: Readable, timeoutMs: number): Readable {
  const guarded = new PassThrough();
  // The parser listens while it reads; once it has given up (e.g. the size limit), the
  // deadline's error has nobody to tell and must not become an uncaught exception.
  guarded.on('error', () => {});
  const timer = setTimeout(() => {
    payload.unpipe(guarded);
    payload.resume();
    guarded.destroy(
      new AppError(
        408,
        'request_timeout',
        'Request timeout',
        `The request body did not arrive within ${timeoutMs} ms.`,
      ),
    );
  }, timeoutMs);
  // Ended, or aborted by the client: the parser sees an abort as it would on the request itself.
  finished(payload, (err) => {
    clearTimeout(timer);
    if (err) guarded.destroy(err);
  });
  payload.pipe(guarded);
  return guarded;
}
