import type { FastifyPluginAsync } from 'fastify';
import { metaRoutes } from './modules/meta/meta.routes.js';

/**
 * The route table: every resource module mounted under `/v1`, one visible line each.
 * Adding an endpoint starts here.
 */
export const v1Routes: FastifyPluginAsync = async (v1) => {
  await v1.register(metaRoutes, { prefix: '' });
};
