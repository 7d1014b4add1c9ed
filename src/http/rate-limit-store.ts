import { createRequire } from 'node:module';
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { RedisLink } from '../lib/redis.js';

type Counted = { current: number; ttl: number };
type Callback = (error: Error | null, result?: Counted) => void;
/** The parts of the plugin's (global or per-route) parameters a store reads. */
type StoreOptions = { continueExceeding?: boolean; exponentialBackoff?: boolean };

interface Store {
  incr(key: string, callback: Callback, timeWindow: number, max: number): void;
  child(routeOptions: StoreOptions): Store;
}

type RedisStoreCtor = new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  redis: RedisLink['client'],
  key: string,
) => Store;

// The plugin's own Redis store (its Lua counter script), not exported under a typed name.
const RedisStore = createRequire(import.meta.url)(
  '@fastify/rate-limit/store/RedisStore.js',
) as RedisStoreCtor;

/** What the limiter sees when Redis cannot count: nothing counted, so nothing exceeded. */
const NOT_COUNTED: Counted = { current: 0, ttl: 0 };

/**
 * The rate-limit store for a shared Redis, failing OPEN: when Redis cannot answer (down, or
 * slower than the command timeout) the request goes through uncounted. Availability is chosen
 * over enforcement because the limits protect capacity, while refusing every request (or
 * making each wait for Redis) turns a cache outage into an outage of the whole API, sign-in
 * included. Account lockout after repeated failed logins is counted in the database and keeps
 * working. Each request let through this way calls `onFailOpen` (a metric), and the outage is
 * logged once by the link.
 */
export function failOpenRedisStore(
  link: RedisLink,
  namespace: string,
  onFailOpen: () => void,
): FastifyRateLimitStoreCtor {
  class FailOpenRedisStore implements Store {
    readonly #inner: Store;

    constructor(options: StoreOptions, inner?: Store) {
      this.#inner =
        inner ??
        new RedisStore(
          options.continueExceeding ?? false,
          options.exponentialBackoff ?? false,
          link.client,
          namespace,
        );
    }

    incr(key: string, callback: Callback, timeWindow: number, max: number): void {
      this.#inner.incr(
        key,
        (err, result) => {
          if (err || !result) {
            link.unreachable(err);
            onFailOpen();
            callback(null, NOT_COUNTED);
          } else {
            link.reachable();
            callback(null, result);
          }
        },
        timeWindow,
        max,
      );
    }

    child(routeOptions: StoreOptions): Store {
      return new FailOpenRedisStore(routeOptions, this.#inner.child(routeOptions));
    }
  }
  return FailOpenRedisStore as unknown as FastifyRateLimitStoreCtor;
}
