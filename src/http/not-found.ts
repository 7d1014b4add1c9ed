import type { FastifyInstance, HTTPMethods, preParsingHookHandler } from 'fastify';
import FindMyWay from 'find-my-way';
import { sendProblem } from './error-handler.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Every registered route with its auth requirement (used by the tenancy test matrix). */
    routeTable(): { url: string; method: string; auth: unknown }[];
  }
}

/**
 * Unknown paths answer 404 and known paths with the wrong method answer 405 with `Allow`, both
 * as problem+json. Fastify itself answers 404 for both, so we keep a method-agnostic index of
 * the registered paths to tell them apart. Must be registered before any route.
 * Fastify reads the body of an unknown route too: `bodyDeadline` bounds it like any route's.
 */
export function registerNotFound(app: FastifyInstance, bodyDeadline?: preParsingHookHandler) {
  const methodsByPath = new Map<string, Set<string>>();
  const paths = FindMyWay({ ignoreTrailingSlash: false });
  const table: { url: string; method: string; auth: unknown }[] = [];
  app.decorate('routeTable', () => [...table]);

  app.addHook('onRoute', (route) => {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]) as HTTPMethods[];
    let known = methodsByPath.get(route.url);
    if (!known) {
      known = new Set();
      methodsByPath.set(route.url, known);
      paths.on('GET', route.url, () => {}, { path: route.url });
    }
    for (const m of methods) {
      known.add(m.toUpperCase());
      table.push({ url: route.url, method: m.toUpperCase(), auth: route.config?.auth });
    }
  });

  app.setNotFoundHandler(
    {
      preHandler: app.rateLimit ? app.rateLimit() : undefined,
      ...(bodyDeadline ? { preParsing: bodyDeadline } : {}),
    },
    (request, reply) => {
      const pathOnly = request.url.split('?')[0] ?? '/';
      const match = paths.find('GET', pathOnly);
      const allowed = match ? methodsByPath.get((match.store as { path: string }).path) : undefined;
      if (allowed && !allowed.has(request.method)) {
        const allow = [...allowed].sort().join(', ');
        return sendProblem(request, reply, {
          status: 405,
          code: 'method_not_allowed',
          title: 'Method not allowed',
          detail: `${request.method} is not allowed here; use ${allow}.`,
          headers: { allow },
        });
      }
      return sendProblem(request, reply, {
        status: 404,
        code: 'route_not_found',
        title: 'Not found',
        detail: `No route ${request.method} ${pathOnly}.`,
      });
    },
  );
}
