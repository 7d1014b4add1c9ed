import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { DB, EventRow, WebhookDeliveryRow, WebhookEndpointRow } from '../../db/schema.js';
import { withTenant } from '../../db/tenant.js';
import type { Clock } from '../../lib/clock.js';
import { linkSealer } from '../../lib/link-sealing.js';
import { webhookHeaders } from '../../lib/standard-webhooks.js';
import { eventJson, eventRefsAfter, findEventsBySeqs } from '../events/events.service.js';
import { type EndpointSecretBox, endpointSecretBox, webhookSecretKey } from './webhook-secrets.js';
import { connectionPool, type ResolveHost, sendWebhook, systemResolver } from './webhook-sender.js';
import {
  type AttemptOutcome,
  advanceEndpointCursor,
  claimDueDeliveries,
  endpointsBehindTheirFeed,
  findEndpoints,
  insertDeliveries,
  lockEndpointForFanOut,
  recordAttempts,
} from './webhooks.repository.js';

/** Events read per endpoint per fan-out transaction. */
const FAN_OUT_BATCH = 500;
/** Endpoints fanned out per tick (the ones furthest behind first). */
const FAN_OUT_ENDPOINTS = 100;
/** Deliveries claimed per tick, across endpoints. */
const CLAIM_BATCH = 500;
/** Jitter: a wait is 80–100% of its back-off, so retries of many deliveries spread out. */
const JITTER = 0.2;

/**
 * Other background work that rides on the worker's loop (the deadline reminders): one pass at
 * a time, between fan-outs. A pass that did something runs again on the next tick; one that
 * did nothing waits `everyMs`.
 */
export interface WorkerJob {
  name: string;
  everyMs: number;
  /** One pass; how many things it did. */
  run(): Promise<number>;
}

export interface WebhookWorkerOptions {
  db: Kysely<DB>;
  clock: Clock;
  secrets: EndpointSecretBox;
  /** HASH_SECRET (or its fallback): opens the sealed links in event data, as the feed does. */
  hashSecret: string;
  log: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  allowPrivateTargets: boolean;
  timeoutMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  retryForMs: number;
  leaseMs: number;
  maxInFlightPerEndpoint: number;
  pollIntervalMs: number;
  /** DNS, replaceable in tests. */
  resolve?: ResolveHost;
  /** Random numbers in [0, 1) for the jitter, replaceable in tests. */
  random?: () => number;
  /** Run in each tick before the fan-out, so what they put on the feed goes out in it. */
  jobs?: readonly WorkerJob[];
}

/** The wait before attempt n+1 of a round, after n failed ones: base × 2^(n-1), capped. */
export function backoffMs(failed: number, options: { baseMs: number; maxMs: number }): number {
  const exponent = Math.min(Math.max(failed - 1, 0), 40);
  return Math.min(options.baseMs * 2 ** exponent, options.maxMs);
}

/**
 * The webhook worker: a small loop over our own tables, the way imports hold their jobs (a
 * lease, and an attempt number that fences what a claimant may write), with no job-queue
 * library (see the README for why). Each tick:
 *
 * 1. fan-out: for each active endpoint behind its account's feed, the events past its cursor
 *    of the types it wants become pending deliveries, and the cursor moves, in one
 *    transaction per endpoint. `seq` follows commit order only within one account (the
 *    account's journal lock), so each endpoint keeps its own cursor into its own account.
 * 2. send: due deliveries are claimed (FOR UPDATE SKIP LOCKED, a lease, attempts + 1) and
 *    POSTed, each with the event as the feed shows it now, signed; a 2xx delivers, anything
 *    else waits its back-off, and a delivery still failing past its retry window fails. A
 *    worker that dies mid-send leaves its lease to run out, and the delivery is sent again
 *    (at least once: receivers deduplicate on `webhook-id`).
 *
 * Any number of workers may run on one Postgres database. Tests drive `tick()` directly.
 */
export function createWebhookWorker(options: WebhookWorkerOptions) {
  const { db, clock, secrets, log } = options;
  const sealer = linkSealer(options.hashSecret);
  const resolve = options.resolve ?? systemResolver;
  const random = options.random ?? Math.random;

  /** One endpoint's fan-out, in one transaction; the number of deliveries it made. */
  async function fanOutEndpoint(accountId: string, endpointId: string): Promise<number> {
    return db.transaction().execute(async (trx) => {
      const endpoint = await lockEndpointForFanOut(trx, accountId, endpointId);
      if (!endpoint) return 0;
      const events = await eventRefsAfter(trx, accountId, endpoint.cursor_seq, FAN_OUT_BATCH);
      const last = events[events.length - 1];
      if (!last) return 0;
      const wanted = new Set(endpoint.event_types);
      const now = clock.now();
      const giveUpAt = new Date(now.getTime() + options.retryForMs);
      const made = await insertDeliveries(
        trx,
        events
          .filter((event) => wanted.has(event.type))
          .map((event) => ({
            account_id: accountId,
            endpoint_id: endpointId,
            event_id: event.id,
            event_seq: event.seq,
            event_type: event.type,
            next_attempt_at: now,
            give_up_at: giveUpAt,
            created_at: now,
            updated_at: now,
          })),
      );
      await advanceEndpointCursor(trx, accountId, endpointId, last.seq);
      return made;
    });
  }

  async function fanOut(): Promise<number> {
    let made = 0;
    for (const endpoint of await endpointsBehindTheirFeed(db, FAN_OUT_ENDPOINTS)) {
      made += await withTenant(endpoint.account_id, () =>
        fanOutEndpoint(endpoint.account_id, endpoint.id),
      );
    }
    return made;
  }

  /** What to record when an attempt did not deliver: wait its back-off, or fail for good. */
  function retryOrFail(
    claim: WebhookDeliveryRow,
    attempt: Omit<AttemptOutcome, 'status'>,
  ): AttemptOutcome {
    const now = clock.now();
    if (now.getTime() >= claim.give_up_at.getTime()) return { ...attempt, status: 'failed' };
    const failed = claim.attempts - claim.round_started_after;
    const wait = backoffMs(failed, {
      baseMs: options.backoffBaseMs,
      maxMs: options.backoffMaxMs,
    });
    const jittered = Math.round(wait * (1 - JITTER * random()));
    const next = Math.min(now.getTime() + jittered, claim.give_up_at.getTime());
    return { ...attempt, status: 'pending', nextAttemptAt: new Date(next) };
  }

  /** An endpoint as one round of sends needs it: its URL and its secrets, opened once. */
  interface Target {
    endpoint: WebhookEndpointRow;
    secrets: string[] | null;
  }

  function targetOf(endpoint: WebhookEndpointRow, now: Date): Target {
    const { account_id: accountId, id } = endpoint;
    const current = secrets.open(accountId, id, endpoint.secret_ciphertext);
    const previous =
      endpoint.previous_secret_ciphertext &&
      endpoint.previous_secret_expires_at &&
      endpoint.previous_secret_expires_at > now
        ? secrets.open(accountId, id, endpoint.previous_secret_ciphertext)
        : null;
    return {
      endpoint,
      secrets: current === null ? null : previous ? [current, previous] : [current],
    };
  }

  /** One claimed delivery: sign the event as the feed shows it, send it; what came of it. */
  async function attempt(
    claim: WebhookDeliveryRow,
    target: Target,
    event: EventRow | undefined,
    signal: AbortSignal,
  ): Promise<AttemptOutcome> {
    const context = {
      accountId: claim.account_id,
      webhookId: claim.endpoint_id,
      deliveryId: claim.id,
    };
    // The body is read at send time, not when the delivery was made: an erased event is not sent.
    if (!event) {
      return {
        status: 'cancelled',
        attemptedAt: null,
        statusCode: null,
        errorCode: 'event_erased',
        durationMs: null,
      };
    }
    const now = clock.now();
    if (target.secrets === null) {
      log.error(context, 'webhook secret cannot be opened (was WEBHOOK_SECRET_KEY changed?)');
      return retryOrFail(claim, {
        attemptedAt: now,
        statusCode: null,
        errorCode: 'secret_unreadable',
        durationMs: 0,
      });
    }
    const body = eventJson(event, sealer);
    // Unix seconds of the real time, not the service clock: receivers compare it with
    // their own clocks to refuse replays (Standard Webhooks allows 5 minutes of skew).
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = webhookHeaders(target.secrets, { id: event.id, timestamp, body });
    const sent = await sendWebhook(
      target.endpoint.url,
      { headers, body },
      {
        timeoutMs: options.timeoutMs,
        allowPrivate: options.allowPrivateTargets,
        resolve,
        signal,
        pool,
      },
    );
    const result = {
      attemptedAt: now,
      statusCode: sent.statusCode,
      errorCode: sent.errorCode,
      durationMs: sent.durationMs,
    };
    log.info(
      {
        ...context,
        attempt: claim.attempts,
        statusCode: sent.statusCode,
        errorCode: sent.errorCode,
        durationMs: sent.durationMs,
      },
      sent.delivered ? 'webhook delivered' : `webhook attempt failed: ${sent.detail}`,
    );
    if (sent.delivered) return { ...result, status: 'delivered', deliveredAt: clock.now() };
    if (sent.errorCode === 'worker_stopped') {
      // Not the endpoint's fault: due again at once, for whichever worker runs next.
      return { ...result, status: 'pending', nextAttemptAt: clock.now() };
    }
    return retryOrFail(claim, result);
  }

  /** A crashed attempt counts as a failed one (see sendDue). */
  function crashed(claim: WebhookDeliveryRow, err: unknown): AttemptOutcome {
    log.error({ err, deliveryId: claim.id }, 'webhook attempt crashed');
    return retryOrFail(claim, {
      attemptedAt: clock.now(),
      statusCode: null,
      errorCode: 'internal_error',
      durationMs: null,
    });
  }

  const pool = connectionPool(options.maxInFlightPerEndpoint);
  /**
   * Deliveries claimed per endpoint per round: `maxInFlightPerEndpoint` lanes, each sending
   * one after another as many as surely end within the lease even if every one takes the
   * whole time limit (and none starts past the round's end, see sendDue). One round's queries
   * (claim, endpoints, events, outcomes) are shared by all its deliveries instead of paid per
   * delivery.
   */
  const perLane = Math.max(1, Math.floor(options.leaseMs / options.timeoutMs) - 1);
  const claimPerEndpoint = options.maxInFlightPerEndpoint * perLane;

  /** The rounds sending now (one per account of a claim), aborted by stop(). */
  const inFlight = new Set<AbortController>();

  /**
   * One round of sends: claims what is due, reads the endpoints and events of all the claims
   * at once, sends with at most `maxInFlightPerEndpoint` attempts at once per endpoint (in
   * claim order within each lane), and records the outcomes together, each fenced by its
   * attempt number. A delivery whose outcome is not recorded (the worker died) is claimed
   * again when its lease runs out: at least once.
   */
  async function sendDue(): Promise<number> {
    const now = clock.now();
    const claims = await claimDueDeliveries(db, {
      now,
      leaseUntil: new Date(now.getTime() + options.leaseMs),
      limit: CLAIM_BATCH,
      perEndpoint: claimPerEndpoint,
    });
    if (claims.length === 0) return 0;
    // Each account's claims are sent bound to that account (row-level security), the
    // accounts' rounds side by side.
    const byAccount = new Map<string, WebhookDeliveryRow[]>();
    for (const claim of claims) {
      byAccount.set(claim.account_id, [...(byAccount.get(claim.account_id) ?? []), claim]);
    }
    await Promise.all(
      [...byAccount].map(([accountId, group]) =>
        withTenant(accountId, () => sendRound(group, now)),
      ),
    );
    return claims.length;
  }

  /** One account's claims of a round: read, sent in lanes per endpoint, recorded at once. */
  async function sendRound(claims: WebhookDeliveryRow[], now: Date): Promise<void> {
    // No attempt starts past this: a round with a slow endpoint in it ends within about two
    // time limits, so it does not hold up the other endpoints the worker serves.
    const roundEnds = performance.now() + options.timeoutMs;
    const controller = new AbortController();
    inFlight.add(controller);
    if (stopping) controller.abort();
    const outcomes: {
      claim: { accountId: string; id: string; attempt: number };
      outcome: AttemptOutcome;
    }[] = [];
    const settle = (claim: WebhookDeliveryRow, outcome: AttemptOutcome) =>
      outcomes.push({
        claim: { accountId: claim.account_id, id: claim.id, attempt: claim.attempts },
        outcome,
      });
    try {
      const byEndpoint = new Map<string, WebhookDeliveryRow[]>();
      for (const claim of claims) {
        const key = `${claim.account_id}/${claim.endpoint_id}`;
        byEndpoint.set(key, [...(byEndpoint.get(key) ?? []), claim]);
      }
      const endpoints = await findEndpoints(
        db,
        [...byEndpoint.values()].map(([first]) => ({
          accountId: first!.account_id,
          id: first!.endpoint_id,
        })),
      );
      const targets = new Map(
        endpoints.map((endpoint) => [
          `${endpoint.account_id}/${endpoint.id}`,
          targetOf(endpoint, now),
        ]),
      );
      const events = new Map<string, Map<number, EventRow>>();
      for (const accountId of new Set(claims.map((claim) => claim.account_id))) {
        const seqs = claims
          .filter((claim) => claim.account_id === accountId)
          .map((claim) => Number(claim.event_seq));
        events.set(accountId, await findEventsBySeqs(db, accountId, seqs));
      }
      await Promise.all(
        [...byEndpoint.entries()].map(async ([key, queue]) => {
          const target = targets.get(key);
          if (!target) return; // deleted meanwhile; its deliveries went with it
          const lane = async () => {
            for (let claim = queue.shift(); claim; claim = queue.shift()) {
              const event = events.get(claim.account_id)?.get(Number(claim.event_seq));
              if (event && (controller.signal.aborted || performance.now() > roundEnds)) {
                // Stopping, or a slow endpoint holding the round up: what was not sent yet
                // goes back as it was, due at once, for the next round or worker.
                settle(claim, {
                  status: 'pending',
                  released: true,
                  nextAttemptAt: clock.now(),
                  attemptedAt: null,
                  statusCode: null,
                  errorCode: null,
                  durationMs: null,
                });
                continue;
              }
              settle(
                claim,
                await attempt(claim, target, event, controller.signal).catch((err: unknown) =>
                  crashed(claim, err),
                ),
              );
            }
          };
          await Promise.all(Array.from({ length: options.maxInFlightPerEndpoint }, lane));
        }),
      );
    } catch (err) {
      // Reading the round's endpoints or events failed: every claim not settled yet counts as
      // a failed attempt (a delivery that always crashes ends `failed` instead of looping on
      // its lease).
      const settled = new Set(outcomes.map((o) => o.claim.id));
      for (const claim of claims) if (!settled.has(claim.id)) settle(claim, crashed(claim, err));
    } finally {
      inFlight.delete(controller);
    }
    // If even this fails, the leases run out and other attempts follow.
    const recorded = await recordAttempts(db, outcomes, clock.now()).catch((err: unknown) => {
      log.error({ err }, 'webhook outcomes not recorded');
      return new Set<string>();
    });
    if (recorded.size < outcomes.length) {
      log.info(
        { notRecorded: outcomes.length - recorded.size },
        'webhook outcomes not recorded: the deliveries were claimed again or cancelled',
      );
    }
  }

  /** When each job may run next (real time: a throttle, not a rule of the domain). */
  const jobsDueAt = new Map<string, number>();

  /** The jobs whose time has come; a failing job is logged and does not stop the deliveries. */
  async function runJobs(): Promise<number> {
    let done = 0;
    for (const job of options.jobs ?? []) {
      if ((jobsDueAt.get(job.name) ?? 0) > Date.now()) continue;
      let did = 0;
      try {
        did = await job.run();
      } catch (err) {
        log.error({ err, job: job.name }, 'worker job failed');
      }
      jobsDueAt.set(job.name, did > 0 ? 0 : Date.now() + job.everyMs);
      done += did;
    }
    return done;
  }

  /**
   * One round of work: the jobs, then fan out, then send what is due. What it did, for tests
   * and the loop.
   */
  async function tick(): Promise<{ jobs: number; fannedOut: number; attempted: number }> {
    const jobs = await runJobs();
    const fannedOut = await fanOut();
    const attempted = await sendDue();
    return { jobs, fannedOut, attempted };
  }

  let running: Promise<void> | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;

  async function loop() {
    let failures = 0;
    while (!stopping) {
      let busy = false;
      try {
        const done = await tick();
        busy = done.jobs > 0 || done.fannedOut > 0 || done.attempted > 0;
        failures = 0;
      } catch (err) {
        // The database is away or behind (migrations pending): wait longer each time.
        failures += 1;
        log.error({ err, failures }, 'webhook worker tick failed');
      }
      if (busy || stopping) continue;
      const waitMs = Math.min(options.pollIntervalMs * 2 ** Math.min(failures, 10), 30_000);
      await new Promise<void>((resolveWait) => {
        const timer = setTimeout(resolveWait, Math.max(waitMs, options.pollIntervalMs));
        wake = () => {
          clearTimeout(timer);
          resolveWait();
        };
      });
      wake = undefined;
    }
  }

  return {
    tick,
    fanOut,
    sendDue,

    /** Runs ticks until stopped: back to back while there is work, else every poll interval. */
    start(): void {
      if (running) return;
      stopping = false;
      running = loop();
      log.info({ pollIntervalMs: options.pollIntervalMs }, 'webhook worker started');
    },

    /**
     * Stops after the current tick. Attempts in flight are cut short and put back as due now
     * (the receiver may have had them: at least once), so shutdown takes no longer than a
     * database round trip or two.
     */
    async stop(): Promise<void> {
      stopping = true;
      for (const controller of inFlight) controller.abort();
      wake?.();
      await running;
      running = undefined;
      pool.destroy();
    },
  };
}

export type WebhookWorker = ReturnType<typeof createWebhookWorker>;

/** The worker as the configuration describes it (the API process and `npm run worker`). */
export function webhookWorkerFromConfig(deps: {
  db: Kysely<DB>;
  config: Config;
  clock: Clock;
  hashSecret: string;
  log: WebhookWorkerOptions['log'];
  resolve?: ResolveHost;
  random?: () => number;
  jobs?: readonly WorkerJob[];
}): WebhookWorker {
  const { config } = deps;
  return createWebhookWorker({
    db: deps.db,
    clock: deps.clock,
    log: deps.log,
    hashSecret: deps.hashSecret,
    secrets: endpointSecretBox(
      webhookSecretKey(config.WEBHOOK_SECRET_KEY, deps.hashSecret, undefined),
    ),
    allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    backoffBaseMs: config.WEBHOOK_BACKOFF_BASE_MS,
    backoffMaxMs: config.WEBHOOK_BACKOFF_MAX_MS,
    retryForMs: config.WEBHOOK_RETRY_FOR_MS,
    leaseMs: config.WEBHOOK_LEASE_SECONDS * 1000,
    maxInFlightPerEndpoint: config.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT,
    pollIntervalMs: config.WORKER_POLL_INTERVAL_MS,
    ...(deps.resolve ? { resolve: deps.resolve } : {}),
    ...(deps.random ? { random: deps.random } : {}),
    ...(deps.jobs ? { jobs: deps.jobs } : {}),
  });
}
