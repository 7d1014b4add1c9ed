import { randomBytes } from 'node:crypto';
import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import type { Database } from '../../db/database.js';
import { accountOf, inAccountOf, withTenantOrNone } from '../../db/tenant.js';
import { ForbiddenError, UnauthorizedError } from '../../errors.js';
import { authenticateApiKey } from '../api-keys/api-keys.service.js';
import type { Actor, Permission } from './actor.js';
import { roleAllows } from './actor.js';
import { findSessionPrincipal } from './identity.repository.js';
import type { PrincipalCache, SessionPrincipal } from './principal-cache.js';
import { type AccessClaims, VerifiedTokenCache } from './token-cache.js';
import { looksLikeApiKey } from './tokens.js';

/**
 * What a route requires of its caller, declared in its `config.auth`:
 * - `'public'`: anyone (sign-up, login, public consent links);
 * - `{ permission }`: a user of an account whose role allows it, or an API key with that scope;
 * - `'user'`: any signed-in person (account user or operator), never an API key;
 * - `'operator'`: the provider's operations staff.
 * Routes under /v1 must declare one: a route without it fails at start-up, so nothing becomes
 * public by omission.
 */
export type AuthRequirement = 'public' | 'user' | 'operator' | { permission: Permission };

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthRequirement;
  }
  interface FastifyRequest {
    actor: Actor | null;
    /** For bearer sessions: the user and account as loaded (or cached) at authentication. */
    principal: SessionPrincipal | null;
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub: string; sid: string; typ: 'access' };
    user: { sub: string; sid: string; typ: 'access' };
  }
}

export const TOKEN_ISSUER = 'custodian';
export const TOKEN_AUDIENCE = 'custodian-api';

export async function registerAuth(
  app: FastifyInstance,
  config: Config,
  database: Database,
  cache: PrincipalCache,
) {
  await app.register(fastifyJwt, {
    // Without a configured secret (development only) tokens die with the process.
    secret: config.JWT_SECRET ?? randomBytes(48).toString('hex'),
    // Pin the algorithm and check issuer and audience: @fastify/jwt accepts any algorithm
    // unless told otherwise. Durations as strings ('15m'): a bare number means milliseconds
    // to fast-jwt underneath.
    sign: {
      algorithm: 'HS256',
      expiresIn: config.ACCESS_TOKEN_TTL,
      iss: TOKEN_ISSUER,
      aud: TOKEN_AUDIENCE,
    },
    // Verified tokens are cached by VerifiedTokenCache below, not by fast-jwt (see there).
    verify: {
      algorithms: ['HS256'],
      allowedIss: TOKEN_ISSUER,
      allowedAud: TOKEN_AUDIENCE,
    },
  });

  const verified = new VerifiedTokenCache();
  app.decorateRequest('actor', null);
  app.decorateRequest('principal', null);

  // After the rate limiter (onRequest), before validation, so an anonymous caller learns
  // nothing about a route's schema. Attached only to routes that need it: probes stay free.
  app.addHook('onRoute', (route) => {
    const auth = route.config?.auth;
    if (route.url.startsWith('/v1/') && route.url !== '/v1/' && !auth) {
      throw new Error(`route ${route.method} ${route.url} declares no config.auth`);
    }
    // Row-level security: the handler acts for the caller's account (see src/db/tenant.ts),
    // public and operator routes for none; they bind the account they act on themselves.
    const handler = route.handler;
    route.handler = function tenantBound(this: FastifyInstance, request, reply) {
      return withTenantOrNone(request.actor?.accountId, () => handler.call(this, request, reply));
    };
    if (!auth || auth === 'public') return;
    const guard = async (request: FastifyRequest) => {
      const actor = await authenticate(app, database, cache, verified, request);
      authorize(actor, auth);
      request.actor = actor;
    };
    const existing = route.preValidation;
    route.preValidation = existing
      ? [guard, ...(Array.isArray(existing) ? existing : [existing])]
      : [guard];
  });
}

/** Who the caller is: a user session (bearer token), an API key or an operator. */
async function authenticate(
  app: FastifyInstance,
  database: Database,
  cache: PrincipalCache,
  verified: VerifiedTokenCache,
  request: FastifyRequest,
): Promise<Actor> {
  const apiKeyHeader = request.headers['x-api-key'];
  if (typeof apiKeyHeader === 'string') return authenticateApiKey(database.db, apiKeyHeader);
  const authorization = request.headers.authorization;
  if (!authorization) throw new UnauthorizedError('Send a bearer token or an X-API-Key header.');
  const [scheme, token] = authorization.split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) {
    throw new UnauthorizedError('Use the Bearer scheme.', 'invalid_token');
  }
  if (looksLikeApiKey(token)) return authenticateApiKey(database.db, token);

  const claims = verified.get(token) ?? verifyAccessToken(app, verified, token);
  // Revocation takes effect at once in this process (the services drop the cached session),
  // and within the cache's short TTL on other instances.
  const cached = cache.get(claims.sid);
  if (cached && cached.user.id === claims.sub) return sessionActor(request, claims.sid, cached);
  // The token names a user; a definer function names their account (none for an operator).
  const principal = await inAccountOf(
    () => accountOf(database.db, 'account_of_user', claims.sub),
    () => findSessionPrincipal(database.db, claims.sid, claims.sub),
  );
  if (principal) cache.set(principal);
  return sessionActor(request, claims.sid, principal);
}

/** Verifies an access token in full (signature, algorithm, expiry, issuer, audience, type). */
function verifyAccessToken(
  app: FastifyInstance,
  verified: VerifiedTokenCache,
  token: string,
): AccessClaims {
  let claims: Partial<AccessClaims>;
  try {
    claims = app.jwt.verify(token);
  } catch (err) {
    const expired = (err as { code?: string }).code === 'FAST_JWT_EXPIRED';
    throw new UnauthorizedError(
      expired ? 'The access token has expired; refresh it.' : 'The access token is not valid.',
      expired ? 'token_expired' : 'invalid_token',
    );
  }
  const { sub, sid, typ, exp } = claims;
  if (typ !== 'access' || !sid || !sub || typeof exp !== 'number') {
    throw new UnauthorizedError('The access token is not valid.', 'invalid_token');
  }
  const checked: AccessClaims = { sub, sid, typ, exp };
  verified.set(token, checked);
  return checked;
}

function sessionActor(
  request: FastifyRequest,
  sessionId: string,
  principal: SessionPrincipal | null | undefined,
): Actor {
  if (!principal || principal.revoked || principal.sessionExpiresAt.getTime() < Date.now()) {
    throw new UnauthorizedError('The session has ended; sign in again.', 'session_revoked');
  }
  request.principal = principal;
  const user = principal.user;
  if (user.role === 'operator') {
    return { type: 'operator', id: user.id, accountId: null, sessionId };
  }
  return { type: 'user', id: user.id, accountId: user.account_id!, role: user.role, sessionId };
}

/**
 * Throws 403 unless the caller may do what `auth` names. The route guard calls it with the
 * route's own requirement; a route whose action depends on the request (completing a
 * data-subject request erases, exports or changes consent) calls it again for that action.
 */
export function authorize(actor: Actor, auth: Exclude<AuthRequirement, 'public'>): void {
  if (auth === 'operator') {
    if (actor.type !== 'operator') throw new ForbiddenError('Only operators may do this.');
    return;
  }
  if (auth === 'user') {
    if (actor.type === 'api_key') {
      throw new ForbiddenError('This needs a signed-in user, not an API key.', 'user_required');
    }
    return;
  }
  const { permission } = auth;
  if (actor.type === 'operator') {
    throw new ForbiddenError(
      'Operators act on accounts through /v1/ops endpoints.',
      'operator_not_in_account',
    );
  }
  if (actor.type === 'api_key') {
    if (!actor.scopes.includes(permission)) {
      throw new ForbiddenError(`The API key lacks the scope ${permission}.`, 'missing_scope');
    }
    return;
  }
  if (!roleAllows(actor.role, permission)) {
    throw new ForbiddenError(
      `The role ${actor.role} may not do this (${permission}).`,
      'role_forbidden',
    );
  }
}

// Moved to src/http/request-context.ts; re-exported while importers move.
export { accountIdOf, requestContext } from '../../http/request-context.js';
