import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../../db/database.js';
import type { SchemaStatus } from '../../db/migrate.js';
import { MigrationsPendingError, ServiceUnavailableError } from '../../errors.js';
import type { RedisLink } from '../../lib/redis.js';
import type { Readiness } from './health.schemas.js';

export interface HealthDeps {
  database: Pick<Database, 'ping' | 'engine'>;
  /** Whether the schema is behind the code: an unmigrated database is not ready. */
  schema: Pick<SchemaStatus, 'pending'>;
  /** The shared rate-limit store, when configured: reported, never failing readiness. */
  redis?: Pick<RedisLink, 'check'> | undefined;
  readinessTimeoutMs: number;
}

export type HealthService = ReturnType<typeof createHealthService>;

export function createHealthService({ database, schema, redis, readinessTimeoutMs }: HealthDeps) {
  return {
    /**
     * Ready when the database answers a round trip and its schema is as new as the code (an
     * unmigrated database answers the ping, then fails every request); Redis is only reported.
     */
    async readiness(log: Pick<FastifyBaseLogger, 'debug'>): Promise<Readiness> {
      // Both round trips at once; Redis's is bounded by its command timeout.
      const redisCheck = redis ? redis.check() : Promise.resolve('not_configured' as const);
      let pending: readonly string[];
      try {
        await database.ping(readinessTimeoutMs);
        pending = await schema.pending();
      } catch (err) {
        // The database module logs the outage once; probes repeat every few seconds.
        log.debug({ err }, 'readiness check failed');
        throw new ServiceUnavailableError('The database is not reachable.', 'database_unavailable');
      }
      // The start log said what to run; this answer says it to whoever probes.
      if (pending.length > 0) throw new MigrationsPendingError(pending);
      return { status: 'ready', database: database.engine, checks: { redis: await redisCheck } };
    },
  };
}
