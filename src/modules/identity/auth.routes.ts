import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { AppError, UnauthorizedError } from '../../errors.js';
import { BEARER, PUBLIC } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { requestContext } from '../../http/request-context.js';
import { Email, Instant } from '../../http/schemas.js';
import type { AuthService } from './auth.service.js';
import {
  AccountSchema,
  newPassword,
  Password,
  TimeZone,
  TokenPairSchema,
  toAccount,
  toUser,
  UserSchema,
} from './identity.schemas.js';
import { passwordAge } from './password.js';
import type { SessionPrincipal } from './principal-cache.js';

/**
 * A preHandler that counts requests under its own key and answers 429 past `max`. The answer's
 * rate-limit headers describe this counter (the global limiter set its own before): a client
 * told "600 per minute, 590 left" while refused would retry at once.
 */
function throttle(
  app: FastifyInstance,
  options: { max: number; timeWindow: number; keyGenerator: (request: FastifyRequest) => string },
) {
  const check = app.createRateLimit(options);
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const result = await check(request);
    if (!result.isAllowed && result.isExceeded) {
      const seconds = String(result.ttlInSeconds);
      reply.headers({
        'x-ratelimit-limit': String(result.max),
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': seconds,
        'retry-after': seconds,
      });
      throw new AppError(
        429,
        'rate_limited',
        'Too many requests',
        `Too many attempts; retry after ${result.ttlInSeconds} s.`,
      );
    }
  };
}

export interface AuthRoutesOptions {
  auth: AuthService;
  config: Config;
}

function signupBody(passwordMinLength: number) {
  return z
    .object({
      name: z
        .string()
        .trim()
        .min(1)
        .max(200)
        .describe('Your organisation (the controller): the account’s name.'),
      timeZone: TimeZone.optional(),
      email: Email,
      password: newPassword(passwordMinLength),
    })
    .meta({
      example: {
        name: 'Example Shop d.o.o.',
        timeZone: 'Europe/Ljubljana',
        email: 'dpo@example.com',
        password: 'staple orbit lantern quietly',
      },
    });
}

const LoginBody = z
  .object({ email: Email, password: Password })
  .meta({ example: { email: 'dpo@example.com', password: 'staple orbit lantern quietly' } });

const RefreshBody = z
  .object({ refreshToken: z.string().min(1).max(200) })
  .meta({ example: { refreshToken: 'crt_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } });

function passwordChangeBody(passwordMinLength: number) {
  return z.object({ currentPassword: Password, newPassword: newPassword(passwordMinLength) }).meta({
    example: {
      currentPassword: 'staple orbit lantern quietly',
      newPassword: 'marble comet harbour sideways',
    },
  });
}

/** The session's tokens as login and refresh return them, with the new account and owner. */
const SignupResponse = TokenPairSchema.extend({ account: AccountSchema, user: UserSchema }).meta({
  id: 'SignedUp',
  description: 'The session’s tokens (as login returns them), the new account and its owner.',
});

const MeResponse = z
  .object({
    user: UserSchema,
    account: AccountSchema.nullable().describe('Null for operators.'),
    password: z.object({
      passwordChangedAt: Instant,
      passwordAgeDays: z.number().int(),
      passwordChangeRecommended: z
        .boolean()
        .describe('True when the password is older than PASSWORD_MAX_AGE_DAYS.'),
    }),
  })
  .meta({ id: 'Me' });

/** Sign-up, login, token refresh, logout, password change and `GET /v1/me`. */
export const authRoutes: FastifyPluginAsyncZod<AuthRoutesOptions> = async (
  app,
  { auth, config },
) => {
  // Throttle requests per client address. Failed logins are also counted per (email, client
  // network) and per email by the auth service, which answers 429 itself (see `login`).
  // The global limiter already ran for this request, so this uses a separate counter.
  const perIp = throttle(app, {
    max: config.LOGIN_MAX_PER_IP_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (request) => `login-ip:${request.ip}`,
  });

  app.post(
    '/auth/signup',
    {
      config: { auth: 'public' },
      preHandler: [perIp],
      schema: {
        operationId: 'signup',
        tags: ['auth'],
        security: PUBLIC,
        summary: 'Create an account and its first owner (when SIGNUP=open)',
        body: signupBody(config.PASSWORD_MIN_LENGTH),
        answers: {
          201: { description: 'The new account, its owner, and a signed-in session’s tokens.' },
        },
        response: { 201: SignupResponse, ...problemResponses(400, 403, 409, 429) },
      },
    },
    async (request, reply) => {
      const { name, ...rest } = request.body;
      const result = await auth.signup(
        { ...rest, accountName: name },
        { requestId: String(request.id), ip: request.ip },
      );
      reply.code(201);
      return { ...result.tokens, account: toAccount(result.account), user: toUser(result.user) };
    },
  );

  app.post(
    '/auth/login',
    {
      config: { auth: 'public' },
      preHandler: [perIp],
      schema: {
        operationId: 'login',
        tags: ['auth'],
        security: PUBLIC,
        summary: 'Exchange email and password for an access token and a refresh token',
        description:
          'Unknown emails and wrong passwords get the same answer after the same work. Throttled ' +
          'per client address; failures are limited per email and client network ' +
          '(LOGIN_MAX_FAILURES_PER_CLIENT, then 429 with Retry-After for that client only), ' +
          'slowed per email from anywhere after LOGIN_BACKOFF_AFTER_FAILURES (429 with ' +
          'Retry-After), and the email locks after LOGIN_LOCKOUT_THRESHOLD consecutive failures.',
        body: LoginBody,
        answers: { 200: { description: 'The session’s tokens.' } },
        response: { 200: TokenPairSchema, ...problemResponses(400, 401, 429) },
      },
    },
    async (request) => auth.login(request.body, { requestId: String(request.id), ip: request.ip }),
  );

  app.post(
    '/auth/refresh',
    {
      config: { auth: 'public' },
      preHandler: [perIp],
      schema: {
        operationId: 'refreshTokens',
        tags: ['auth'],
        security: PUBLIC,
        summary: 'Rotate a refresh token into a new token pair',
        description:
          'A refresh token works once. Presented again within REFRESH_REUSE_GRACE_SECONDS of ' +
          'its use (two tabs refreshing at once), it returns the same new refresh token and a ' +
          'fresh access token; reused later, it ends the whole session.',
        body: RefreshBody,
        answers: { 200: { description: 'A new token pair.' } },
        response: { 200: TokenPairSchema, ...problemResponses(400, 401, 429) },
      },
    },
    async (request) =>
      auth.refresh(request.body.refreshToken, { requestId: String(request.id), ip: request.ip }),
  );

  app.post(
    '/auth/logout',
    {
      config: { auth: 'user' },
      schema: {
        operationId: 'logout',
        tags: ['auth'],
        summary: 'End the current session (its refresh tokens stop working)',
        security: BEARER,
        response: { 204: z.undefined().describe('Signed out.'), ...problemResponses(401, 403) },
      },
    },
    async (request, reply) => {
      await auth.logout(requestContext(request));
      return reply.code(204).send();
    },
  );

  app.post(
    '/auth/password',
    {
      config: { auth: 'user' },
      preHandler: [perIp],
      schema: {
        operationId: 'changePassword',
        tags: ['auth'],
        summary: 'Change your password (ends your other sessions)',
        security: BEARER,
        body: passwordChangeBody(config.PASSWORD_MIN_LENGTH),
        response: { 204: z.undefined().describe('Changed.'), ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      await auth.changePassword(requestContext(request), request.body);
      return reply.code(204).send();
    },
  );

  // The user and account as /v1/me shows them, made once per loaded principal: the principal
  // cache replaces the object whenever the user or account changes, so a view never outlives
  // the data it was made from.
  const meViews = new WeakMap<
    SessionPrincipal,
    { user: ReturnType<typeof toUser>; account: ReturnType<typeof toAccount> | null }
  >();

  app.get(
    '/me',
    {
      config: { auth: 'user' },
      schema: {
        operationId: 'getMe',
        tags: ['auth'],
        summary: 'The signed-in user, their account, and the age of their password',
        security: BEARER,
        answers: { 200: { description: 'You, your account and your password’s age.' } },
        response: { 200: MeResponse, ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      // Authentication already loaded (or found cached) the user and account.
      const principal = request.principal;
      if (!principal) throw new UnauthorizedError();
      let views = meViews.get(principal);
      if (!views) {
        views = {
          user: toUser(principal.user),
          account: principal.account ? toAccount(principal.account) : null,
        };
        meViews.set(principal, views);
      }
      return {
        ...views,
        password: passwordAge(
          principal.user.password_changed_at,
          new Date(),
          config.PASSWORD_MAX_AGE_DAYS,
        ),
      };
    },
  );
};
