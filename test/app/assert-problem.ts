import type { LightMyRequestResponse } from 'fastify';
import type { Test } from 'tap';

/** The members a problem document may carry; anything else would be a leak. */
const PROBLEM_KEYS = new Set([
  'type',
  'title',
  'status',
  'detail',
  'instance',
  'code',
  'requestId',
  'errors',
]);

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;
  requestId: string;
  errors?: { field: string; message: string; code: string }[];
}

/**
 * Asserts that a response is an RFC 9457 problem with our stable members: the status in the
 * line and in the body agree, the type is derived from the code, the instance is the path
 * (without the query) and the request id is the one in the `X-Request-Id` header.
 */
export function assertProblem(
  t: Test,
  res: LightMyRequestResponse,
  expected: { status: number; code: string; instance: string },
): ProblemBody {
  t.equal(res.statusCode, expected.status, `status ${expected.status}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/, 'problem+json');
  const body = res.json() as ProblemBody;
  t.match(
    body,
    {
      type: `urn:custodian:problem:${expected.code}`,
      title: /\S/,
      status: expected.status,
      detail: /\S/,
      instance: expected.instance,
      code: expected.code,
      requestId: /\S/,
    },
    'problem members',
  );
  t.equal(body.requestId, res.headers['x-request-id'], 'requestId is the X-Request-Id header');
  t.same(
    Object.keys(body).filter((key) => !PROBLEM_KEYS.has(key)),
    [],
    'no members beyond the problem schema',
  );
  return body;
}
