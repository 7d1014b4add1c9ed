import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ConflictError } from '../../errors.js';
import { BEARER, BEARER_OR_API_KEY } from '../../http/openapi-security.js';
import { problemResponses } from '../../http/problem.js';
import { accountIdOf } from '../../http/request-context.js';
import { PageQuery, pageOf } from '../../http/schemas.js';
import {
  AuditEventSchema,
  AuditQuery,
  CHECKPOINT_MESSAGE_DOC,
  CheckpointPageSchema,
  CheckpointSchema,
  toAuditEvent,
  toCheckpoint,
  VerificationSchema,
} from './audit.schemas.js';
import type { AuditService } from './audit.service.js';

/**
 * `GET /v1/audit-events`, `/verify` and `/checkpoints`: the account's tamper-evident trail
 * (Art. 5(2), 24), and the signed checkpoints that anchor it.
 */
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
        answers: { 200: { description: 'One page of audit events.' } },
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
        answers: { 200: { description: 'The outcome of the verification.' } },
        response: { 200: VerificationSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => audit.verify(accountIdOf(request)),
  );

  app.get(
    '/audit-events/checkpoints',
    {
      config: { auth: { permission: 'audit:read' } },
      schema: {
        operationId: 'listAuditCheckpoints',
        tags: ['audit'],
        summary: 'Signed checkpoints of the chain, newest first, and the current signing key',
        description:
          'Each checkpoint says that entry `seq` of the chain had hash `hash` at time `at`, ' +
          'signed by the service. Keep copies outside Custodian: a later `verify`, or your own ' +
          'comparison of the entries with your copies, then shows entries that were removed, ' +
          `even if the rest of the chain was re-hashed. ${CHECKPOINT_MESSAGE_DOC}`,
        security,
        querystring: PageQuery,
        answers: { 200: { description: 'One page of checkpoints, and the current public key.' } },
        response: { 200: CheckpointPageSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await audit.checkpoints(accountIdOf(request), request.query);
      return {
        data: page.rows.map(toCheckpoint),
        nextCursor: page.nextCursor,
        ...audit.currentKey,
      };
    },
  );

  app.post(
    '/audit-events/checkpoints',
    {
      config: { auth: { permission: 'audit:write' } },
      schema: {
        operationId: 'createAuditCheckpoint',
        tags: ['audit'],
        summary: 'Sign a checkpoint of the chain’s newest entry now',
        description:
          'Checkpoints are also made every `AUDIT_CHECKPOINT_EVERY` entries and, for chains ' +
          'that grew, every `AUDIT_CHECKPOINT_INTERVAL_MS`. 201 with a new checkpoint; 200 ' +
          `with the existing one when the newest entry has one already. ${CHECKPOINT_MESSAGE_DOC}`,
        // Owners and admins: API keys cannot carry audit:write.
        security: BEARER,
        answers: {
          201: { description: 'A new checkpoint of the newest entry.' },
          200: { description: 'The newest entry’s existing checkpoint.' },
        },
        response: {
          201: CheckpointSchema,
          200: CheckpointSchema,
          ...problemResponses(401, 403, 409),
        },
      },
    },
    async (request, reply) => {
      const made = await audit.checkpoint(accountIdOf(request));
      if (!made)
        throw new ConflictError('audit_chain_empty', 'The audit chain has no entries yet.');
      reply.code(made.created ? 201 : 200);
      return toCheckpoint(made.row);
    },
  );
};
