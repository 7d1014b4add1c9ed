import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { forbiddenAddress } from '../../lib/outbound-address.js';
import { checkWebhookUrl, describeForbidden } from './webhook-url.js';

/** Resolves a host name to its addresses (dns.lookup's answer); injectable for tests. */
export type ResolveHost = (host: string) => Promise<{ address: string; family: number }[]>;

export const systemResolver: ResolveHost = (host) => dnsLookup(host, { all: true, verbatim: true });

/** Sockets per endpoint address kept open between attempts (see {@link connectionPool}). */
export interface ConnectionPool {
  agentFor(url: URL, addresses: { address: string; family: number }[]): http.Agent;
  destroy(): void;
}

/** How long an idle kept-alive connection to a receiver stays open. */
const IDLE_SOCKET_MS = 5_000;
/** Agents kept at most; past it the oldest is closed (a worker serves many endpoints). */
const MAX_AGENTS = 256;

/**
 * Keep-alive connections for the worker, one agent per (origin, checked addresses): a
 * connection is reused only for the very addresses it was opened to after their check, so
 * reuse never skips the address rule, and a host whose DNS answer changes gets new
 * connections. Each attempt still resolves and checks the host first. Opening a connection
 * per attempt cost the receiver (and the worker) more than the request itself.
 */
export function connectionPool(maxSockets: number): ConnectionPool {
  const agents = new Map<string, http.Agent>();
  return {
    agentFor(url, addresses) {
      const key = `${url.protocol}//${url.host}|${addresses
        .map((a) => a.address)
        .sort()
        .join(',')}`;
      let agent = agents.get(key);
      if (!agent) {
        const Agent = url.protocol === 'https:' ? https.Agent : http.Agent;
        agent = new Agent({ keepAlive: true, maxSockets, timeout: IDLE_SOCKET_MS });
        agents.set(key, agent);
        if (agents.size > MAX_AGENTS) {
          const [oldest] = agents.keys();
          agents.get(oldest!)?.destroy();
          agents.delete(oldest!);
        }
      }
      return agent;
    },
    destroy() {
      for (const agent of agents.values()) agent.destroy();
      agents.clear();
    },
  };
}

/** How long an endpoint's checked addresses are reused before DNS is asked again. */
const CHECKED_FOR_MS = 1_000;

/**
 * What the last attempt to an endpoint found (its URL checked, its host resolved and every
 * address checked), kept by the caller per endpoint: for a second, further attempts to the same
 * URL connect to those very addresses instead of asking DNS again. They still connect only to
 * checked addresses; a host whose answer changes is seen at most a second later.
 */
export interface CheckedAddresses {
  url?: string;
  until?: number;
  found?: {
    url: URL;
    addresses: { address: string; family: number }[];
    lookup: LookupFunction;
    agent: http.Agent | false;
    /** Where the request goes, as http.request takes it (parsed once). */
    request: {
      protocol: string;
      hostname: string;
      port: string;
      path: string;
    };
  };
}

/** What one attempt came to; never the answer's body. */
export interface SendOutcome {
  delivered: boolean;
  statusCode: number | null;
  /** Why it does not count as delivered; null when it does. */
  errorCode: string | null;
  /** A sentence for the log (no URL, no body). */
  detail: string | null;
  durationMs: number;
}

class SendFailure extends Error {
  constructor(
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

const NETWORK_CODES: Record<string, string> = {
  ENOTFOUND: 'dns_failed',
  EAI_AGAIN: 'dns_failed',
  ENODATA: 'dns_failed',
  ECONNREFUSED: 'connection_refused',
  ECONNRESET: 'connection_reset',
  EPIPE: 'connection_reset',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'unreachable',
  ETIMEDOUT: 'timeout',
};

function errorCodeOf(err: unknown): string {
  if (err instanceof SendFailure) return err.code;
  const code = (err as { code?: string }).code ?? '';
  if (NETWORK_CODES[code]) return NETWORK_CODES[code];
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED)/.test(code)) return 'tls_error';
  return 'network_error';
}

/**
 * The addresses the attempt may connect to: the host itself when it is an address, else what
 * DNS answers, every one of which must be public (unless private targets are allowed). One bad
 * address refuses the lot: a name that mixes them is not one to trust with a retry.
 */
async function checkedAddresses(
  host: string,
  hostIsAddress: boolean,
  allowPrivate: boolean,
  resolve: ResolveHost,
): Promise<{ address: string; family: number }[]> {
  const found = hostIsAddress
    ? [{ address: host, family: host.includes(':') ? 6 : 4 }]
    : await resolve(host).catch(() => {
        throw new SendFailure('dns_failed', 'DNS did not resolve the host.');
      });
  if (found.length === 0) throw new SendFailure('dns_failed', 'DNS found no address.');
  if (!allowPrivate) {
    for (const { address } of found) {
      const reason = forbiddenAddress(address);
      if (reason) {
        throw new SendFailure(
          'forbidden_address',
          `The host resolves to ${describeForbidden(reason)}; nothing was sent.`,
        );
      }
    }
  }
  return found;
}

/**
 * POSTs one signed message to a webhook URL. The request goes to an address checked here (the
 * socket's lookup is pinned to it, so DNS cannot answer differently between check and
 * connect), TLS still verifies the host name, no redirect is followed, and the whole attempt,
 * DNS included, is bounded by `timeoutMs`. The answer's body is not read.
 */
export async function sendWebhook(
  target: string,
  message: { headers: Record<string, string>; body: string },
  options: {
    timeoutMs: number;
    allowPrivate: boolean;
    resolve: ResolveHost;
    signal?: AbortSignal;
    /** Keep-alive connections; without it, a fresh connection per attempt. */
    pool?: ConnectionPool;
    /** The endpoint's last checked addresses, reused for a moment and kept up to date here. */
    checked?: CheckedAddresses;
  },
): Promise<SendOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  // What cut the attempt short (the time limit, or the worker stopping), and what to tell:
  // the DNS wait, or the request (destroyed with the reason).
  let cutBy: SendFailure | undefined;
  let onCut: ((reason: SendFailure) => void) | undefined;
  const cut = (reason: SendFailure) => {
    if (cutBy) return;
    cutBy = reason;
    onCut?.(reason);
  };
  const timer = setTimeout(
    () => cut(new SendFailure('timeout', 'No answer within the time limit.')),
    options.timeoutMs,
  );
  const stop = () => cut(new SendFailure('worker_stopped', 'The worker stopped.'));
  options.signal?.addEventListener('abort', stop, { once: true });
  if (options.signal?.aborted) stop();
  try {
    if (cutBy) throw cutBy;
    const memo = options.checked;
    let found = memo?.url === target && memo.until! > performance.now() ? memo.found : undefined;
    if (!found) {
      const verdict = checkWebhookUrl(target, options.allowPrivate);
      if (!verdict.ok) throw new SendFailure(verdict.code, verdict.reason);
      const addresses = await new Promise<{ address: string; family: number }[]>(
        (resolveAddresses, reject) => {
          onCut = reject;
          checkedAddresses(
            verdict.host,
            verdict.hostIsAddress,
            options.allowPrivate,
            options.resolve,
          ).then(resolveAddresses, reject);
        },
      );
      onCut = undefined;
      const pinned: LookupFunction = (_host, lookupOptions, callback) => {
        if (lookupOptions.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      };
      const { url } = verdict;
      found = {
        url,
        addresses,
        lookup: pinned,
        agent: options.pool?.agentFor(url, addresses) ?? false,
        request: {
          protocol: url.protocol,
          hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
          port: url.port,
          path: `${url.pathname}${url.search}`,
        },
      };
      if (memo) {
        memo.url = target;
        memo.until = performance.now() + CHECKED_FOR_MS;
        memo.found = found;
      }
    }
    if (cutBy) throw cutBy;
    const statusCode = await post(found, message, (destroy) => {
      onCut = destroy;
    });
    if (statusCode >= 200 && statusCode < 300) {
      return { delivered: true, statusCode, errorCode: null, detail: null, durationMs: elapsed() };
    }
    const redirect = statusCode >= 300 && statusCode < 400;
    return {
      delivered: false,
      statusCode,
      errorCode: redirect ? 'redirect_not_followed' : 'http_error',
      detail: redirect
        ? 'The endpoint answered with a redirect, which is not followed.'
        : `The endpoint answered ${statusCode}.`,
      durationMs: elapsed(),
    };
  } catch (caught) {
    const err = cutBy ?? caught;
    return {
      delivered: false,
      statusCode: null,
      errorCode: errorCodeOf(err),
      detail: err instanceof SendFailure ? err.message : 'The request failed.',
      durationMs: elapsed(),
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', stop);
  }
}

/** Bytes of an answer's body drained (unread) so its connection can be reused; past it, closed. */
const MAX_DRAINED_BYTES = 64 * 1024;

/** The request itself: resolves with the answer's status as soon as its headers arrive. */
function post(
  target: NonNullable<CheckedAddresses['found']>,
  message: { headers: Record<string, string>; body: string },
  cutWith: (destroy: (reason: Error) => void) => void,
): Promise<number> {
  const body = Buffer.from(message.body, 'utf8');
  const client = target.request.protocol === 'https:' ? https : http;
  const agent = target.agent;
  return new Promise((resolve, reject) => {
    const request = client.request(
      {
        ...target.request,
        method: 'POST',
        // Pooled only per checked address (see connectionPool), else a fresh connection.
        agent,
        lookup: target.lookup,
        headers: {
          ...message.headers,
          'content-type': 'application/json',
          'content-length': String(body.length),
          'user-agent': 'Custodian-Webhooks/1',
        },
      },
      (response) => {
        resolve(response.statusCode ?? 0);
        if (!agent) {
          // The body is never read or kept: drop the connection.
          response.destroy();
          return;
        }
        // Drained unread, so the connection goes back to the pool; a long body closes it.
        let drained = 0;
        response.on('data', (chunk: Buffer) => {
          drained += chunk.length;
          if (drained > MAX_DRAINED_BYTES) response.destroy();
        });
        response.on('error', () => undefined);
      },
    );
    request.on('error', reject);
    // Cut short: the request ends with the reason (and its socket with it).
    cutWith((reason) => request.destroy(reason));
    request.end(body);
  });
}
