import autocannon from 'autocannon';
import type { Scenario } from './scenarios.js';
import { cpuTimeMs } from './targets.js';

export interface LoadOptions {
  connections: number;
  pipelining: number;
}

/** A scenario bound to a listening target, its setup done. */
export interface PreparedScenario {
  scenario: Scenario;
  url: string;
  headers: Record<string, string>;
  body?: string;
  expectStatus: number;
}

/** What one measured run of one scenario gave. */
export interface Sample {
  round: number;
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  requests: number;
  /** Responses with another status than expected, connection errors and timeouts. */
  failures: number;
  /**
   * CPU time the target process spent per request (µs), where measurable: unlike requests/s
   * it hardly depends on how much of the shared machine the target got.
   */
  cpuMicrosPerRequest?: number;
  /**
   * CPU time this process (autocannon, the client) spent per request, in µs. It shares the
   * machine with the target, so a scenario whose responses cost the client more leaves the
   * target less of it: requests/s ratios then fall below the CPU-time ratios.
   */
  clientCpuMicrosPerRequest: number;
}

/**
 * Runs the scenario's `setup`, then one request to check that the target answers the expected
 * status, so a broken scenario fails loudly before minutes of measuring garbage.
 */
export async function prepareScenario(
  scenario: Scenario,
  baseUrl: string,
): Promise<PreparedScenario> {
  const fromSetup = scenario.setup ? ((await scenario.setup(baseUrl)) ?? {}) : {};
  const headers: Record<string, string> = { ...scenario.headers, ...fromSetup };
  let body: string | undefined;
  if (typeof scenario.body === 'string') body = scenario.body;
  else if (scenario.body !== undefined) {
    body = JSON.stringify(scenario.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      headers['content-type'] = 'application/json';
    }
  }
  const prepared: PreparedScenario = {
    scenario,
    url: new URL(scenario.path, baseUrl).href,
    headers,
    ...(body === undefined ? {} : { body }),
    expectStatus: scenario.expectStatus ?? 200,
  };

  const response = await fetch(prepared.url, {
    method: scenario.method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  if (response.status !== prepared.expectStatus) {
    throw new Error(
      `${scenario.name}: ${scenario.method} ${scenario.path} answered ${response.status}, ` +
        `expected ${prepared.expectStatus}: ${text.slice(0, 500)}`,
    );
  }
  return prepared;
}

/**
 * Fires the scenario for `seconds` at the target process `pid`; `round` 0 is a warm-up and is
 * not meant to be kept.
 */
export async function fire(
  prepared: PreparedScenario,
  pid: number,
  seconds: number,
  load: LoadOptions,
  round: number,
): Promise<Sample> {
  const { scenario } = prepared;
  const cpuBefore = cpuTimeMs(pid);
  const clientBefore = process.cpuUsage();
  // autocannon's own histogram has 1 ms resolution; the per-response times are in fractions.
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: prepared.url,
        method: scenario.method,
        headers: prepared.headers,
        ...(prepared.body === undefined ? {} : { body: prepared.body }),
        duration: seconds,
        connections: load.connections,
        pipelining: load.pipelining,
        ...scenario.autocannon,
      },
      (err, done) => (err ? reject(err) : resolve(done)),
    );
    instance.on('response', (_client, _status, _bytes, responseTime) => {
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = responseTime;
    });
  });
  const cpuAfter = cpuTimeMs(pid);
  const client = process.cpuUsage(clientBefore);
  const sorted = latencies.subarray(0, count).sort();
  const expected = result.statusCodeStats?.[`${prepared.expectStatus}`]?.count ?? 0;
  const answered = Object.values(result.statusCodeStats ?? {}).reduce(
    (sum, s) => sum + (s.count ?? 0),
    0,
  );
  return {
    round,
    requestsPerSecond: result.requests.average,
    latencyP50Ms: percentile(sorted, 50),
    latencyP99Ms: percentile(sorted, 99),
    requests: result.requests.total,
    failures: answered - expected + result.errors + result.mismatches,
    clientCpuMicrosPerRequest: (client.user + client.system) / Math.max(1, result.requests.total),
    ...(cpuBefore !== undefined && cpuAfter !== undefined && result.requests.total > 0
      ? { cpuMicrosPerRequest: ((cpuAfter - cpuBefore) * 1000) / result.requests.total }
      : {}),
  };
}

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
