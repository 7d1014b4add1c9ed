import { hkdfSync } from 'node:crypto';
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onSendHookHandler,
  preHandlerHookHandler,
} from 'fastify';
import { type Kysely, sql, type Transaction } from 'kysely';
import { z } from 'zod';
import { isDatabaseUnavailable } from '../db/database.js';
import type { DB } from '../db/schema.js';
import { withTenantOrNone } from '../db/tenant.js';
import { BadRequestError, ConflictError, UnprocessableError } from '../errors.js';
import { canonicalJson } from '../lib/canonical-json.js';
import { keyedHash } from '../lib/keyed-hash.js';
import { secretBox } from '../lib/secret-box.js';
import { accountIdOf } from './request-context.js';
import { IdempotencyKey } from './schemas.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `'handler'`: the handler honours `Idempotency-Key` itself and declares the header (an
     * import resumes by its key). Other POST routes get the store's hooks, or a refusal (see
     * `idempotentPosts`).
     */
    idempotency?: 'handler';
    /**
     * The answer holds a secret shown once (a webhook's signing secret): the store keeps it
     * encrypted, so the database never holds the secret in clear.
     */
    secretInResponse?: true;
  }
}

/** How long a key is remembered: retries come within minutes, not days (Stripe keeps 24 h). */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3_600_000;

/**
 * A claim older than this belongs to a request that died (process killed between its commit
 * and recording the answer); the key may then be claimed again. Well above any request timeout.
 */
export const IDEMPOTENCY_CLAIM_TIMEOUT_MS = 5 * 60_000;

/** Keyed, so the stored hash of a body that holds an address cannot be guessed back. */
const REQUEST_HASH_PREFIX = 'custodian/idempotency-request/v1\u0000';

interface Claim {
  accountId: string;
  key: string;
}

/** 422: the key was used for another request. Routes with their own key handling use it too. */
export function idempotencyKeyReused(detail: string) {
  return new UnprocessableError('idempotency_key_reused', detail);
}

/** 409: the first request with the key has not finished. */
export function idempotencyKeyInProgress(detail: string) {
  return new ConflictError('idempotency_key_in_progress', detail);
}

/** 400: the operation keeps no answers by key; a retry with the key would not be safe. */
export function idempotencyKeyUnsupported(detail: string) {
  return new BadRequestError('idempotency_key_unsupported', detail);
}

/** The header as every operation that honours it declares it. */
export const IdempotencyKeyHeader = IdempotencyKey.optional().describe(
  'Makes the request safe to retry: the same key and body replay the first answer ' +
    '(`Idempotent-Replayed: true`), without doing anything again; the same key with another ' +
    'body is refused (422 `idempotency_key_reused`), and while the first request runs, 409 ' +
    '`idempotency_key_in_progress`. Keys are per account and kept 24 hours.',
);

/** The headers a replay restores besides the body: where the created resource is, its version. */
const REPLAYED_HEADERS = { location: 'response_location', etag: 'response_etag' } as const;

/** The requests that claimed a key and must record their answer (set in preHandler). */
const claims = new WeakMap<FastifyRequest, Claim>();

/**
 * `Idempotency-Key` for POST routes (the IETF httpapi draft's semantics): the returned hooks
 * are attached to every POST route of an account by `idempotentPosts`.
 *
 * - First request with a key: the key is claimed (`in_progress`) in its own statement before
 *   the handler runs, and completed with the response (status < 500) when it is sent; a 5xx
 *   releases the claim so the client can retry.
 * - Same key, same method, path and body: the stored response (status, body, `Location`,
 *   `ETag`) is replayed with `Idempotent-Replayed: true`, nothing is done again.
 * - Same key, another request: 422 `idempotency_key_reused`.
 * - Same key while the first request is still running: 409 `idempotency_key_in_progress`.
 *
 * Keys are per account and kept {@link IDEMPOTENCY_KEY_TTL_MS}. The request body is kept only
 * as a keyed hash; the stored response is deleted when the contact it mentions is erased.
 */
export function idempotency(deps: { db: Kysely<DB>; secret: string }) {
  const { db, secret } = deps;
  const sealedAnswers = secretBox(
    Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'custodian/idempotent-answers/v1', 32)),
  );
  const sealedContext = (claim: Claim) => `idempotency/${claim.accountId}/${claim.key}`;
  const holdsSecret = (request: FastifyRequest) =>
    request.routeOptions.config.secretInResponse === true;

  // The store's hooks run outside the route's handler: each binds the caller's account.
  const preHandler = (request: FastifyRequest, reply: FastifyReply) =>
    withTenantOrNone(request.actor?.accountId, () => claimOrReplay(request, reply));
  const onSend = (request: FastifyRequest, reply: FastifyReply, payload: unknown) =>
    withTenantOrNone(request.actor?.accountId, () => recordAnswer(request, reply, payload));

  async function claimOrReplay(request: FastifyRequest, reply: FastifyReply) {
    const key = request.headers['idempotency-key'];
    if (typeof key !== 'string') return;
    // Keys are kept per account; an operator (the `user` routes) has none.
    if (request.actor?.accountId === null) {
      throw idempotencyKeyUnsupported(
        'Operators’ requests are not kept by Idempotency-Key; send the request without it.',
      );
    }
    const accountId = accountIdOf(request);
    const path = request.url.split('?')[0] ?? request.url;
    const requestHash = keyedHash(
      secret,
      `${REQUEST_HASH_PREFIX}${request.method}\n${path}\n${canonicalJson(request.body ?? null)}`,
    );
    const now = Date.now();
    // Expired keys of this account, and this key's abandoned claim, make room.
    await db
      .deleteFrom('idempotency_keys')
      .where('account_id', '=', accountId)
      .where((eb) =>
        eb.or([
          eb('created_at', '<', new Date(now - IDEMPOTENCY_KEY_TTL_MS)),
          eb.and([
            eb('key', '=', key),
            eb('status', '=', 'in_progress'),
            eb('created_at', '<', new Date(now - IDEMPOTENCY_CLAIM_TIMEOUT_MS)),
          ]),
        ]),
      )
      .execute();
    const claimed = await db
      .insertInto('idempotency_keys')
      .values({
        account_id: accountId,
        key,
        method: request.method,
        path,
        request_hash: requestHash,
      })
      .onConflict((oc) => oc.columns(['account_id', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();
    if (claimed) {
      claims.set(request, { accountId, key });
      return;
    }
    const existing = await db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('account_id', '=', accountId)
      .where('key', '=', key)
      .executeTakeFirst();
    if (existing && existing.request_hash !== requestHash) {
      throw idempotencyKeyReused(
        'This Idempotency-Key was used with another request; use a new key for a new request.',
      );
    }
    if (existing?.status !== 'completed' || existing.response_status === null) {
      throw idempotencyKeyInProgress(
        'A request with this Idempotency-Key is still in progress; retry later.',
      );
    }
    let body = existing.response_body ?? '';
    if (holdsSecret(request)) {
      const opened = sealedAnswers.open(body, sealedContext({ accountId, key }));
      if (opened === null) {
        throw idempotencyKeyReused(
          'The answer stored for this Idempotency-Key can no longer be read; use a new key.',
        );
      }
      body = opened;
    }
    reply.code(existing.response_status).header('idempotent-replayed', 'true');
    if (existing.response_content_type) reply.type(existing.response_content_type);
    for (const [header, column] of Object.entries(REPLAYED_HEADERS)) {
      const value = existing[column];
      if (value !== null) reply.header(header, value);
    }
    return reply.send(body);
  }

  async function recordAnswer(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const claim = claims.get(request);
    if (!claim) return payload;
    claims.delete(request);
    const where = db
      .updateTable('idempotency_keys')
      .where('account_id', '=', claim.accountId)
      .where('key', '=', claim.key);
    try {
      if (reply.statusCode < 500 && (typeof payload === 'string' || payload === undefined)) {
        const contentType = reply.getHeader('content-type');
        const header = (name: string) => {
          const value = reply.getHeader(name);
          return typeof value === 'string' ? value : null;
        };
        await where
          .set({
            status: 'completed',
            response_status: reply.statusCode,
            response_content_type: typeof contentType === 'string' ? contentType : null,
            response_body: holdsSecret(request)
              ? sealedAnswers.seal(payload ?? '', sealedContext(claim))
              : (payload ?? ''),
            response_location: header('location'),
            response_etag: header('etag'),
            completed_at: new Date(),
          })
          .execute();
      } else {
        // A failure on our side: let the client retry with the same key.
        await db
          .deleteFrom('idempotency_keys')
          .where('account_id', '=', claim.accountId)
          .where('key', '=', claim.key)
          .execute();
      }
    } catch (err) {
      // The answer itself is not lost; the claim expires after IDEMPOTENCY_CLAIM_TIMEOUT_MS.
      // A database outage is logged once by the database module, not once per request.
      if (isDatabaseUnavailable(err))
        request.log.debug({ err }, 'idempotent response not recorded');
      else request.log.error({ err }, 'could not record the idempotent response');
    }
    return payload;
  }

  return { preHandler, onSend };
}

export type IdempotencyStore = ReturnType<typeof idempotency>;

/** How a POST route treats `Idempotency-Key` (see `idempotentPosts`). */
export type IdempotencyMode = 'stored' | 'handler' | 'refused';

/** How each POST route treats `Idempotency-Key`, per app (by its HTTP server), for tests. */
const modesByServer = new WeakMap<object, Map<string, IdempotencyMode>>();

/** How each POST route of `app` treats `Idempotency-Key`, by `POST <url>`. */
export function idempotencyModesOf(app: FastifyInstance): ReadonlyMap<string, IdempotencyMode> {
  return modesByServer.get(app.server) ?? new Map();
}

function asArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

const refuse: preHandlerHookHandler = async (request) => {
  if (request.headers['idempotency-key'] === undefined) return;
  throw idempotencyKeyUnsupported(
    'This operation keeps no answers by Idempotency-Key (it needs no account, or acts for ' +
      'the provider); send it without the header.',
  );
};

/**
 * Gives every POST route registered after it one treatment of `Idempotency-Key`, so none
 * ignores the header silently:
 * - `stored`: routes of an account (a permission, or any signed-in user) get the store's
 *   hooks, and the header is added to their schema (validated, and declared in the contract);
 * - `handler`: the route honours the key itself (`config.idempotency: 'handler'`);
 * - `refused`: public and operator routes have no account to keep answers under: a request
 *   with the header is refused (400 `idempotency_key_unsupported`) before anything is done.
 */
export function idempotentPosts(app: FastifyInstance, store: IdempotencyStore): void {
  const modes = new Map<string, IdempotencyMode>();
  modesByServer.set(app.server, modes);
  app.addHook('onRoute', (route) => {
    if (!asArray(route.method).some((method) => method.toUpperCase() === 'POST')) return;
    const auth = route.config?.auth;
    const key = `POST ${route.url}`;
    if (route.config?.idempotency === 'handler') {
      modes.set(key, 'handler');
      return;
    }
    if (auth === undefined || auth === 'public' || auth === 'operator') {
      modes.set(key, 'refused');
      route.preValidation = [...asArray(route.preValidation), refuse];
      return;
    }
    modes.set(key, 'stored');
    const schema = route.schema ?? {};
    const headers = schema.headers;
    route.schema = {
      ...schema,
      headers:
        headers instanceof z.ZodObject
          ? headers.extend({ 'idempotency-key': IdempotencyKeyHeader })
          : z.looseObject({ 'idempotency-key': IdempotencyKeyHeader }),
    };
    // A route may attach the store's hooks itself (to order them among its own): once only.
    const preHandlers = asArray(route.preHandler);
    if (!preHandlers.includes(store.preHandler as preHandlerHookHandler)) {
      route.preHandler = [...preHandlers, store.preHandler as preHandlerHookHandler];
      route.onSend = [...asArray(route.onSend), store.onSend as onSendHookHandler];
    }
  });
}

/**
 * Art. 17: forgets every stored idempotent request that names an erased contact — the stored
 * answer mentions its id or address (`mentions`), or the client-chosen key itself holds one
 * of its addresses (`keyNames`, e.g. `create-jana@example.si`). The rows go whole: a retry
 * with such a key then runs again and meets the suppression list instead of a replay.
 */
export async function forgetIdempotentRequests(
  trx: Transaction<DB>,
  accountId: string,
  mentions: { contactId: string; email: string },
  keyNames: (key: string) => boolean,
): Promise<void> {
  await trx
    .deleteFrom('idempotency_keys')
    .where('account_id', '=', accountId)
    .where(
      sql<boolean>`(position(${mentions.contactId} in coalesce(response_body, '')) > 0
        or position(${mentions.email} in lower(coalesce(response_body, ''))) > 0)`,
    )
    .execute();
  // Keys live at most a day, and only those with an `@` can name an address.
  const candidates = await trx
    .selectFrom('idempotency_keys')
    .select('key')
    .where('account_id', '=', accountId)
    .where(sql<boolean>`position('@' in key) > 0`)
    .execute();
  const named = candidates.map((row) => row.key).filter(keyNames);
  if (named.length > 0) {
    await trx
      .deleteFrom('idempotency_keys')
      .where('account_id', '=', accountId)
      .where('key', 'in', named)
      .execute();
  }
}
