import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';
import type { RedisLink } from '../lib/redis.js';
import { failOpenRedisStore } from './rate-limit-store.js';

export interface RateLimitOptions {
  max: number;
  /** A duration such as `1 minute`, or milliseconds. */
  timeWindow: string | number;
  /** The shared counter store; without it each process counts on its own. */
  redis: RedisLink | undefined;
  /** Separates the counters of apps sharing one Redis (tests). */
  namespace: string | undefined;
  /** Called for each request let through uncounted because Redis could not count it. */
  onFailOpen: () => void;
}

/**
 * One global request budget per client and window, answered with a 429 problem past it. Not
 * encapsulated: every route registered after it is counted, and `app.rateLimit()` is there for
 * the not-found handler.
 */
export const rateLimiting = fp<RateLimitOptions>(
  async (app, { max, timeWindow, redis, namespace, onFailOpen }) => {
    await app.register(rateLimit, {
      global: true,
      max,
      timeWindow,
      // Counting must not take the API down: if Redis cannot count, requests go through (the
      // store fails open, counts it in /metrics, and the outage is logged once).
      ...(redis
        ? {
            store: failOpenRedisStore(redis, `custodian-rl:${namespace ?? 'default'}:`, onFailOpen),
          }
        : {}),
      skipOnError: true,
      errorResponseBuilder: (_request, context) =>
        new AppError(
          429,
          'rate_limited',
          'Too many requests',
          `Rate limit of ${context.max} requests per ${context.after} exceeded; retry after ${Math.ceil(context.ttl / 1000)} s.`,
        ),
    });
  },
  { name: 'custodian-rate-limit' },
);
