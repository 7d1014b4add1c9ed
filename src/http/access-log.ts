import fp from 'fastify-plugin';

export interface AccessLogOptions {
  /** Counts and times every answered request (see metrics.ts). */
  observe: (method: string, route: string | undefined, statusCode: number, ms: number) => void;
}

/** Probes are polled every few seconds: their lines would drown the rest at info. */
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
const DEBUG_LEVELS = new Set(['debug', 'trace']);

/**
 * One hook per response for both the metrics and the access log line (Fastify's own request
 * logging is off, see server-options.ts: this line carries the scrubbed URL). Not
 * encapsulated, so it sees every route.
 */
export const accessLog = fp<AccessLogOptions>(
  async (app, { observe }) => {
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url;
      observe(request.method, route, reply.statusCode, reply.elapsedTime);
      const quiet = route !== undefined && QUIET_ROUTES.has(route);
      if (!quiet || DEBUG_LEVELS.has(request.log.level)) {
        const line = { req: request, res: reply, responseTime: Math.round(reply.elapsedTime) };
        if (quiet) request.log.debug(line, 'request completed');
        else request.log.info(line, 'request completed');
      }
      done();
    });
  },
  { name: 'custodian-access-log' },
);
