import { z } from 'zod';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9457 problem details, plus a stable `code`, the request id and per-field errors. */
export const ProblemSchema = z
  .object({
    type: z.string().describe('A URI identifying the problem type; stable per `code`.'),
    title: z.string().describe('Short summary of the problem type.'),
    status: z.number().int().describe('The HTTP status code.'),
    detail: z.string().optional().describe('What went wrong in this occurrence.'),
    instance: z.string().optional().describe('The request path this problem occurred on.'),
    code: z.string().describe('Stable machine-readable error code, e.g. `validation_failed`.'),
    requestId: z.string().describe('The request id (also in the `X-Request-Id` header).'),
    errors: z
      .array(
        z.object({
          field: z.string().describe('The offending field, e.g. `body.email`.'),
          message: z.string(),
          code: z.string(),
        }),
      )
      .optional()
      .describe('One entry per invalid field (validation errors only).'),
  })
  .meta({
    id: 'Problem',
    description: 'An error, as RFC 9457 problem details (`application/problem+json`).',
  });

export type Problem = z.infer<typeof ProblemSchema>;

export function problemType(code: string): string {
  return `urn:custodian:problem:${code}`;
}

/** What each error status means on this API: the description of its response in the contract. */
export const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or has invalid fields.',
  401: 'Authentication is missing or invalid.',
  403: 'The caller may not do this.',
  404: 'The resource does not exist (or belongs to another account).',
  405: 'The method is not allowed on this path.',
  408: 'The request body did not arrive in time.',
  409: 'The request conflicts with the current state.',
  410: 'The resource is gone (an expired link).',
  412: 'The `If-Match` version is stale.',
  413: 'The request body is too large.',
  414: 'A path segment is longer than any identifier or token of this API (200 characters).',
  415: 'The content type is not supported.',
  422: 'The request is well-formed but cannot be processed.',
  429: 'Too many requests; retry after `Retry-After` seconds.',
  500: 'An unexpected error; nothing internal is disclosed.',
  503: 'The service is unavailable (the database is away); retry after `Retry-After` seconds.',
};

/** Response-schema entries for the given error statuses, all rendered as problem+json. */
export function problemResponses<S extends number>(...statuses: S[]) {
  const out = {} as Record<
    S,
    { description: string; content: Record<string, { schema: typeof ProblemSchema }> }
  >;
  for (const status of statuses) {
    out[status] = {
      description: PROBLEM_DESCRIPTIONS[status] ?? 'Error',
      content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
    };
  }
  return out;
}
