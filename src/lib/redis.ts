import { Redis } from 'ioredis';
import type { Logger } from 'pino';

export interface RedisLinkOptions {
  url: string;
  /** Longest a command may take before it fails (the limiter then lets the request through). */
  commandTimeoutMs: number;
  /** Where the outage and recovery lines go (once each per outage); none when absent. */
  logger?: Logger;
}

/** Reconnect quickly at first, then every 2 s, for as long as it takes. */
const RECONNECT_DELAY_MS = (attempt: number) => Math.min(attempt * 100, 2_000);

/**
 * The process's Redis connection (shared rate-limit counters), built with options that keep an
 * outage from stalling requests. ioredis's defaults queue every command while it reconnects
 * and retry each up to 20 times, so with Redis down every request that touched the limiter hung
 * until the socket was dropped. Here a command fails at once when Redis is not connected (no
 * offline queue, no retries) and after `commandTimeoutMs` when it does not answer; callers
 * decide what a failure means (the rate limiter lets the request through).
 *
 * It also tracks whether Redis is reachable, so an outage is logged once when it starts and
 * once when it ends, not once per request or per reconnection attempt.
 */
export class RedisLink {
  readonly client: Redis;
  readonly #logger: Logger | undefined;
  #down = false;

  constructor(options: RedisLinkOptions) {
    this.#logger = options.logger;
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: 2_000,
      retryStrategy: RECONNECT_DELAY_MS,
    });
    // Without a listener ioredis prints every connection error to the console.
    this.client.on('error', (err: Error) => this.unreachable(err));
    this.client.on('ready', () => this.reachable());
  }

  /** True while Redis is known to be unreachable or not connected. */
  get degraded(): boolean {
    return this.#down || this.client.status !== 'ready';
  }

  /** Records a failed command or connection; logs only the first of an outage. */
  unreachable(err: unknown): void {
    if (this.#down) return;
    this.#down = true;
    this.#logger?.warn(
      { err },
      'Redis is unreachable: rate limits are not enforced until it answers again',
    );
  }

  /** Records a command that succeeded; logs the end of an outage. */
  reachable(): void {
    if (!this.#down) return;
    this.#down = false;
    this.#logger?.info('Redis answers again: rate limits are enforced');
  }

  /** One round trip, bounded by the command timeout: `ok` or `degraded`. */
  async check(): Promise<'ok' | 'degraded'> {
    try {
      await this.client.ping();
      this.reachable();
      return 'ok';
    } catch (err) {
      this.unreachable(err);
      return 'degraded';
    }
  }

  /**
   * Waits until connected, at most `timeoutMs`. Without the offline queue, commands sent
   * before the first connection fail; waiting at start-up keeps them from counting as an
   * outage. Never throws: a Redis that is down at start-up is an outage like any other.
   */
  async connected(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ready: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ready);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.client.on('ready', onReady);
    });
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** The one way the service connects to Redis (server and tests alike). */
export function createRedis(options: RedisLinkOptions): RedisLink {
  return new RedisLink(options);
}
