import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../../db/database.js';
import { ServiceUnavailableError } from '../../errors.js';
import type { RedisLink } from '../../lib/redis.js';
import type { Readiness } from './health.schemas.js';

export interface HealthDeps {
  database: Pick<Database, 'ping' | 'engine'>;
  /** The shared rate-limit store, when configured: reported, never failing readiness. */
  redis?: Pick<RedisLink, 'check'> | undefined;
  readinessTimeoutMs: number;
}

export type HealthService = ReturnType<typeof createHealthService>;

export function createHealthService({ database, redis, readinessTimeoutMs }: HealthDeps) {
  return {
    /** Ready when the database answers a round trip; Redis is only reported. */
    async readiness(log: Pick<FastifyBaseLogger, 'debug'>): Promise<Readiness> {
      // Both round trips at once; Redis's is bounded by its command timeout.
      const redisCheck = redis ? redis.check() : Promise.resolve('not_configured' as const);
      try {
        await database.ping(readinessTimeoutMs);
      } catch (err) {
        // The database module logs the outage once; probes repeat every few seconds.
        log.debug({ err }, 'readiness check failed');
        throw new ServiceUnavailableError('The database is not reachable.', 'database_unavailable');
      }
      return { status: 'ready', database: database.engine, checks: { redis: await redisCheck } };
    },
  };
}
