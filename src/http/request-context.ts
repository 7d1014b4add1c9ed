import type { FastifyRequest } from 'fastify';
import { ForbiddenError, UnauthorizedError } from '../errors.js';
import type { RequestContext } from '../modules/identity/actor.js';

/**
 * What a route hands its service about the caller, read from the request that authentication
 * (modules/identity/auth.plugin.ts) has decorated with its actor.
 */

/** The request's actor and trace data, for services and the audit trail. */
export function requestContext(request: FastifyRequest): RequestContext {
  if (!request.actor) throw new UnauthorizedError();
  return { actor: request.actor, requestId: String(request.id), ip: request.ip };
}

/** The caller's account id; operators have none and must use /v1/ops routes. */
export function accountIdOf(request: FastifyRequest): string {
  const actor = request.actor;
  if (!actor) throw new UnauthorizedError();
  if (actor.accountId === null) {
    throw new ForbiddenError(
      'Operators act on accounts through /v1/ops endpoints.',
      'operator_not_in_account',
    );
  }
  return actor.accountId;
}
