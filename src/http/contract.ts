import type { FastifyInstance } from 'fastify';
import type { ZodType } from 'zod';
import { problemResponses } from './problem.js';

/**
 * What the contract says about answers beyond their bodies: the response headers this API
 * sends, the documentation of each route's success answers, and the error statuses every
 * route can answer because of the machinery in front of its handler.
 */

/** The response headers of the API, as OpenAPI header objects (`components.headers`). */
export const RESPONSE_HEADERS = {
  ETag: {
    description: 'The version of the resource; send it back in `If-Match` to change it safely.',
    required: true,
    schema: { type: 'string', example: '"v3"' },
  },
  Location: {
    description: 'The path of the resource this request created.',
    required: true,
    schema: { type: 'string', example: '/v1/contacts/3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4' },
  },
  'Idempotent-Replayed': {
    description:
      '`true` when this is the stored answer to an earlier request with the same ' +
      '`Idempotency-Key`: nothing was done again.',
    required: false,
    schema: { type: 'string', enum: ['true'] },
  },
  'Retry-After': {
    description: 'Seconds to wait before trying again.',
    required: true,
    schema: { type: 'integer', minimum: 0, example: 30 },
  },
  'X-RateLimit-Limit': {
    description:
      'Requests allowed per window for this client; on a 429, the limit of the counter that ' +
      'refused the request.',
    required: true,
    schema: { type: 'integer', minimum: 0, example: 600 },
  },
  'X-RateLimit-Remaining': {
    description: 'Requests left in the current window.',
    required: true,
    schema: { type: 'integer', minimum: 0, example: 599 },
  },
  'X-RateLimit-Reset': {
    description: 'Seconds until the current window ends.',
    required: true,
    schema: { type: 'integer', minimum: 0, example: 60 },
  },
  'WWW-Authenticate': {
    description: 'How to authenticate: `Bearer` (an access token, or an API key).',
    required: true,
    schema: { type: 'string', example: 'Bearer' },
  },
} as const;

export type ResponseHeaderName = keyof typeof RESPONSE_HEADERS;

/** The rate-limit headers every answer of a rate-limited route carries. */
export const RATE_LIMIT_HEADERS = [
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
] as const satisfies readonly ResponseHeaderName[];

/** What a success answer of a route means, and the headers it carries besides the common ones. */
export interface AnswerDoc {
  description: string;
  headers?: readonly ResponseHeaderName[];
}

declare module 'fastify' {
  interface FastifySchema {
    /**
     * The success answers by status, for the contract: a description, and the headers the
     * answer carries (ETag, Location). Rate-limit and Idempotent-Replayed headers are added
     * where they apply, from the route's own configuration.
     */
    answers?: Record<number, AnswerDoc>;
    /**
     * A body the handler reads as a stream, so the route has no `body` schema to validate it:
     * its media types and their schemas, for the contract only.
     */
    streamedBody?: Record<string, ZodType>;
  }
}

/** Methods whose body Fastify reads (GET and HEAD bodies are never parsed). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

interface RouteShape {
  method: string | string[];
  url: string;
  schema?: {
    hide?: boolean;
    body?: unknown;
    querystring?: unknown;
    params?: unknown;
    headers?: unknown;
    response?: unknown;
  };
  config?: { auth?: unknown; rateLimit?: unknown };
}

/**
 * The error statuses a route can answer whatever its handler does, each because of one
 * mechanism in front of it:
 * - 400: schema validation, or a body that is not valid JSON;
 * - 401, 403: the authentication guard (routes that are not public);
 * - 408, 413, 415: the body deadline, the body limit and the content-type parsers (methods
 *   with a body, even routes that expect none: a client may send one);
 * - 414: the router's limit on a path parameter (`MAX_PATH_SEGMENT_LENGTH`);
 * - 429: the global rate limiter (every route that does not opt out);
 * - 500, 503: a fault on our side, the database away.
 */
export function commonErrorStatuses(route: RouteShape): number[] {
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) =>
    m.toUpperCase(),
  );
  const schema = route.schema ?? {};
  const statuses = new Set<number>([500, 503]);
  const hasBody = methods.some((method) => BODY_METHODS.has(method));
  if (hasBody) for (const status of [400, 408, 413, 415]) statuses.add(status);
  if (schema.body || schema.querystring || schema.params || schema.headers) statuses.add(400);
  if (route.url.includes(':')) statuses.add(414);
  const auth = route.config?.auth;
  if (auth !== undefined && auth !== 'public') {
    statuses.add(401);
    statuses.add(403);
  }
  if (route.config?.rateLimit !== false) statuses.add(429);
  return [...statuses].sort((a, b) => a - b);
}

/**
 * Adds the common error statuses (see `commonErrorStatuses`) to every documented route's
 * response schemas, so the contract lists every status the app can send and the problem body
 * is checked on the way out like any other answer. Must be registered before the routes.
 */
export function declareCommonResponses(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as RouteShape['schema'];
    if (!schema || schema.hide || !schema.response) return;
    const response = schema.response as Record<string, unknown>;
    const missing = commonErrorStatuses(route as RouteShape).filter(
      (status) => !(String(status) in response),
    );
    if (missing.length === 0) return;
    route.schema = { ...schema, response: { ...response, ...problemResponses(...missing) } };
  });
}
