import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from './config.js';
import { embeddedAutovacuum } from './db/autovacuum.js';
import type { Engine } from './db/database.js';
import type { DB } from './db/schema.js';
import { debouncedVacuum } from './db/vacuum.js';
import { idempotency, idempotentPosts } from './http/idempotency.js';
import { backgroundJobs } from './jobs.js';
import type { Clock } from './lib/clock.js';
import { accountRoutes } from './modules/accounts/accounts.routes.js';
import { createAccountsService } from './modules/accounts/accounts.service.js';
import { apiKeysRoutes } from './modules/api-keys/api-keys.routes.js';
import { createApiKeysService } from './modules/api-keys/api-keys.service.js';
import { auditRoutes } from './modules/audit/audit.routes.js';
import { createAuditService } from './modules/audit/audit.service.js';
import { checkpointSigningKeyOf } from './modules/audit/checkpoint-signing.js';
import { breachIncidentsRoutes } from './modules/breach-incidents/breach-incidents.routes.js';
import { createBreachIncidentsService } from './modules/breach-incidents/breach-incidents.service.js';
import { processorIncidentsRoutes } from './modules/breach-incidents/processor-incidents.routes.js';
import { createProcessorIncidentsService } from './modules/breach-incidents/processor-incidents.service.js';
import { subjectNoticesRoutes } from './modules/breach-incidents/subject-notices.routes.js';
import { createSubjectNoticesService } from './modules/breach-incidents/subject-notices.service.js';
import { consentLinksRoutes } from './modules/consents/consent-links.routes.js';
import { createConsentLinksService } from './modules/consents/consent-links.service.js';
import { consentsRoutes } from './modules/consents/consents.routes.js';
import { createConsentsService } from './modules/consents/consents.service.js';
import { contactImportsRoutes } from './modules/contact-imports/contact-imports.routes.js';
import { createContactImportsService } from './modules/contact-imports/contact-imports.service.js';
import { contactsRoutes } from './modules/contacts/contacts.routes.js';
import {
  createContactsService,
  ERASURE_TOUCHED_TABLES,
} from './modules/contacts/contacts.service.js';
import { dataSubjectRequestsRoutes } from './modules/data-subject-requests/data-subject-requests.routes.js';
import {
  createDataSubjectRequestsService,
  requestPlaintextForgetter,
  requestsExportSection,
} from './modules/data-subject-requests/data-subject-requests.service.js';
import { verificationLinksRoutes } from './modules/data-subject-requests/verification-links.routes.js';
import { eventsRoutes } from './modules/events/events.routes.js';
import { createEventsService } from './modules/events/events.service.js';
import { authRoutes } from './modules/identity/auth.routes.js';
import { createAuthService } from './modules/identity/auth.service.js';
import type { PrincipalCache } from './modules/identity/principal-cache.js';
import { metaRoutes } from './modules/meta/meta.routes.js';
import { opsRoutes } from './modules/ops/ops.routes.js';
import { createOpsService } from './modules/ops/ops.service.js';
import { passwordSetupsRoutes } from './modules/password-setups/password-setups.routes.js';
import { createPasswordSetupsService } from './modules/password-setups/password-setups.service.js';
import { purposesRoutes } from './modules/purposes/purposes.routes.js';
import { createPurposesService } from './modules/purposes/purposes.service.js';
import { suppressionsRoutes } from './modules/suppressions/suppressions.routes.js';
import {
  createSuppressionsService,
  hashSecretOf,
} from './modules/suppressions/suppressions.service.js';
import { usersRoutes } from './modules/users/users.routes.js';
import { createUsersService } from './modules/users/users.service.js';
import { endpointSecretBox, webhookSecretKey } from './modules/webhooks/webhook-secrets.js';
import { webhookWorkerFromConfig } from './modules/webhooks/webhook-worker.js';
import { webhooksRoutes } from './modules/webhooks/webhooks.routes.js';
import {
  createWebhooksService,
  webhookErasureForgetter,
} from './modules/webhooks/webhooks.service.js';

export interface V1Options {
  db: Kysely<DB>;
  /** For VACUUM and ANALYZE (see `Database.maintenance`). */
  maintenance: Kysely<DB>;
  /** Which engine `db` runs on (imports commit differently on each). */
  engine: Engine;
  config: Config;
  principals: PrincipalCache;
  /** The time for decisions by date (deadlines, expiries), for the services that make them. */
  clock: Clock;
}

/**
 * The route table: every resource module mounted under `/v1`, one visible line each, with the
 * services it needs. Adding an endpoint starts here. Each route declares its `config.auth`.
 */
export async function v1Routes(
  v1: FastifyInstance,
  { db, maintenance, engine, config, principals, clock }: V1Options,
) {
  const auth = createAuthService({ db, config, app: v1, principals });
  const accounts = createAccountsService({ db, principals });
  const users = createUsersService({ db, config, principals });
  const apiKeys = createApiKeysService({ db });
  const passwordSetups = createPasswordSetupsService({ db, config, clock });
  const ops = createOpsService({ db, auth, accounts, users, passwordSetups });
  const audit = createAuditService({
    db,
    signingKey: checkpointSigningKeyOf(config, v1.log),
    checkpointEvery: config.AUDIT_CHECKPOINT_EVERY,
    checkpointIntervalMs: config.AUDIT_CHECKPOINT_INTERVAL_MS,
    log: v1.log,
  });
  // Signed checkpoints of the audit chains, for as long as the app runs.
  audit.startCheckpointing();
  v1.addHook('onClose', () => audit.stopCheckpointing());
  const purposes = createPurposesService({ db });
  const hashSecret = hashSecretOf(config, v1.log);
  const consents = createConsentsService({
    db,
    hashSecret,
    confirmationTtlHours: config.CONSENT_TOKEN_TTL_HOURS,
  });
  const consentLinks = createConsentLinksService({ db });
  const events = createEventsService({ db, hashSecret });
  // The embedded engine has no autovacuum: without fresh statistics its planner picks indexes
  // blindly, and dead row versions pile up in the indexes of tables updated over and over (see
  // embeddedAutovacuum). A Postgres server vacuums and analyses on its own.
  if (engine === 'embedded') {
    const analyze = embeddedAutovacuum({
      db: maintenance,
      schema: 'public',
      intervalMs: config.EMBEDDED_ANALYZE_INTERVAL_MS,
      log: v1.log,
    });
    analyze.start();
    v1.addHook('onClose', () => analyze.stop());
  }
  // Erasure leaves the erased data in dead row versions until a vacuum (Art. 17).
  const vacuum = debouncedVacuum({
    db: maintenance,
    tables: ERASURE_TOUCHED_TABLES,
    intervalMs: config.ERASURE_VACUUM_INTERVAL_MS,
    log: v1.log,
  });
  v1.addHook('onClose', () => vacuum.stop());
  const webhookSecrets = endpointSecretBox(
    webhookSecretKey(config.WEBHOOK_SECRET_KEY, hashSecret, v1.log),
  );
  const webhooks = createWebhooksService({
    db,
    clock,
    secrets: webhookSecrets,
    allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
    retryForMs: config.WEBHOOK_RETRY_FOR_MS,
  });
  // Webhook deliveries: in this process on the embedded engine (one process per data folder),
  // by `npm run worker` beside it on Postgres, unless WORKER says otherwise.
  if ((config.WORKER ?? (engine === 'embedded' ? 'in-process' : 'off')) === 'in-process') {
    const worker = webhookWorkerFromConfig({
      db,
      config,
      clock,
      hashSecret,
      log: v1.log,
      jobs: backgroundJobs({ db, clock }),
    });
    worker.start();
    v1.addHook('onClose', () => worker.stop());
  }
  const contacts = createContactsService({
    db,
    hashSecret,
    onErased: vacuum.request,
    // What other modules hold about the person goes with the contact (Art. 17), and shows
    // in its export (Art. 15).
    forgetters: [requestPlaintextForgetter(clock), webhookErasureForgetter(clock)],
    exportSections: [requestsExportSection(clock)],
  });
  const suppressions = createSuppressionsService({ db, hashSecret });
  // One store of idempotent answers: every POST of an account uses it (see idempotentPosts).
  const idempotent = idempotency({ db, secret: hashSecret });
  const requests = createDataSubjectRequestsService({
    db,
    hashSecret,
    clock,
    contacts,
    consents,
    verificationTtlHours: config.REQUEST_VERIFICATION_TTL_HOURS,
    exportTtlDays: config.REQUEST_EXPORT_TTL_DAYS,
    // Stored exports past their time go within a quarter of an hour.
    exportSweepIntervalMs: 15 * 60_000,
  });
  requests.startSweeping(v1.log);
  v1.addHook('onClose', () => requests.stopSweeping());
  const breaches = createBreachIncidentsService({ db, clock });
  const subjectNotices = createSubjectNoticesService({ db, clock });
  const processorIncidents = createProcessorIncidentsService({ db, clock });
  const imports = createContactImportsService({
    db,
    hashSecret,
    // Only a Postgres server outlives this process (see tuneBatchTransaction).
    asyncCommit: engine === 'postgres',
    leaseSeconds: config.IMPORT_LEASE_SECONDS,
    consentTokenTtlHours: config.CONSENT_TOKEN_TTL_HOURS,
    limits: {
      maxBytes: config.IMPORT_MAX_BYTES,
      maxDurationMs: config.IMPORT_MAX_DURATION_MS,
      maxStoredErrors: config.IMPORT_MAX_STORED_ERRORS,
      maxErrorRate: config.IMPORT_MAX_ERROR_RATE,
      errorRateMinRows: config.IMPORT_ERROR_RATE_MIN_ROWS,
    },
  });

  // Every POST registered below honours Idempotency-Key, or refuses it (see idempotentPosts).
  idempotentPosts(v1, idempotent);
  await v1.register(metaRoutes); //                      GET /v1
  await v1.register(authRoutes, { auth, config }); //   /v1/auth/*, /v1/me
  await v1.register(accountRoutes, { accounts }); //    /v1/account
  await v1.register(usersRoutes, { users, passwordMinLength: config.PASSWORD_MIN_LENGTH }); // /v1/users
  await v1.register(apiKeysRoutes, { apiKeys }); //     /v1/api-keys
  await v1.register(auditRoutes, { audit }); //         /v1/audit-events
  await v1.register(purposesRoutes, { purposes }); //   /v1/purposes (+ notice versions)
  await v1.register(contactsRoutes, { contacts }); //   /v1/contacts/*
  await v1.register(suppressionsRoutes, { suppressions }); // /v1/suppressions/check
  await v1.register(contactImportsRoutes, { imports, maxBytes: config.IMPORT_MAX_BYTES }); // /v1/contact-imports/*
  await v1.register(consentsRoutes, { consents, purposes }); //   /v1/contacts/{id}/consent*, /v1/purposes/{id}/audience
  await v1.register(consentLinksRoutes, { consentLinks }); // /v1/public/consent-*
  await v1.register(dataSubjectRequestsRoutes, { requests, clock }); // /v1/data-subject-requests/*
  await v1.register(verificationLinksRoutes, { requests }); // /v1/public/data-subject-request-verifications/*
  await v1.register(breachIncidentsRoutes, { breaches, clock }); // /v1/breach-incidents/*, /v1/breach-register
  await v1.register(subjectNoticesRoutes, { notices: subjectNotices, clock }); // /v1/breach-incidents/:id/subject-notice*
  await v1.register(processorIncidentsRoutes, { processorIncidents, clock }); // /v1/ops/breach-incidents/*, …/:id/acknowledgement
  await v1.register(eventsRoutes, { events }); //       /v1/events
  await v1.register(webhooksRoutes, { webhooks, clock }); // /v1/webhooks/*
  await v1.register(passwordSetupsRoutes, {
    passwordSetups,
    passwordMinLength: config.PASSWORD_MIN_LENGTH,
  }); // /v1/public/password-setups/*
  await v1.register(opsRoutes, { ops }); //              /v1/ops/*
}
