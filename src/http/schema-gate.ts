import type { FastifyRequest } from 'fastify';
import { isDatabaseUnavailable } from '../db/database.js';
import type { SchemaStatus } from '../db/migrate.js';
import { MigrationsPendingError } from '../errors.js';

/**
 * An `onRequest` hook for the API routes: while the schema is behind the code they answer 503
 * `migrations_pending` (what the operator must do) rather than a 500 for each missing table or
 * column. Once the schema is known to be up to date this is one property read. When the
 * database is away the request answers 503 `database_unavailable` at once; any other failure
 * to read the schema lets the request go on.
 */
export function schemaGate(status: SchemaStatus, prefix = '/v1') {
  return async function schemaGateHook(request: FastifyRequest): Promise<void> {
    if (status.upToDate) return;
    const route = request.routeOptions.url;
    if (route === undefined || !(route === prefix || route.startsWith(`${prefix}/`))) return;
    let pending: readonly string[];
    try {
      pending = await status.pending();
    } catch (err) {
      // The database is away: the error handler answers 503 database_unavailable now, rather
      // than after the route's own query waits out the same timeout.
      if (isDatabaseUnavailable(err)) throw err;
      return;
    }
    if (pending.length > 0) throw new MigrationsPendingError(pending);
  };
}
