import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { pageOf } from '../../http/schemas.js';
import { AuditEventSchema, AuditQuery, toAuditEvent, VerificationSchema } from './audit.schemas.js';
import type { AuditService } from './audit.service.js';

/** `GET /v1/audit-events` and `/verify`: the account's tamper-evident trail (Art. 5(2), 24). */
export const auditRoutes: FastifyPluginAsyncZod<{ audit: AuditService }> = async (
  app,
  { audit },
) => {
  const security = BEARER_OR_API_KEY;

  app.get(
    '/audit-events',
    {
      config: { auth: { permission: 'audit:read' } },
      schema: {
        operationId: 'listAuditEvents',
        tags: ['audit'],
        summary: 'The audit trail, newest first, with filters',
        security,
        querystring: AuditQuery,
        response: { 200: pageOf(AuditEventSchema), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await audit.list(accountIdOf(request), {
        ...q,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
      });
      return { data: page.rows.map(toAuditEvent), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/audit-events/verify',
    {
      config: { auth: { permission: 'audit:read' } },
      schema: {
        operationId: 'verifyAuditChain',
        tags: ['audit'],
        summary: 'Recompute the hash chain and report the first broken entry',
        security,
        response: { 200: VerificationSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => audit.verify(accountIdOf(request)),
  );
};
