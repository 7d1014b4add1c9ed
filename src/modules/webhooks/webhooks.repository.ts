import { type Kysely, sql, type Transaction } from 'kysely';
import { cursors, keysetPage, pageByCreatedAt } from '../../db/keyset.js';
import type {
  DB,
  WebhookDeliveryRow,
  WebhookDeliveryStatus,
  WebhookEndpointRow,
} from '../../db/schema.js';

/**
 * All SQL on `webhook_endpoints` and `webhook_deliveries`. Every function takes the account it
 * works in, except the two the worker uses to find work across accounts
 * ({@link endpointsBehindTheirFeed} and {@link claimDueDeliveries}); each of those is one
 * statement, so that under row-level security it can become one SECURITY DEFINER function.
 */

type Db = Kysely<DB> | Transaction<DB>;

// --- Endpoints ----------------------------------------------------------------------------

export async function insertEndpoint(
  trx: Transaction<DB>,
  values: {
    account_id: string;
    id: string;
    url: string;
    description: string | null;
    event_types: string[];
    secret_ciphertext: string;
    cursor_seq: number;
  },
): Promise<WebhookEndpointRow> {
  return trx
    .insertInto('webhook_endpoints')
    .values({ ...values, event_types: JSON.stringify(values.event_types) })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function countEndpoints(trx: Transaction<DB>, accountId: string): Promise<number> {
  const row = await trx
    .selectFrom('webhook_endpoints')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('account_id', '=', accountId)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function findEndpoint(
  db: Db,
  accountId: string,
  id: string,
): Promise<WebhookEndpointRow | undefined> {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Several endpoints at once (the worker's claims of one round), each in its own account. */
export async function findEndpoints(
  db: Db,
  refs: { accountId: string; id: string }[],
): Promise<WebhookEndpointRow[]> {
  if (refs.length === 0) return [];
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where((eb) =>
      eb.or(
        refs.map((ref) => eb.and([eb('account_id', '=', ref.accountId), eb('id', '=', ref.id)])),
      ),
    )
    .execute();
}

/** {@link findEndpoint}, locked until the transaction ends. */
export async function lockEndpoint(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<WebhookEndpointRow | undefined> {
  return trx
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

/** One page of the account's endpoints, oldest first. */
export function pageEndpoints(
  db: Db,
  accountId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const q = db.selectFrom('webhook_endpoints').selectAll().where('account_id', '=', accountId);
  return pageByCreatedAt(q, page);
}

/** Changes what the API shows of an endpoint: a new version. */
export async function updateEndpoint(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  values: {
    url?: string;
    description?: string | null;
    event_types?: string[];
    status?: 'active' | 'disabled';
    secret_ciphertext?: string;
    previous_secret_ciphertext?: string | null;
    previous_secret_expires_at?: Date | null;
  },
): Promise<WebhookEndpointRow> {
  const { event_types, ...rest } = values;
  return trx
    .updateTable('webhook_endpoints')
    .set((eb) => ({
      ...rest,
      ...(event_types ? { event_types: JSON.stringify(event_types) } : {}),
      version: eb('version', '+', 1),
      updated_at: sql<Date>`now()`,
    }))
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Deletes an endpoint; its deliveries go with it (the foreign key cascades). */
export async function deleteEndpoint(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<void> {
  await trx
    .deleteFrom('webhook_endpoints')
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .execute();
}

// --- Fan-out ------------------------------------------------------------------------------

/**
 * CROSS-ACCOUNT (the worker's): active endpoints whose account's feed has events past their
 * cursor, oldest cursor first. Reads `events` in the same statement: one query per tick
 * instead of one per endpoint. Under row-level security this becomes a SECURITY DEFINER
 * function; everything after it works in the account it returns.
 */
export async function endpointsBehindTheirFeed(
  db: Kysely<DB>,
  limit: number,
): Promise<{ account_id: string; id: string }[]> {
  // Across accounts: an owner-defined function (see the row-level security migration).
  const { rows } = await sql<{ account_id: string; id: string }>`
    select account_id, id from webhook_endpoints_behind_their_feed(${limit})`.execute(db);
  return rows;
}

/**
 * The endpoint's fan-out state, locked; undefined when it is gone, disabled, or another worker
 * is fanning it out right now (SKIP LOCKED: that worker moves the cursor).
 */
export async function lockEndpointForFanOut(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
): Promise<{ cursor_seq: number; event_types: string[] } | undefined> {
  const row = await trx
    .selectFrom('webhook_endpoints')
    .select(['cursor_seq', 'event_types'])
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .where('status', '=', 'active')
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
  return row && { cursor_seq: Number(row.cursor_seq), event_types: row.event_types };
}

/** Moves the fan-out cursor; not a change of the endpoint as the API shows it (no version). */
export async function advanceEndpointCursor(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  seq: number,
): Promise<void> {
  await trx
    .updateTable('webhook_endpoints')
    .set({ cursor_seq: seq })
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .execute();
}

/**
 * One fan-out step of an endpoint, in one statement: the account's next `limit` events past
 * `afterSeq` are read, those of `eventTypes` become pending deliveries (one per endpoint and
 * event, whatever runs twice), and the last seq read comes back for the cursor (null when there
 * were none). The events never travel to the worker and back.
 */
export async function fanOutDeliveries(
  trx: Transaction<DB>,
  step: {
    accountId: string;
    endpointId: string;
    afterSeq: number;
    eventTypes: string[];
    limit: number;
    now: Date;
    giveUpAt: Date;
  },
): Promise<{ lastSeq: number | null; made: number }> {
  const { accountId, endpointId, now } = step;
  const { rows } = await sql<{ last_seq: string | null; made: string }>`
    with batch as materialized (
      select seq, id, type from events
      where account_id = ${accountId} and seq > ${step.afterSeq}::bigint
      order by seq
      limit ${step.limit}
    ),
    made as (
      insert into webhook_deliveries (account_id, endpoint_id, event_id, event_seq, event_type,
        next_attempt_at, give_up_at, created_at, updated_at)
      select ${accountId}::uuid, ${endpointId}::uuid, b.id, b.seq, b.type,
        ${now}::timestamptz, ${step.giveUpAt}::timestamptz, ${now}::timestamptz,
        ${now}::timestamptz
      from batch b
      where b.type = any(${step.eventTypes}::text[])
      order by b.seq
      on conflict (account_id, endpoint_id, event_seq) do nothing
      returning 1
    )
    select (select max(seq) from batch) as last_seq, (select count(*) from made) as made
  `.execute(trx);
  const row = rows[0];
  return {
    lastSeq: row?.last_seq == null ? null : Number(row.last_seq),
    made: Number(row?.made ?? 0),
  };
}

// --- Sending ------------------------------------------------------------------------------

/** What the worker needs of a claimed delivery to send it and record what came of it. */
export type ClaimedDelivery = Pick<
  WebhookDeliveryRow,
  | 'account_id'
  | 'id'
  | 'endpoint_id'
  | 'event_seq'
  | 'attempts'
  | 'round_started_after'
  | 'next_attempt_at'
  | 'give_up_at'
>;

/**
 * CROSS-ACCOUNT (the worker's): claims up to `limit` deliveries that are due (pending, or
 * sending with a lease that ran out: its worker died) of active endpoints, for the worker
 * `owner`. An endpoint another worker holds an unexpired lease on is left to that worker (one
 * worker at a time serves an endpoint); of the others, `owner` ends up holding at most
 * `perEndpoint` per endpoint, its earlier unexpired claims included, so a worker may claim
 * more while it still sends what it claimed before. Each claim adds one to `attempts`, which
 * fences what the claimant may write afterwards (see {@link recordAttempts}). SKIP LOCKED:
 * concurrent workers never claim the same row. One statement, an owner-defined function
 * (the claim-deliveries-per-worker migration holds the query); each account's claims are then
 * sent bound to it.
 */
export async function claimDueDeliveries(
  db: Kysely<DB>,
  options: {
    now: Date;
    leaseUntil: Date;
    limit: number;
    perEndpoint: number;
    /** The claiming worker; a claim without one is nobody's (as a dead worker's would be). */
    owner?: string | null;
  },
): Promise<ClaimedDelivery[]> {
  const { now, leaseUntil, limit, perEndpoint } = options;
  const owner = options.owner ?? null;
  // Only the columns a send needs: a claim is hundreds of rows, each parsed.
  const { rows } = await sql<ClaimedDelivery>`
    select account_id, id, endpoint_id, event_seq, attempts, round_started_after,
      next_attempt_at, give_up_at
    from claim_due_webhook_deliveries(
      ${now}, ${leaseUntil}, ${limit}, ${perEndpoint}, ${owner}::uuid)`.execute(db);
  return rows;
}

/** What one attempt came to. */
export interface AttemptOutcome {
  status: Exclude<WebhookDeliveryStatus, 'sending'>;
  /**
   * Claimed but not attempted (the round ran out of time, or the worker stops): back to
   * pending with its attempt count and last outcome as they were.
   */
  released?: boolean;
  nextAttemptAt?: Date;
  attemptedAt: Date | null;
  statusCode: number | null;
  errorCode: string | null;
  durationMs: number | null;
  deliveredAt?: Date;
}

/**
 * Records the outcomes of a round's attempts in one statement, each only while its claim is
 * still that attempt's (status `sending`, `attempts` unchanged): a worker that lost its lease
 * cannot record over a newer attempt. Returns the ids recorded; the others were claimed again
 * since (the lease ran out), cancelled, or their endpoint deleted.
 */
export async function recordAttempts(
  db: Kysely<DB>,
  attempts: {
    claim: { accountId: string; id: string; attempt: number };
    outcome: AttemptOutcome;
  }[],
  now: Date,
): Promise<Set<string>> {
  if (attempts.length === 0) return new Set();
  const rows = attempts.map(({ claim, outcome }) => ({
    account_id: claim.accountId,
    id: claim.id,
    attempt: claim.attempt,
    status: outcome.status,
    next_attempt_at: outcome.nextAttemptAt?.toISOString() ?? null,
    attempted_at: outcome.attemptedAt?.toISOString() ?? null,
    status_code: outcome.statusCode,
    error_code: outcome.errorCode,
    duration_ms: outcome.durationMs,
    delivered_at: outcome.deliveredAt?.toISOString() ?? null,
    released: outcome.released ?? false,
  }));
  // Each outcome's row is found by its key, one at a time (LIMIT 1: with statistics taken while
  // nothing was being sent, the planner otherwise read every delivery being sent for each batch
  // and hash-joined), then updated by the place (ctid) of the version found. The fence is the
  // status and attempt number, checked again on the row as it is when updated: a row changed
  // meanwhile (cancelled by an erasure, claimed again after its lease ran out) keeps what the
  // other writer wrote.
  const { rows: recorded } = await sql<{ id: string }>`
    with u as materialized (
      select * from json_to_recordset(${JSON.stringify(rows)}::json) as u(
        account_id uuid, id uuid, attempt int, status text, next_attempt_at timestamptz,
        attempted_at timestamptz, status_code int, error_code text, duration_ms int,
        delivered_at timestamptz, released boolean)
    ),
    found as materialized (
      select u.*, d.tid from u
      cross join lateral (
        select d.ctid as tid, d.status as held_status, d.attempts as held_attempt
        from webhook_deliveries d
        where d.account_id = u.account_id and d.id = u.id
        limit 1
      ) d
      where d.held_status = 'sending' and d.held_attempt = u.attempt
    )
    update webhook_deliveries w
    set status = u.status,
      -- A released claim gives its number back: no attempt was made under it, and the one
      -- who held it is this worker, which forgets it now.
      attempts = case when u.released then w.attempts - 1 else w.attempts end,
      lease_expires_at = null,
      next_attempt_at = coalesce(u.next_attempt_at, w.next_attempt_at),
      last_attempt_at = coalesce(u.attempted_at, w.last_attempt_at),
      last_status_code = case when u.attempted_at is null then w.last_status_code
        else u.status_code end,
      last_duration_ms = case when u.attempted_at is null then w.last_duration_ms
        else u.duration_ms end,
      last_error_code = case when u.released then w.last_error_code else u.error_code end,
      delivered_at = coalesce(u.delivered_at, w.delivered_at),
      lease_owner = null,
      updated_at = ${now}
    from found u
    where w.ctid = u.tid and w.account_id = u.account_id and w.id = u.id
      and w.status = 'sending' and w.attempts = u.attempt
    returning w.id`.execute(db);
  return new Set(recorded.map((row) => row.id));
}

/**
 * Art. 17: cancels what is still to be sent of the given events (an erased contact's), in the
 * erasure's transaction. A delivery being sent right now is cancelled too; its worker's
 * outcome is then not recorded (see recordAttempts).
 */
export async function cancelDeliveriesOfEvents(
  trx: Transaction<DB>,
  accountId: string,
  eventSeqs: number[],
  now: Date,
): Promise<number> {
  if (eventSeqs.length === 0) return 0;
  const result = await trx
    .updateTable('webhook_deliveries')
    .set({
      status: 'cancelled',
      lease_expires_at: null,
      last_error_code: 'event_erased',
      updated_at: now,
    })
    .where('account_id', '=', accountId)
    // By (account, endpoint, seq), the deliveries' own key: an account has a few endpoints.
    .where('endpoint_id', 'in', (eb) =>
      eb.selectFrom('webhook_endpoints').select('id').where('account_id', '=', accountId),
    )
    .where('event_seq', 'in', eventSeqs)
    .where('status', 'in', ['pending', 'sending'])
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

// --- The delivery log ---------------------------------------------------------------------

/**
 * One page of an endpoint's deliveries, newest first: by their events' order, the order the
 * fan-out made them in (the deliveries' own key serves it).
 */
export function pageDeliveries(
  db: Db,
  accountId: string,
  endpointId: string,
  page: { limit: number; cursor?: string | undefined; status?: WebhookDeliveryStatus | undefined },
) {
  let q = db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('endpoint_id', '=', endpointId);
  if (page.status) q = q.where('status', '=', page.status);
  return keysetPage(q, {
    codec: cursors.eventSeq,
    keys: [
      {
        column: 'event_seq',
        direction: 'desc',
        cursorValue: (row) => Number(row.event_seq),
        toSql: (v) => sql`${v}::bigint`,
      },
    ],
    limit: page.limit,
    cursor: page.cursor,
  });
}

/** One delivery of an endpoint, locked until the transaction ends. */
export async function lockDelivery(
  trx: Transaction<DB>,
  accountId: string,
  endpointId: string,
  id: string,
): Promise<WebhookDeliveryRow | undefined> {
  return trx
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('endpoint_id', '=', endpointId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

/**
 * Starts a new round of attempts (a redelivery): due now, with a fresh retry window, the
 * back-off starting over. `attempts` keeps counting, so old claims stay fenced off.
 */
export async function restartDelivery(
  trx: Transaction<DB>,
  accountId: string,
  id: string,
  times: { now: Date; giveUpAt: Date },
): Promise<WebhookDeliveryRow> {
  return trx
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: 'pending',
      round_started_after: eb.ref('attempts'),
      next_attempt_at: times.now,
      give_up_at: times.giveUpAt,
      lease_expires_at: null,
      updated_at: times.now,
    }))
    .where('account_id', '=', accountId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}
