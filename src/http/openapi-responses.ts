import type { FieldError } from '../errors.js';
import {
  type AnswerDoc,
  RATE_LIMIT_HEADERS,
  RESPONSE_HEADERS,
  type ResponseHeaderName,
} from './contract.js';
import { PROBLEM_CONTENT_TYPE, PROBLEM_DESCRIPTIONS, problemType } from './problem.js';

/**
 * The last step of building the contract: every answer gets its description and its headers,
 * and every error answer an example of its own status. Problem answers with the standard
 * description become references to `components.responses`, so each status is written once.
 */

const PROBLEM_REF = '#/components/schemas/Problem';
/** Key the route transform gives an operation for its `answers`; removed here. */
export const ANSWERS_KEY = 'x-custodian-answers';

/** Component names of the problem answers, by status. */
const RESPONSE_NAMES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  408: 'RequestTimeout',
  409: 'Conflict',
  410: 'Gone',
  412: 'PreconditionFailed',
  413: 'ContentTooLarge',
  414: 'UriTooLong',
  415: 'UnsupportedMediaType',
  422: 'UnprocessableContent',
  429: 'TooManyRequests',
  500: 'InternalServerError',
  503: 'ServiceUnavailable',
};

/** Headers every problem answer of a status carries. */
const PROBLEM_HEADERS: Record<number, readonly ResponseHeaderName[]> = {
  401: ['WWW-Authenticate'],
  429: ['Retry-After', ...RATE_LIMIT_HEADERS],
  503: ['Retry-After'],
};

const EXAMPLE_REQUEST_ID = 'a1b2c3d4-0000-4000-8000-000000000000';

/** One example per status, as the service writes it. */
const PROBLEM_EXAMPLES: Record<
  number,
  { code: string; title: string; detail: string; errors?: FieldError[] }
> = {
  400: {
    code: 'validation_failed',
    title: 'Validation failed',
    detail: 'Invalid body.email.',
    errors: [{ field: 'body.email', message: 'Invalid email address', code: 'invalid_format' }],
  },
  401: {
    code: 'unauthorized',
    title: 'Unauthorized',
    detail: 'Send a bearer token or an X-API-Key header.',
  },
  403: {
    code: 'missing_scope',
    title: 'Forbidden',
    detail: 'The API key lacks the scope contacts:write.',
  },
  404: { code: 'not_found', title: 'Not found', detail: 'The resource does not exist.' },
  405: {
    code: 'method_not_allowed',
    title: 'Method not allowed',
    detail: 'PUT is not allowed here; use GET, PATCH.',
  },
  408: {
    code: 'request_timeout',
    title: 'Request timeout',
    detail: 'The request body did not arrive in time.',
  },
  409: {
    code: 'contact_exists',
    title: 'Conflict',
    detail: 'A contact with this email already exists.',
  },
  410: { code: 'token_expired', title: 'Gone', detail: 'The link has expired.' },
  412: {
    code: 'precondition_failed',
    title: 'Precondition failed',
    detail: 'The resource changed since you read it (If-Match does not match).',
  },
  413: {
    code: 'payload_too_large',
    title: 'Payload too large',
    detail: 'The request body exceeds the size limit.',
  },
  414: {
    code: 'uri_too_long',
    title: 'URI too long',
    detail: 'A segment of the path is longer than any identifier or token of this API.',
  },
  415: {
    code: 'unsupported_media_type',
    title: 'Unsupported media type',
    detail: 'Send the body as application/json.',
  },
  422: {
    code: 'idempotency_key_reused',
    title: 'Unprocessable content',
    detail: 'This Idempotency-Key was used with another request; use a new key for a new request.',
  },
  429: {
    code: 'rate_limited',
    title: 'Too many requests',
    detail: 'Rate limit of 600 requests per 1 minute exceeded; retry after 42 s.',
  },
  500: {
    code: 'internal_error',
    title: 'Internal server error',
    detail: 'Something went wrong on our side. Quote the request id when reporting it.',
  },
  503: {
    code: 'database_unavailable',
    title: 'Service unavailable',
    detail: 'The database is not reachable. Try again shortly.',
  },
};

function problemExample(status: number, path: string) {
  const example = PROBLEM_EXAMPLES[status];
  if (!example) throw new Error(`no problem example for status ${status}`);
  const { code, title, detail, errors } = example;
  return {
    type: problemType(code),
    title,
    status,
    detail,
    instance: path,
    code,
    requestId: EXAMPLE_REQUEST_ID,
    ...(errors ? { errors } : {}),
  };
}

type Json = Record<string, unknown>;

function headerRefs(names: readonly ResponseHeaderName[]): Json | undefined {
  if (names.length === 0) return undefined;
  return Object.fromEntries(
    names.map((name) => [name, { $ref: `#/components/headers/${name}` }]),
  ) as Json;
}

function isProblemOnly(response: Json): boolean {
  const content = response.content as Record<string, { schema?: Json }> | undefined;
  if (!content) return false;
  const types = Object.keys(content);
  return (
    types.length === 1 &&
    types[0] === PROBLEM_CONTENT_TYPE &&
    content[PROBLEM_CONTENT_TYPE]?.schema?.$ref === PROBLEM_REF
  );
}

function problemResponse(status: number, description: string, examplePath: string): Json {
  const headers = headerRefs(PROBLEM_HEADERS[status] ?? []);
  return {
    description,
    ...(headers ? { headers } : {}),
    content: {
      [PROBLEM_CONTENT_TYPE]: {
        schema: { $ref: PROBLEM_REF },
        example: problemExample(status, examplePath),
      },
    },
  };
}

/**
 * Finishes the responses of every operation (see the module comment), and adds the header and
 * response components they reference. Throws on a problem status it has no example for, so a
 * new status cannot enter the contract undocumented.
 */
export function finishResponses<D extends object>(document: D): D {
  const doc = document as Json & { paths?: Record<string, Record<string, Json>> };
  const usedResponses = new Set<number>();
  const usedHeaders = new Set<ResponseHeaderName>();
  const noteHeaders = (names: readonly ResponseHeaderName[]) => {
    for (const name of names) usedHeaders.add(name);
  };

  for (const [path, operations] of Object.entries(doc.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      const answers = (operation[ANSWERS_KEY] ?? {}) as Record<string, AnswerDoc>;
      delete operation[ANSWERS_KEY];
      const responses = (operation.responses ?? {}) as Record<string, Json>;
      const rateLimited = '429' in responses;
      const parameters = (operation.parameters ?? []) as { in?: string; name?: string }[];
      const idempotent = parameters.some(
        (p) => p.in === 'header' && p.name?.toLowerCase() === 'idempotency-key',
      );
      const finished: [string, Json][] = [];
      for (const [statusText, response] of Object.entries(responses)) {
        const status = Number(statusText);
        if (status >= 400 && isProblemOnly(response)) {
          const description = String(response.description);
          if (description === PROBLEM_DESCRIPTIONS[status] && RESPONSE_NAMES[status]) {
            usedResponses.add(status);
            noteHeaders(PROBLEM_HEADERS[status] ?? []);
            finished.push([
              statusText,
              { $ref: `#/components/responses/${RESPONSE_NAMES[status]}` },
            ]);
          } else {
            noteHeaders(PROBLEM_HEADERS[status] ?? []);
            finished.push([statusText, problemResponse(status, description, path)]);
          }
          continue;
        }
        if (status >= 400) {
          // An error with another media type besides, or instead (an HTML page for a person):
          // the problem document, if any, gets its example; the other media types stay.
          const content = { ...((response.content ?? {}) as Record<string, Json>) };
          const problem = content[PROBLEM_CONTENT_TYPE];
          if (problem) {
            content[PROBLEM_CONTENT_TYPE] = { ...problem, example: problemExample(status, path) };
          }
          const names = PROBLEM_HEADERS[status] ?? [];
          noteHeaders(names);
          const headers = headerRefs(names);
          finished.push([
            statusText,
            { description: response.description, ...(headers ? { headers } : {}), content },
          ]);
          continue;
        }
        const answer = answers[statusText];
        const names: ResponseHeaderName[] = [...(answer?.headers ?? [])];
        if (status < 300 && rateLimited) names.push(...RATE_LIMIT_HEADERS);
        if (status < 300 && idempotent) names.push('Idempotent-Replayed');
        noteHeaders(names);
        const headers = headerRefs(names);
        const { description, content, ...rest } = response;
        finished.push([
          statusText,
          {
            description:
              answer?.description ??
              (description === 'Default Response' ? operation.summary : description),
            ...rest,
            ...(headers ? { headers } : {}),
            ...(content ? { content } : {}),
          },
        ]);
      }
      finished.sort(([a], [b]) => Number(a) - Number(b));
      operation.responses = Object.fromEntries(finished);
    }
  }

  const components = (doc.components ?? {}) as Json;
  const responseComponents = Object.fromEntries(
    [...usedResponses]
      .sort((a, b) => a - b)
      .map((status) => [
        RESPONSE_NAMES[status],
        problemResponse(status, PROBLEM_DESCRIPTIONS[status] ?? 'Error', '/v1/example'),
      ]),
  );
  const headerComponents = Object.fromEntries(
    (Object.keys(RESPONSE_HEADERS) as ResponseHeaderName[])
      .filter((name) => usedHeaders.has(name))
      .map((name) => [name, RESPONSE_HEADERS[name]]),
  );
  return {
    ...doc,
    components: { ...components, responses: responseComponents, headers: headerComponents },
  } as D;
}
