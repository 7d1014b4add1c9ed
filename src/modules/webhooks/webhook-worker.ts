import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { DB, EventRow, WebhookEndpointRow } from '../../db/schema.js';
import { withTenant } from '../../db/tenant.js';
import type { Clock } from '../../lib/clock.js';
import { linkSealer } from '../../lib/link-sealing.js';
import { type WebhookHeaders, webhookSigner } from '../../lib/standard-webhooks.js';
import { eventJson, findEventsBySeqs } from '../events/events.service.js';
import { type EndpointSecretBox, endpointSecretBox, webhookSecretKey } from './webhook-secrets.js';
import {
  type CheckedAddresses,
  connectionPool,
  type ResolveHost,
  sendWebhook,
  systemResolver,
} from './webhook-sender.js';
import {
  type AttemptOutcome,
  advanceEndpointCursor,
  type ClaimedDelivery,
  claimDueDeliveries,
  endpointsBehindTheirFeed,
  fanOutDeliveries,
  findEndpoints,
  lockEndpointForFanOut,
  recordAttempts,
} from './webhooks.repository.js';

/** Events read per endpoint per fan-out transaction. */
const FAN_OUT_BATCH = 500;
/** Endpoints fanned out per tick (the ones furthest behind first). */
const FAN_OUT_ENDPOINTS = 100;
/** Deliveries claimed at once, across endpoints. */
const CLAIM_BATCH = 500;
/** Deliveries the running worker holds at most (claimed, outcome not written yet). */
const MAX_HELD = 5_000;
/** Deliveries queued per lane of an endpoint in the running worker (see holdPerEndpoint). */
const QUEUED_PER_LANE = 100;
/** Outcomes written at once, at least, while attempts are under way (or after RECORD_WAIT_MS). */
const RECORD_BATCH = 100;
const RECORD_WAIT_MS = 20;
/** How long what a claim read (events, endpoints) is used without reading it again. */
const FRESH_FOR_MS = 1_000;
/** Endpoints whose checked addresses are kept. */
const MAX_CHECKED_ENDPOINTS = 1_000;
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
  /**
   * How long a claimed delivery's event and endpoint, read with its claim, are used as read;
   * one that waits longer in its endpoint's queue is read again just before it is sent.
   */
  freshForMs?: number;
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
  const freshForMs = options.freshForMs ?? FRESH_FOR_MS;
  /** This worker's name on the leases it holds. */
  const workerId = randomUUID();

  /** One endpoint's fan-out, in one transaction; the number of deliveries it made. */
  async function fanOutEndpoint(accountId: string, endpointId: string): Promise<number> {
    return db.transaction().execute(async (trx) => {
      const endpoint = await lockEndpointForFanOut(trx, accountId, endpointId);
      if (!endpoint) return 0;
      const now = clock.now();
      const { lastSeq, made } = await fanOutDeliveries(trx, {
        accountId,
        endpointId,
        afterSeq: endpoint.cursor_seq,
        eventTypes: endpoint.event_types,
        limit: FAN_OUT_BATCH,
        now,
        giveUpAt: new Date(now.getTime() + options.retryForMs),
      });
      if (lastSeq === null) return 0;
      await advanceEndpointCursor(trx, accountId, endpointId, lastSeq);
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
    claim: ClaimedDelivery,
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

  /** An endpoint as its sends need it: its URL, and its secrets opened once per claim. */
  interface Target {
    endpoint: WebhookEndpointRow;
    /** Signs with the endpoint's secrets; null when they cannot be opened. */
    sign: ((message: { id: string; timestamp: number; body: string }) => WebhookHeaders) | null;
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
      sign: current === null ? null : webhookSigner(previous ? [current, previous] : [current]),
    };
  }

  /** One claimed delivery: sign the event as the feed shows it, send it; what came of it. */
  async function attempt(
    claim: ClaimedDelivery,
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
    if (target.sign === null) {
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
    const headers = target.sign({ id: event.id, timestamp, body });
    const sent = await sendWebhook(
      target.endpoint.url,
      { headers, body },
      {
        timeoutMs: options.timeoutMs,
        allowPrivate: options.allowPrivateTargets,
        resolve,
        signal,
        pool,
        checked: addressesOf(claim),
      },
    );
    const result = {
      attemptedAt: now,
      statusCode: sent.statusCode,
      errorCode: sent.errorCode,
      durationMs: sent.durationMs,
    };
    // A delivery is on record in the delivery log; the process log tells only what went wrong.
    if (!sent.delivered) {
      log.info(
        {
          ...context,
          attempt: claim.attempts,
          statusCode: sent.statusCode,
          errorCode: sent.errorCode,
          durationMs: sent.durationMs,
        },
        `webhook attempt failed: ${sent.detail}`,
      );
    }
    if (sent.delivered) return { ...result, status: 'delivered', deliveredAt: clock.now() };
    if (sent.errorCode === 'worker_stopped') {
      // Not the endpoint's fault: due again at once, for whichever worker runs next.
      return { ...result, status: 'pending', nextAttemptAt: clock.now() };
    }
    return retryOrFail(claim, result);
  }

  /** A crashed attempt counts as a failed one (see sendDue). */
  function crashed(claim: ClaimedDelivery, err: unknown): AttemptOutcome {
    log.error({ err, deliveryId: claim.id }, 'webhook attempt crashed');
    return retryOrFail(claim, {
      attemptedAt: clock.now(),
      statusCode: null,
      errorCode: 'internal_error',
      durationMs: null,
    });
  }

  /** Claimed, not attempted: back to pending as it was, its attempt number given back. */
  function released(): AttemptOutcome {
    return {
      status: 'pending',
      released: true,
      nextAttemptAt: clock.now(),
      attemptedAt: null,
      statusCode: null,
      errorCode: null,
      durationMs: null,
    };
  }

  const pool = connectionPool(options.maxInFlightPerEndpoint);
  /** Each endpoint's checked addresses, reused for a moment (see sendWebhook's `checked`). */
  const checkedAddresses = new Map<string, CheckedAddresses>();
  function addressesOf(claim: ClaimedDelivery): CheckedAddresses {
    const key = `${claim.account_id}/${claim.endpoint_id}`;
    let checked = checkedAddresses.get(key);
    if (!checked) {
      checked = {};
      checkedAddresses.set(key, checked);
      if (checkedAddresses.size > MAX_CHECKED_ENDPOINTS) {
        const [oldest] = checkedAddresses.keys();
        checkedAddresses.delete(oldest!);
      }
    }
    return checked;
  }

  /**
   * Deliveries one round of `tick()` claims per endpoint: `maxInFlightPerEndpoint` lanes, each
   * sending one after another as many as surely end within the lease even if every one takes
   * the whole time limit (and none starts past the round's end).
   */
  const perLane = Math.max(1, Math.floor(options.leaseMs / options.timeoutMs) - 1);
  const claimPerEndpoint = options.maxInFlightPerEndpoint * perLane;
  /**
   * What the running loop (`start()`) holds per endpoint at most, claimed and not yet
   * recorded: enough queued behind each lane that the lanes keep sending while the next claim
   * and the last outcomes are written. Attempts not started in time go back (see Job.startBy).
   */
  const holdPerEndpoint = options.maxInFlightPerEndpoint * Math.max(perLane, QUEUED_PER_LANE);

  /** A claimed delivery waiting for, or in, its endpoint's lanes. */
  interface Job {
    claim: ClaimedDelivery;
    target: Target;
    event: EventRow | undefined;
    /**
     * performance.now() past which it is not attempted but released: an attempt started before
     * it ends (time limit included) before its lease does.
     */
    startBy: number;
    /** performance.now() when its event and endpoint were read. */
    readAt: number;
    /** Read again, its endpoint was found deleted or disabled: released, not sent. */
    endpointGone?: boolean;
    /** Called once its outcome is written (or could not be). */
    recorded: () => void;
  }

  /** Per endpoint: what waits, and how many attempts are under way. */
  interface EndpointLanes {
    waiting: Job[];
    sending: number;
  }
  const endpointLanes = new Map<string, EndpointLanes>();
  /** Jobs claimed whose outcome is not written yet. */
  let held = 0;

  /** Cut short by stop(): attempts under way end as `worker_stopped`, waiting ones are released. */
  let stopSignal = stopController();

  function enqueue(jobs: Job[]): void {
    held += jobs.length;
    for (const job of jobs) {
      const key = `${job.claim.account_id}/${job.claim.endpoint_id}`;
      let lanes = endpointLanes.get(key);
      if (!lanes) {
        lanes = { waiting: [], sending: 0 };
        endpointLanes.set(key, lanes);
      }
      lanes.waiting.push(job);
    }
    for (const [key, lanes] of endpointLanes) pump(key, lanes);
  }

  /** Starts attempts while the endpoint has a free lane and something waits. */
  function pump(key: string, lanes: EndpointLanes): void {
    while (lanes.sending < options.maxInFlightPerEndpoint && lanes.waiting.length > 0) {
      const job = lanes.waiting.shift()!;
      lanes.sending += 1;
      // run() settles every outcome itself and never rejects.
      void run(job).then(() => {
        lanes.sending -= 1;
        if (lanes.sending === 0 && lanes.waiting.length === 0) endpointLanes.delete(key);
        else pump(key, lanes);
      });
    }
  }

  async function run(job: Job): Promise<void> {
    const { claim } = job;
    const signal = stopSignal.signal;
    let outcome: AttemptOutcome;
    if (job.event && (signal.aborted || performance.now() > job.startBy)) {
      // Stopping, or not started in time: back as it was, due at once, for the next claim.
      outcome = released();
    } else {
      try {
        if (isStale(job)) await readAgain(job);
        outcome = job.endpointGone
          ? // Its endpoint was deleted or disabled meanwhile: not sent, back as it was.
            released()
          : await attempt(claim, job.target, job.event, signal);
      } catch (err) {
        outcome = crashed(claim, err);
      }
    }
    settle(job, outcome);
  }

  function isStale(job: Job): boolean {
    return (
      job.event !== undefined && !job.endpointGone && performance.now() - job.readAt > freshForMs
    );
  }

  /** Per endpoint: a read-again under way, which its other lanes wait for. */
  const readingAgain = new Map<string, Promise<void>>();

  /**
   * A job that waited in its endpoint's queue longer than `freshForMs` is sent as things are
   * now: its event read again (an event erased meanwhile is not sent: cancelled) and its
   * endpoint too (deleted or disabled: released). The endpoint's other stale jobs still waiting
   * are read in the same two queries: a worker that falls behind would otherwise read every job
   * again one by one, and fall further behind.
   */
  async function readAgain(job: Job): Promise<void> {
    const { account_id: accountId, endpoint_id: endpointId } = job.claim;
    const key = `${accountId}/${endpointId}`;
    // Another lane's read may include this job; if it failed, this one reads for itself.
    for (let under = readingAgain.get(key); under; under = readingAgain.get(key)) {
      await under.catch(() => undefined);
    }
    if (!isStale(job)) return;
    const jobs = [job, ...(endpointLanes.get(key)?.waiting.filter(isStale) ?? [])];
    const reading = withTenant(accountId, async () => {
      const [endpoint] = await findEndpoints(db, [{ accountId, id: endpointId }]);
      const readAt = performance.now();
      if (endpoint?.status !== 'active') {
        for (const stale of jobs) stale.endpointGone = true;
        return;
      }
      const target = targetOf(endpoint, clock.now());
      const events = await findEventsBySeqs(
        db,
        accountId,
        jobs.map((stale) => Number(stale.claim.event_seq)),
      );
      for (const stale of jobs) {
        stale.target = target;
        stale.event = events.get(Number(stale.claim.event_seq));
        stale.readAt = readAt;
      }
    }).finally(() => readingAgain.delete(key));
    readingAgain.set(key, reading);
    await reading;
  }

  /** Outcomes waiting to be written, each with its job. */
  let unrecorded: { job: Job; outcome: AttemptOutcome }[] = [];
  let recording: Promise<void> | undefined;

  function settle(job: Job, outcome: AttemptOutcome): void {
    unrecorded.push({ job, outcome });
    recording ??= recordOutcomes();
  }

  /**
   * Writes outcomes while there are any, each account's in one fenced statement (see
   * recordAttempts); what settles meanwhile goes in the next. A write waits for a batch to fill
   * (or a moment to pass) while attempts are still under way, and goes at once when none is:
   * each statement costs a commit, and many small ones cost the database more than the sends.
   * If a write fails, the leases run out and other attempts follow.
   */
  async function recordOutcomes(): Promise<void> {
    while (unrecorded.length > 0) {
      const waitUntil = performance.now() + RECORD_WAIT_MS;
      // The outcomes of the sockets that answered in the same turn go together.
      await new Promise((resolveNow) => setImmediate(resolveNow));
      while (
        unrecorded.length < RECORD_BATCH &&
        unrecorded.length < held &&
        performance.now() < waitUntil &&
        !stopSignal.signal.aborted
      ) {
        await new Promise((resolveSoon) => setTimeout(resolveSoon, 1));
      }
      const batch = unrecorded;
      unrecorded = [];
      const byAccount = groupBy(batch, (item) => item.job.claim.account_id);
      await Promise.all(
        [...byAccount].map(async ([accountId, items]) => {
          const written = await withTenant(accountId, () =>
            recordAttempts(
              db,
              items.map(({ job, outcome }) => ({
                claim: { accountId, id: job.claim.id, attempt: job.claim.attempts },
                outcome,
              })),
              clock.now(),
            ),
          ).catch((err: unknown) => {
            log.error({ err }, 'webhook outcomes not recorded');
            return new Set<string>();
          });
          if (written.size < items.length) {
            log.info(
              { notRecorded: items.length - written.size },
              'webhook outcomes not recorded: the deliveries were claimed again or cancelled',
            );
          }
        }),
      );
      held -= batch.length;
      freedSinceClaim += batch.length;
      for (const { job } of batch) job.recorded();
      if (freedSinceClaim >= holdPerEndpoint / 4 || held === 0) wake?.();
    }
    recording = undefined;
  }

  /**
   * Claims what is due (at most `limit`, `perEndpoint` held per endpoint), reads the claims'
   * endpoints and events, each account bound to itself (row-level security), and hands them to
   * the endpoints' lanes without waiting for the sends. Resolves with the number claimed and a
   * promise of their outcomes written.
   */
  async function claimAndEnqueue(limits: {
    limit: number;
    perEndpoint: number;
    /** How long after the claim an attempt may still start. */
    startWithinMs: number;
  }): Promise<{ claimed: number; recorded: Promise<void> }> {
    const started = performance.now();
    const now = clock.now();
    freedSinceClaim = 0;
    const claims = await claimDueDeliveries(db, {
      now,
      leaseUntil: new Date(now.getTime() + options.leaseMs),
      limit: limits.limit,
      perEndpoint: limits.perEndpoint,
      owner: workerId,
    });
    if (claims.length === 0) return { claimed: 0, recorded: Promise.resolve() };
    // Sent in the order they fell due (the claim's rows come back in no particular order).
    claims.sort(
      (a, b) => a.next_attempt_at.getTime() - b.next_attempt_at.getTime() || (a.id < b.id ? -1 : 1),
    );
    const startBy = started + limits.startWithinMs;
    let left = claims.length;
    let allRecorded: () => void = () => {};
    const recorded = new Promise<void>((resolveAll) => {
      allRecorded = resolveAll;
    });
    const recordedOne = () => {
      left -= 1;
      if (left === 0) allRecorded();
    };
    const jobs: Job[] = [];
    const unread: ClaimedDelivery[] = [];
    await Promise.all(
      [...groupBy(claims, (claim) => claim.account_id)].map(([accountId, group]) =>
        withTenant(accountId, async () => {
          try {
            const readAt = performance.now();
            const endpoints = await findEndpoints(
              db,
              [...groupBy(group, (claim) => claim.endpoint_id).keys()].map((id) => ({
                accountId,
                id,
              })),
            );
            const targets = new Map(
              endpoints.map((endpoint) => [endpoint.id, targetOf(endpoint, now)]),
            );
            const events = await findEventsBySeqs(
              db,
              accountId,
              group.map((claim) => Number(claim.event_seq)),
            );
            for (const claim of group) {
              const target = targets.get(claim.endpoint_id);
              // Its endpoint was deleted meanwhile, and its deliveries with it.
              if (!target) recordedOne();
              else {
                const event = events.get(Number(claim.event_seq));
                jobs.push({ claim, target, event, startBy, readAt, recorded: recordedOne });
              }
            }
          } catch (err) {
            // Reading the claims' endpoints or events failed: each counts as a failed attempt
            // (a delivery that always crashes ends `failed` instead of looping on its lease).
            log.error({ err }, 'webhook claims not read');
            unread.push(...group);
          }
        }),
      ),
    );
    enqueue(jobs);
    for (const claim of unread) {
      held += 1;
      settle(
        {
          claim,
          target: { endpoint: {} as WebhookEndpointRow, sign: null },
          event: undefined,
          startBy,
          readAt: startBy,
          recorded: recordedOne,
        },
        crashed(claim, new Error('claims not read')),
      );
    }
    return { claimed: claims.length, recorded };
  }

  /** Outcomes written since the last claim: the loop claims again once enough room is free. */
  let freedSinceClaim = 0;

  /**
   * One round of sends (what `tick()` does): claims what is due, sends it with at most
   * `maxInFlightPerEndpoint` attempts at once per endpoint (no attempt starting more than a
   * time limit after the claim, so a slow endpoint ends its round within about two), and
   * returns once every outcome is written, each fenced by its attempt number. A delivery whose
   * outcome is not written (the worker died) is claimed again when its lease runs out: at
   * least once.
   */
  async function sendDue(): Promise<number> {
    const { claimed, recorded } = await claimAndEnqueue({
      limit: CLAIM_BATCH,
      perEndpoint: claimPerEndpoint,
      startWithinMs: options.timeoutMs,
    });
    await recorded;
    return claimed;
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

  function sleep(ms: number): Promise<void> {
    return new Promise<void>((resolveWait) => {
      const timer = setTimeout(resolveWait, ms);
      wake = () => {
        clearTimeout(timer);
        resolveWait();
      };
    }).finally(() => {
      wake = undefined;
    });
  }

  /**
   * The running worker: unlike `tick()`, it does not wait for a round's sends before it claims
   * again. It claims while its lanes send, as soon as enough of what it holds is written, so
   * the lanes never stand still while the database is asked; outcomes are written as they
   * come, many at once.
   */
  async function loop() {
    let failures = 0;
    while (!stopping) {
      let busy = false;
      try {
        // The fan-out and the claim side by side: neither needs the other's answer (what a
        // fan-out makes now is claimed next time).
        const [{ jobs, fannedOut }, claimed] = await Promise.all([
          runJobs().then(async (jobs) => ({ jobs, fannedOut: await fanOut() })),
          held < MAX_HELD
            ? claimAndEnqueue({
                limit: Math.min(CLAIM_BATCH, MAX_HELD - held),
                perEndpoint: holdPerEndpoint,
                startWithinMs: options.leaseMs - options.timeoutMs,
              }).then((claim) => claim.claimed)
            : 0,
        ]);
        busy = jobs > 0 || fannedOut > 0 || claimed > 0;
        failures = 0;
      } catch (err) {
        // The database is away or behind (migrations pending): wait longer each time.
        failures += 1;
        log.error({ err, failures }, 'webhook worker tick failed');
      }
      if (stopping) break;
      if (held > 0 && failures === 0) {
        // Sending: claim again once enough is written (woken), or at the poll interval.
        if (!busy || freedSinceClaim < holdPerEndpoint / 4) await sleep(options.pollIntervalMs);
        continue;
      }
      if (busy) continue;
      const waitMs = Math.min(options.pollIntervalMs * 2 ** Math.min(failures, 10), 30_000);
      await sleep(Math.max(waitMs, options.pollIntervalMs));
    }
    // Whatever is still held ends now (stopSignal): each is recorded before the loop returns.
    while (held > 0 || recording) {
      await (recording ?? new Promise((resolveSoon) => setTimeout(resolveSoon, 5)));
    }
  }

  return {
    tick,
    fanOut,
    sendDue,

    /** Runs until stopped: claims while it sends while there is work, else every poll interval. */
    start(): void {
      if (running) return;
      stopping = false;
      if (stopSignal.signal.aborted) stopSignal = stopController();
      running = loop();
      log.info({ pollIntervalMs: options.pollIntervalMs }, 'webhook worker started');
    },

    /**
     * Stops after the current claim. Attempts in flight are cut short and put back as due now
     * (the receiver may have had them: at least once), waiting ones are released, and all of
     * it is written before this resolves, so shutdown takes no longer than a database round
     * trip or two.
     */
    async stop(): Promise<void> {
      stopping = true;
      stopSignal.abort();
      wake?.();
      await running;
      while (held > 0 || recording) {
        await (recording ?? new Promise((resolveSoon) => setTimeout(resolveSoon, 5)));
      }
      running = undefined;
      pool.destroy();
    },
  };
}

/** The worker's stop signal: every attempt under way listens to it (many at once, by design). */
function stopController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

/** Items grouped by a key, in their order. */
function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
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
  freshForMs?: number;
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
    ...(deps.freshForMs !== undefined ? { freshForMs: deps.freshForMs } : {}),
  });
}
