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

/** New pending deliveries; one per (endpoint, event) whatever runs twice. */
export async function insertDeliveries(
  trx: Transaction<DB>,
  rows: {
    account_id: string;
    endpoint_id: string;
    event_id: string;
    event_seq: number;
    event_type: string;
    next_attempt_at: Date;
    give_up_at: Date;
    created_at: Date;
    updated_at: Date;
  }[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const inserted = await trx
    .insertInto('webhook_deliveries')
    .values(rows)
    .onConflict((oc) => oc.columns(['account_id', 'endpoint_id', 'event_id']).doNothing())
    .executeTakeFirst();
  return Number(inserted.numInsertedOrUpdatedRows ?? 0n);
}

// --- Sending ------------------------------------------------------------------------------

/**
 * CROSS-ACCOUNT (the worker's): claims up to `limit` deliveries that are due (pending, or
 * sending with a lease that ran out: its worker died) of active endpoints, at most
 * `perEndpoint` in flight per endpoint. Each claim adds one to `attempts`, which fences what
 * the claimant may write afterwards (see {@link recordAttempt}). SKIP LOCKED: concurrent
 * workers never claim the same row. One statement; under row-level security it becomes a
 * SECURITY DEFINER function.
 */
export async function claimDueDeliveries(
  db: Kysely<DB>,
  options: { now: Date; leaseUntil: Date; limit: number; perEndpoint: number },
): Promise<WebhookDeliveryRow[]> {
  const { now, leaseUntil, limit, perEndpoint } = options;
  // Across accounts, claimed in one statement by an owner-defined function (see the row-level
  // security migration); each claim is then attempted bound to its account.
  const { rows } = await sql<WebhookDeliveryRow>`
    select * from claim_due_webhook_deliveries(${now}, ${leaseUntil}, ${limit}, ${perEndpoint})`.execute(
    db,
  );
  return rows;
}

/** What one attempt came to. */
export interface AttemptOutcome {
  status: Exclude<WebhookDeliveryStatus, 'sending'>;
  nextAttemptAt?: Date;
  attemptedAt: Date | null;
  statusCode: number | null;
  errorCode: string | null;
  durationMs: number | null;
  deliveredAt?: Date;
}

/**
 * Records an attempt's outcome, only while the claim is still this attempt's (status
 * `sending`, `attempts` unchanged): false when another worker has claimed the delivery again
 * since (the lease ran out), it was cancelled, or its endpoint deleted.
 */
export async function recordAttempt(
  db: Kysely<DB>,
  claim: { accountId: string; id: string; attempt: number },
  outcome: AttemptOutcome,
  now: Date,
): Promise<boolean> {
  const result = await db
    .updateTable('webhook_deliveries')
    .set({
      status: outcome.status,
      lease_expires_at: null,
      ...(outcome.nextAttemptAt ? { next_attempt_at: outcome.nextAttemptAt } : {}),
      ...(outcome.attemptedAt
        ? {
            last_attempt_at: outcome.attemptedAt,
            last_status_code: outcome.statusCode,
            last_error_code: outcome.errorCode,
            last_duration_ms: outcome.durationMs,
          }
        : { last_error_code: outcome.errorCode }),
      ...(outcome.deliveredAt ? { delivered_at: outcome.deliveredAt } : {}),
      updated_at: now,
    })
    .where('account_id', '=', claim.accountId)
    .where('id', '=', claim.id)
    .where('status', '=', 'sending')
    .where('attempts', '=', claim.attempt)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/**
 * Art. 17: cancels what is still to be sent of the given events (an erased contact's), in the
 * erasure's transaction. A delivery being sent right now is cancelled too; its worker's
 * outcome is then not recorded (see recordAttempt).
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
    .where('event_seq', 'in', eventSeqs)
    .where('status', 'in', ['pending', 'sending'])
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

// --- The delivery log ---------------------------------------------------------------------

/** One page of an endpoint's deliveries, newest first (ids are time-ordered). */
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
    codec: cursors.contactId,
    keys: [{ column: 'id', direction: 'desc', cursorValue: (row) => row.id }],
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
