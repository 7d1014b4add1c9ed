import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { DB } from '../../db/schema.js';
import { BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { Id, PageQuery, pageOf, Timestamp } from '../../http/schemas.js';
import { listAudit, verifyAuditChain } from './audit.service.js';

const AuditEventSchema = z
  .object({
    id: Id,
    seq: z.number().int().describe('Position in the account’s chain, from 1.'),
    occurredAt: Timestamp,
    actor: z.object({
      type: z.string().describe('user, api_key or operator.'),
      id: z.string().nullable(),
    }),
    action: z.string().describe('e.g. `user.created`, `account.updated`.'),
    entity: z.object({ type: z.string(), id: z.string().nullable() }),
    changedFields: z.array(z.string()).describe('Names of changed fields; never their values.'),
    requestId: z.string().nullable(),
    ip: z.string().nullable(),
    prevHash: z.string().describe('Hash of the previous entry (64 zeros for the first).'),
    hash: z.string().describe('SHA-256 over this entry’s fields and prevHash.'),
  })
  .meta({ id: 'AuditEvent' });

const AuditQuery = PageQuery.extend({
  action: z.string().max(100).optional(),
  entityType: z.string().max(50).optional(),
  entityId: z.string().max(100).optional(),
  actorId: z.string().max(100).optional(),
  since: Timestamp.optional().describe('Entries at or after this time.'),
  until: Timestamp.optional().describe('Entries before this time.'),
});

const VerificationSchema = z
  .object({
    valid: z.boolean(),
    checked: z.number().int().describe('Entries checked.'),
    lastSeq: z.number().int().nullable().describe('Last entry verified intact.'),
    lastHash: z.string().nullable(),
    firstBroken: z
      .object({
        seq: z.number().int(),
        id: Id,
        reason: z.enum(['hash_mismatch', 'broken_link', 'gap']),
      })
      .nullable()
      .describe('The first entry that fails verification, if any.'),
  })
  .meta({
    id: 'AuditVerification',
    example: { valid: true, checked: 42, lastSeq: 42, lastHash: 'ab12…', firstBroken: null },
  });

/** `GET /v1/audit-events` and `/verify`: the account's tamper-evident trail (Art. 5(2), 24). */
export const auditRoutes: FastifyPluginAsyncZod<{ db: Kysely<DB> }> = async (app, { db }) => {
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
      return listAudit(db, accountIdOf(request), {
        ...q,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
      });
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
    async (request) => verifyAuditChain(db, accountIdOf(request)),
  );
};
