import { isIP } from 'node:net';
import {
  type ForbiddenAddressReason,
  forbiddenAddress,
  forbiddenHostName,
} from '../../lib/outbound-address.js';

/**
 * The rules a webhook URL follows, checked when it is registered and again before each attempt
 * (the sender then also checks the addresses its host resolves to): https, no credentials, and
 * a host that is neither an address nor a name of a loopback, private, link-local (cloud
 * metadata), shared (CGNAT), multicast or reserved network. `allowPrivate`
 * (WEBHOOK_ALLOW_PRIVATE_TARGETS, never in production) lets such hosts through, and http for
 * them only, for a receiver on the same machine.
 */
export type UrlVerdict =
  | { ok: true; url: URL; host: string; hostIsAddress: boolean }
  | { ok: false; reason: string; code: 'url_forbidden' | 'forbidden_address' };

const REASONS: Record<ForbiddenAddressReason, string> = {
  loopback: 'a loopback address',
  private: 'a private network',
  link_local: 'a link-local address (such as the cloud metadata service)',
  shared: 'a shared (carrier-grade NAT) address',
  multicast: 'a multicast address',
  unspecified: 'an unspecified address',
  reserved: 'a reserved address',
};

/** Why `reason` refuses a host, as a sentence end. */
export function describeForbidden(reason: ForbiddenAddressReason): string {
  return REASONS[reason];
}

export function checkWebhookUrl(raw: string, allowPrivate: boolean): UrlVerdict {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, code: 'url_forbidden', reason: 'The URL is not an absolute URL.' };
  }
  if (url.username || url.password) {
    return {
      ok: false,
      code: 'url_forbidden',
      reason: 'The URL must not carry credentials; verify the signature instead.',
    };
  }
  // The WHATWG parser has already turned 2130706433, 0x7f.1 and the like into 127.0.0.1.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const hostIsAddress = isIP(host) !== 0;
  const forbidden = hostIsAddress ? forbiddenAddress(host) : forbiddenHostName(host);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowPrivate && forbidden)) {
    return { ok: false, code: 'url_forbidden', reason: 'The URL must use https.' };
  }
  if (forbidden && !allowPrivate) {
    return {
      ok: false,
      code: 'forbidden_address',
      reason: `The URL's host is ${describeForbidden(forbidden)}; webhooks go to public hosts only.`,
    };
  }
  return { ok: true, url, host, hostIsAddress };
}
