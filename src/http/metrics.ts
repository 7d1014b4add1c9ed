import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats } from '../db/database.js';

/**
 * Prometheus metrics (prom-client), one registry per app instance so that several apps in one
 * process (tests) do not collide. Routes are labelled by their pattern, never the raw URL, so
 * ids cannot explode the label space; unmatched requests share one label.
 */
export function createMetrics(poolStats: () => PoolStats) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const pool = new Gauge({
    name: 'db_pool_connections',
    help: 'Database pool connections by state (total, idle, waiting clients).',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const stats = poolStats();
      this.set({ state: 'total' }, stats.total);
      this.set({ state: 'idle' }, stats.idle);
      this.set({ state: 'waiting' }, stats.waiting);
    },
  });
  void pool;
  const failOpen = new Counter({
    name: 'rate_limit_fail_open_total',
    help: 'Requests let through without rate limiting because Redis could not count them.',
    registers: [registry],
  });

  return {
    registry,
    rateLimitFailedOpen() {
      failOpen.inc();
    },
    observe(method: string, route: string | undefined, statusCode: number, elapsedMs: number) {
      const labels = { method, route: route ?? 'unmatched', status_code: String(statusCode) };
      requests.inc(labels);
      duration.observe(labels, elapsedMs / 1000);
    },
  };
}
