import type autocannon from 'autocannon';

/** Which child process a scenario is fired at. */
export type TargetName = 'service' | 'bare' | 'before';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/**
 * One load pattern. Adding an endpoint to the benchmark is one entry in `scenarios` below;
 * `setup` runs once, before any round, against the already-listening target (create a user,
 * log in, ...) and returns headers sent with every request (e.g. `authorization`).
 */
export interface Scenario {
  /** Unique; used in the table, in the JSON and by `--only`. */
  name: string;
  target: TargetName;
  method: HttpMethod;
  /** Path and query, e.g. `/v1/me`. */
  path: string;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else is sent as JSON (with a JSON content type). */
  body?: unknown;
  setup?: (baseUrl: string) => Promise<Record<string, string> | undefined>;
  /** Status every request must get; any other counts as an error. Defaults to 200. */
  expectStatus?: number;
  /** Name of the scenario this one is compared with (requests/s ratio this/baseline). */
  baseline?: string;
  /** The ratio to the baseline this scenario must keep (reported as PASS/FAIL). */
  minRatio?: number;
  /** Escape hatch for autocannon features (e.g. `idReplacement` for unique bodies). */
  autocannon?: Partial<autocannon.Options>;
}

const BENCH_EMAIL = 'bench-owner@example.com';
const BENCH_PASSWORD = 'staple orbit lantern quietly';

export const scenarios: Scenario[] = [
  // The reference: what Fastify itself costs on this machine right now.
  { name: 'bare /healthz', target: 'bare', method: 'GET', path: '/healthz' },
  {
    name: 'service /healthz',
    target: 'service',
    method: 'GET',
    path: '/healthz',
    baseline: 'bare /healthz',
    minRatio: 0.5,
  },
  // For information: a zod-serialised, rate-limited route that logs at info.
  { name: 'service /v1', target: 'service', method: 'GET', path: '/v1', baseline: 'bare /healthz' },
  // What authentication costs: an authenticated read (JWT verify + session check +
  // user/account read) against the unauthenticated probe, and login, whose cost is one
  // argon2id verification.
  {
    name: 'service GET /v1/me',
    target: 'service',
    method: 'GET',
    path: '/v1/me',
    setup: async (baseUrl) => ({
      authorization: `Bearer ${(await benchUser(baseUrl)).accessToken}`,
    }),
    baseline: 'service /healthz',
    minRatio: 0.7,
  },
  {
    name: 'service POST /v1/auth/login',
    target: 'service',
    method: 'POST',
    path: '/v1/auth/login',
    body: { email: BENCH_EMAIL, password: BENCH_PASSWORD },
    setup: async (baseUrl) => {
      await benchUser(baseUrl);
      return undefined;
    },
    baseline: 'service /healthz',
  },
  // Lists of equal length: a page of data-subject requests (with their computed deadline
  // fields) against a page of contacts, both 50 of the same number of rows.
  {
    name: 'service GET /v1/contacts?limit=50',
    target: 'service',
    method: 'GET',
    path: '/v1/contacts?limit=50',
    setup: async (baseUrl) => ({
      authorization: `Bearer ${(await seededRows(baseUrl)).accessToken}`,
    }),
    baseline: 'service /healthz',
  },
  {
    name: 'service GET /v1/data-subject-requests?limit=50',
    target: 'service',
    method: 'GET',
    path: '/v1/data-subject-requests?limit=50',
    setup: async (baseUrl) => ({
      authorization: `Bearer ${(await seededRows(baseUrl)).accessToken}`,
    }),
    baseline: 'service GET /v1/contacts?limit=50',
    minRatio: 0.8,
  },
];

/** How many contacts, and requests (one about each contact), the list scenarios read. */
const SEEDED_ROWS = 200;
const seeded = new Map<string, Promise<{ accessToken: string }>>();

/** Creates SEEDED_ROWS contacts and as many data-subject requests, once per target. */
function seededRows(baseUrl: string): Promise<{ accessToken: string }> {
  let pending = seeded.get(baseUrl);
  if (!pending) {
    pending = (async () => {
      const user = await benchUser(baseUrl);
      const headers = {
        'content-type': 'application/json',
        authorization: `Bearer ${user.accessToken}`,
      };
      for (let i = 0; i < SEEDED_ROWS; i++) {
        const email = `bench-subject-${i}@example.com`;
        for (const [path, body] of [
          ['/v1/contacts', { email, firstName: 'Bench', attributes: { plan: 'gold' } }],
          ['/v1/data-subject-requests', { type: 'access', subject: { email }, channel: 'email' }],
        ] as const) {
          const res = await fetch(`${baseUrl}${path}`, {
            method: 'POST',
            headers,
            body: JSON.stringify(body),
          });
          if (res.status !== 201) {
            throw new Error(`bench seed ${path} failed: ${res.status} ${await res.text()}`);
          }
        }
      }
      return user;
    })();
    seeded.set(baseUrl, pending);
  }
  return pending;
}

const signedUp = new Map<string, Promise<{ accessToken: string }>>();

/** Signs up the bench account once per target (by base URL) and returns its access token. */
function benchUser(baseUrl: string): Promise<{ accessToken: string }> {
  let pending = signedUp.get(baseUrl);
  if (!pending) {
    pending = (async () => {
      const res = await fetch(`${baseUrl}/v1/auth/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'Bench',
          email: BENCH_EMAIL,
          password: BENCH_PASSWORD,
        }),
      });
      if (res.status !== 201)
        throw new Error(`bench signup failed: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { accessToken: string };
      return { accessToken: body.accessToken };
    })();
    signedUp.set(baseUrl, pending);
  }
  return pending;
}

/**
 * The scenarios whose name contains one of `filters` (all when none), plus the baselines they
 * are compared with, in the order of `all`.
 */
export function selectScenarios(all: Scenario[], filters: string[]): Scenario[] {
  const names = new Set<string>();
  for (const scenario of all) {
    if (filters.length === 0 || filters.some((f) => scenario.name.includes(f))) {
      names.add(scenario.name);
      if (scenario.baseline) names.add(scenario.baseline);
    }
  }
  const byName = new Map(all.map((s) => [s.name, s]));
  for (const scenario of all) {
    if (byName.get(scenario.name) !== scenario) {
      throw new Error(`two scenarios are named "${scenario.name}"`);
    }
    if (scenario.baseline && !byName.has(scenario.baseline)) {
      throw new Error(`scenario "${scenario.name}" compares with unknown "${scenario.baseline}"`);
    }
  }
  return all.filter((s) => names.has(s.name));
}
