import { createPrivateKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The one place that reads the environment. Everything else receives a frozen `Config`.
 * Every variable here is listed, grouped and commented, in `.env.example`.
 */

const BOOL_WORDS = ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off', ''] as const;

const bool = (fallback: boolean) =>
  z
    .enum(BOOL_WORDS)
    .optional()
    .transform((v) =>
      v === undefined || v === '' ? fallback : ['true', '1', 'yes', 'on'].includes(v),
    );

/** A boolean that stays `undefined` when unset, so a default can depend on other settings. */
const optionalBool = z
  .enum(BOOL_WORDS)
  .optional()
  .transform((v) =>
    v === undefined || v === '' ? undefined : ['true', '1', 'yes', 'on'].includes(v),
  );

const int = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** proxy-addr's names for the reserved ranges (127/8 and ::1, 169.254/16, 10/8 + 172.16/12 + ...). */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address, an address/prefix-length CIDR, or one of proxy-addr's range names. */
function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.has(entry)) return true;
  const [address = '', bits, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * TRUST_PROXY, parsed here into what it means, so a typo stops the start instead of silently
 * trusting nothing: unset/false: no proxy; true: every hop; a whole number: that many hops in
 * front of the service; otherwise a comma-separated list of proxy addresses/CIDRs.
 */
const trustProxy = z
  .string()
  .optional()
  .transform((raw, ctx): false | true | number | string[] => {
    const value = raw?.trim().toLowerCase() ?? '';
    if (value === '' || value === 'false') return false;
    if (value === 'true') return true;
    if (/^\d+$/.test(value)) {
      const hops = Number(value);
      if (hops <= 100) return hops === 0 ? false : hops;
    }
    const entries = value.split(',').map((entry) => entry.trim());
    const bad = entries.filter((entry) => !isProxyAddress(entry));
    if (bad.length === 0) return entries;
    ctx.addIssue({
      code: 'custom',
      message:
        'must be true, false, a hop count (0..100) or a comma-separated list of proxy ' +
        `addresses/CIDRs; not valid: ${bad.map((entry) => JSON.stringify(entry)).join(', ')}`,
    });
    return z.NEVER;
  });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const ED25519_KEY_FORMS =
  'must be an Ed25519 private key: PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), or that PEM ' +
  'base64-encoded on one line';

/**
 * AUDIT_SIGNING_KEY, parsed here so that a wrong key stops the start rather than the first
 * checkpoint. PEM as it is (line breaks may be written as `\n`, as env files and secret stores
 * often need), or the whole PEM base64-encoded. The value is never echoed in an error.
 */
const ed25519PrivateKey = optionalString.transform((raw, ctx): KeyObject | undefined => {
  if (raw === undefined) return undefined;
  const pem = raw.startsWith('-----BEGIN')
    ? raw.replaceAll('\\n', '\n')
    : Buffer.from(raw, 'base64').toString('utf8');
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' });
    if (key.asymmetricKeyType === 'ed25519') return key;
  } catch {
    // not a key at all: reported below, like a key of another type
  }
  ctx.addIssue({ code: 'custom', message: ED25519_KEY_FORMS });
  return z.NEVER;
});

/**
 * WEBHOOK_SECRET_KEY: 32 random bytes in base64 (or base64url), the AES-256-GCM key of the
 * webhook endpoints' signing secrets. The value is never echoed in an error.
 */
const aes256Key = optionalString.transform((raw, ctx): Buffer | undefined => {
  if (raw === undefined) return undefined;
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(raw) ? Buffer.from(raw, 'base64') : Buffer.alloc(0);
  if (key.length === 32) return key;
  ctx.addIssue({
    code: 'custom',
    message: 'must be 32 random bytes in base64, e.g. from `openssl rand -base64 32`',
  });
  return z.NEVER;
});

/**
 * zod skips an object's refinements once any field has failed; this runs the cross-field checks
 * anyway, so that one start lists every bad variable instead of revealing them one by one.
 */
const ALWAYS_CHECK = { when: () => true };

const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    // Outside production only: the instant the service clock shows at start; it runs on in real
    // time from there, so deadlines and expiries can be tried out at another date.
    CLOCK_START: optionalString.pipe(
      z.iso
        .datetime({ offset: true, error: 'must be an instant such as 2027-01-31T09:00:00Z' })
        .optional(),
    ),

    // HTTP server
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(3000, 0, 65535),
    PUBLIC_BASE_URL: optionalString.pipe(z.url().optional()),
    TRUST_PROXY: trustProxy,
    TLS_CERT_FILE: optionalString,
    TLS_KEY_FILE: optionalString,
    HSTS_MAX_AGE_SECONDS: int(31_536_000),
    BODY_LIMIT_BYTES: int(1_048_576, 1024),
    // Time to receive a whole request body, on every route but bulk imports: a client that
    // trickles its body holds a connection (and memory) meanwhile.
    BODY_TIMEOUT_MS: int(30_000, 1),
    // The same for bulk import uploads, which are written while their body arrives, so it
    // bounds how long an import may take (0 = no limit). Node's requestTimeout, the outer bound
    // of every request. A connection that stops sending is dropped after CONNECTION_TIMEOUT_MS.
    IMPORT_BODY_TIMEOUT_MS: int(3_600_000),
    // Open connections beyond this are refused (0 = no limit).
    MAX_CONNECTIONS: int(1_024),
    CONNECTION_TIMEOUT_MS: int(10_000),
    KEEP_ALIVE_TIMEOUT_MS: int(72_000),
    SHUTDOWN_GRACE_MS: int(10_000, 0),

    // Logging
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    LOG_PRETTY: bool(false),

    // Database: Postgres when DATABASE_URL is set, embedded Postgres (PGlite) otherwise
    DATABASE_URL: optionalString,
    // The schema owner's connection, for migrations (`npm run migrate`, MIGRATE_ON_START).
    // Unset: DATABASE_URL, whose login then switches to DATABASE_SERVICE_ROLE per connection.
    MIGRATION_DATABASE_URL: optionalString,
    // The role the service acts as: owns nothing, holds only the grants migrations give it.
    // Unset: DATABASE_URL's user when MIGRATION_DATABASE_URL is set, else custodian_service.
    DATABASE_SERVICE_ROLE: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
      .optional(),
    // The Postgres schema that holds Custodian's tables (and its migration history).
    DATABASE_SCHEMA: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
      .default('public'),
    DATA_DIR: z.string().min(1).default('./data'),
    // A DATA_DIR lock whose heartbeat is this old is a crashed process's and is taken over.
    DATA_DIR_LOCK_STALE_MS: int(10_000, 2_000),
    // Unset: migrate on start for the embedded engine only; with Postgres run `npm run migrate`.
    MIGRATE_ON_START: optionalBool,
    DB_POOL_MAX: int(10, 1, 1000),
    DB_CONNECTION_TIMEOUT_MS: int(5_000, 1),
    DB_STATEMENT_TIMEOUT_MS: int(15_000, 0),
    // Client-side: a frozen or unreachable server never answers, so its statement_timeout
    // cannot fire. Unset: the statement timeout plus 5 s (none without one), so that on a live
    // server the statement timeout fires first and keeps the connection.
    DB_QUERY_TIMEOUT_MS: optionalString.pipe(z.coerce.number<string>().int().min(0).optional()),
    DB_IDLE_TIMEOUT_MS: int(30_000, 0),

    // Rate limiting (shared across instances through Redis when REDIS_URL is set)
    RATE_LIMIT_MAX: int(600, 1),
    RATE_LIMIT_WINDOW: z.string().min(1).default('1 minute'),
    REDIS_URL: optionalString,
    // A Redis command slower than this fails, and the request goes through without counting
    // (rate limits fail open), so a stalled Redis cannot stall the API.
    REDIS_COMMAND_TIMEOUT_MS: int(250, 10, 10_000),

    // Identity and access
    // Secret for signing access tokens (HS256), at least 32 characters; required in production.
    // Unset elsewhere: a random secret per process (tokens die with the process).
    JWT_SECRET: optionalString.pipe(
      z.string().min(32, 'must be at least 32 characters').optional(),
    ),
    ACCESS_TOKEN_TTL: z
      .string()
      .regex(/^\d+[smhd]$/, 'must look like 15m, 1h or 900s')
      .default('15m'),
    REFRESH_TOKEN_TTL_DAYS: int(30, 1, 365),
    // Seconds after a refresh token was used in which presenting it again (a second tab
    // refreshing at the same moment) returns the same successor instead of ending the session.
    // 0: every reuse ends the session.
    REFRESH_REUSE_GRACE_SECONDS: int(10, 0, 300),
    SIGNUP: z.enum(['open', 'closed']).default('open'),
    PASSWORD_MIN_LENGTH: int(15, 12, 64),
    PASSWORD_MAX_AGE_DAYS: int(365, 0),
    // A set-password link (an operator-made account's owner chooses their password) stays
    // valid this long; an expired one is re-issued by an operator.
    PASSWORD_SETUP_TTL_HOURS: int(72, 1, 24 * 30),
    LOGIN_MAX_PER_IP_PER_MINUTE: int(30, 1),
    // Failed logins allowed per (address, client network) pair within the window; past it that
    // client alone gets 429 for the address, so an attacker cannot lock the owner out.
    LOGIN_MAX_FAILURES_PER_CLIENT: int(10, 1),
    LOGIN_CLIENT_WINDOW_MINUTES: int(15, 1, 1440),
    // Consecutive failures per address (from anywhere) before each further attempt waits
    // 1, 2, 4, ... seconds, capped at LOGIN_BACKOFF_MAX_SECONDS: a delay, not a lockout.
    LOGIN_BACKOFF_AFTER_FAILURES: int(20, 1, 100),
    LOGIN_BACKOFF_MAX_SECONDS: int(60, 1, 3600),
    // NIST SP 800-63B-4: at most 100 consecutive failed attempts per account.
    LOGIN_LOCKOUT_THRESHOLD: int(100, 1, 100),
    // How long an instance may reuse a verified session without asking the database; changes
    // made elsewhere are seen within this window. 0 disables the cache.
    AUTH_CACHE_TTL_MS: int(5_000, 0, 60_000),

    // Personal data
    // Key for the keyed hashes (HMAC-SHA256) that replace erased addresses (Art. 17) and feed
    // the suppression list; at least 32 characters; required in production. Never rotate it
    // without re-keying the suppression list.
    HASH_SECRET: optionalString.pipe(
      z.string().min(32, 'must be at least 32 characters').optional(),
    ),
    // Double opt-in confirmation and withdrawal links stay valid this long.
    CONSENT_TOKEN_TTL_HOURS: int(72, 1, 24 * 30),
    // A data-subject request's identity-verification link, and its encrypted export, last this long.
    REQUEST_VERIFICATION_TTL_HOURS: int(168, 1, 24 * 30),
    REQUEST_EXPORT_TTL_DAYS: int(7, 1, 90),
    // A running import renews its lease every third of this; a job whose lease ran out (its
    // process died) shows as `interrupted` and can be resumed with the same Idempotency-Key.
    IMPORT_LEASE_SECONDS: int(60, 1, 3600),
    // After an erasure, the tables it touched are vacuumed (their dead row versions, which
    // still hold the erased data, reclaimed) at most once per this interval; 0 turns it off.
    ERASURE_VACUUM_INTERVAL_MS: int(60_000, 0, 86_400_000),
    // Embedded engine only (no autovacuum there): how often tables past autovacuum's vacuum or
    // analyse threshold are vacuumed or get fresh statistics. 0 turns it off.
    EMBEDDED_ANALYZE_INTERVAL_MS: int(15_000, 0, 86_400_000),
    // Largest import body in bytes (413 when the Content-Length says more, or once more arrived).
    IMPORT_MAX_BYTES: int(2 * 1024 ** 3, 1),
    // How long one upload of an import may run; past it the import stops, failed `too_slow`.
    IMPORT_MAX_DURATION_MS: int(3_600_000, 1),
    // Row errors kept per import for the error report; past it only their number is counted.
    IMPORT_MAX_STORED_ERRORS: int(10_000, 0),
    // An import stops, failed `too_many_errors`, once at least IMPORT_ERROR_RATE_MIN_ROWS rows
    // were read and more than this fraction of them was rejected (1 never stops).
    IMPORT_MAX_ERROR_RATE: z.coerce.number().min(0).max(1).default(0.5),
    IMPORT_ERROR_RATE_MIN_ROWS: int(1000, 1),

    // Audit checkpoints: the audit chains' heads, signed with Ed25519 so that a customer who
    // keeps copies can prove entries were removed (see docs/audit-checkpoints.md).
    // The signing key; required in production. Unset elsewhere: a key generated per process.
    AUDIT_SIGNING_KEY: ed25519PrivateKey,
    // An append whose seq is a multiple of this is checkpointed in its own transaction (0 = off).
    AUDIT_CHECKPOINT_EVERY: int(100, 0, 1_000_000),
    // This often, every account whose chain grew since its last checkpoint gets one (0 = off).
    AUDIT_CHECKPOINT_INTERVAL_MS: int(3_600_000, 0, 7 * 86_400_000),

    // Background work (webhook deliveries). `in-process`: the API process runs the worker;
    // `off`: it does not (run `npm run worker`). Unset: in-process on the embedded engine, whose
    // data only one process can open; off on Postgres, where N workers run beside the API.
    WORKER: z.enum(['in-process', 'off']).optional(),
    // How often an idle worker looks for work.
    WORKER_POLL_INTERVAL_MS: int(1_000, 10, 60_000),

    // Webhooks
    // Encrypts the endpoints' signing secrets (AES-256-GCM); required in production.
    WEBHOOK_SECRET_KEY: aes256Key,
    // Outside production only: let endpoints point at loopback and private addresses (and use
    // http there), for tests and local receivers.
    WEBHOOK_ALLOW_PRIVATE_TARGETS: bool(false),
    // One delivery attempt's time limit, from connecting to the response's headers.
    WEBHOOK_TIMEOUT_MS: int(10_000, 100, 60_000),
    // Retries wait base × 2^(n-1), capped, with jitter; after WEBHOOK_RETRY_FOR_MS, failed.
    WEBHOOK_BACKOFF_BASE_MS: int(30_000, 1),
    WEBHOOK_BACKOFF_MAX_MS: int(12 * 3_600_000, 1),
    WEBHOOK_RETRY_FOR_MS: int(3 * 86_400_000, 0),
    // A claimed delivery whose worker has not reported within this is claimed again.
    WEBHOOK_LEASE_SECONDS: int(60, 1, 3600),
    // Attempts in flight at once per endpoint (all workers together, give or take a claim).
    WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT: int(2, 1, 100),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.TLS_CERT_FILE) !== Boolean(env.TLS_KEY_FILE)) {
      ctx.addIssue({
        code: 'custom',
        path: [env.TLS_CERT_FILE ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'],
        message: 'TLS_CERT_FILE and TLS_KEY_FILE must be set together',
      });
    }
    for (const key of [
      'JWT_SECRET',
      'HASH_SECRET',
      'AUDIT_SIGNING_KEY',
      'WEBHOOK_SECRET_KEY',
    ] as const) {
      if (env.NODE_ENV === 'production' && env[key] === undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'is required in production' });
      }
    }
    if (env.NODE_ENV === 'production' && env.CLOCK_START) {
      ctx.addIssue({
        code: 'custom',
        path: ['CLOCK_START'],
        message: 'must not be set in production (the service clock is the real time there)',
      });
    }
    if (env.NODE_ENV === 'production' && env.WEBHOOK_ALLOW_PRIVATE_TARGETS) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEBHOOK_ALLOW_PRIVATE_TARGETS'],
        message: 'must not be set in production (it opens the internal network to webhook URLs)',
      });
    }
    if (env.WEBHOOK_LEASE_SECONDS * 1000 <= env.WEBHOOK_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEBHOOK_LEASE_SECONDS'],
        message: 'must be longer than WEBHOOK_TIMEOUT_MS (an attempt must end within its lease)',
      });
    }
    if (env.WEBHOOK_BACKOFF_MAX_MS < env.WEBHOOK_BACKOFF_BASE_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEBHOOK_BACKOFF_MAX_MS'],
        message: 'must not be below WEBHOOK_BACKOFF_BASE_MS',
      });
    }
    if (env.IMPORT_BODY_TIMEOUT_MS > 0 && env.BODY_TIMEOUT_MS > env.IMPORT_BODY_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['BODY_TIMEOUT_MS'],
        message: 'must not exceed IMPORT_BODY_TIMEOUT_MS (the outer bound of every request)',
      });
    }
    for (const key of ['DATABASE_URL', 'MIGRATION_DATABASE_URL'] as const) {
      const url = env[key];
      if (url && !/^postgres(ql)?:\/\//.test(url)) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'must be a postgres:// or postgresql:// URL',
        });
      }
    }
    if (env.MIGRATION_DATABASE_URL && !env.DATABASE_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['MIGRATION_DATABASE_URL'],
        message: 'needs DATABASE_URL (the service connection) too',
      });
    }
  }, ALWAYS_CHECK);

export type Config = Readonly<z.output<typeof envSchema>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; throws a ConfigError listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  const problems = Object.entries(RENAMED)
    .filter(([old]) => env[old] !== undefined && env[old]?.trim() !== '')
    .map(([old, now]) => `${old}: was renamed ${now}; set that instead`);
  if (!parsed.success) {
    problems.push(
      ...parsed.error.issues.map(
        (issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`,
      ),
    );
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return Object.freeze(parsed.data);
}

/**
 * Variables that changed name. A value set under the old name would otherwise be ignored
 * without a word (a long import timeout silently back to its default), so it stops the start.
 */
const RENAMED: Readonly<Record<string, string>> = {
  REQUEST_TIMEOUT_MS: 'IMPORT_BODY_TIMEOUT_MS',
};

/**
 * TRUST_PROXY as Fastify's `trustProxy` option. A hop count becomes a function: Fastify 5.12
 * ignores a plain number (it trusts nothing), since hop counting cannot tell a proxy from a
 * client that reaches the service directly. A count is therefore only right when no client
 * can; the operator chose it, so it means what it says: the `hops` nearest addresses of the
 * chain are proxies.
 */
export function trustProxyOption(
  setting: Config['TRUST_PROXY'],
): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof setting !== 'number') return setting;
  return (_address, hop) => hop < setting;
}
