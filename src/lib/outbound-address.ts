/**
 * Which network addresses the service may send a request to on a customer's behalf (webhooks).
 * A URL a customer registers is a door into the provider's network (SSRF): to its loopback,
 * its private networks, and the cloud metadata service at 169.254.169.254, which hands out
 * credentials. Only public unicast addresses pass. The check is made on the address actually
 * connected to (after DNS), and IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4)
 * are judged by the IPv4 address inside.
 */
import { isIP } from 'node:net';

export type ForbiddenAddressReason =
  | 'loopback'
  | 'private'
  | 'link_local'
  | 'shared'
  | 'multicast'
  | 'unspecified'
  | 'reserved';

type Range = readonly [prefix: string, bits: number, reason: ForbiddenAddressReason];

/** IANA IPv4 special-purpose ranges that are not public unicast (RFC 6890 and successors). */
const IPV4_RANGES: readonly Range[] = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared'], // carrier-grade NAT (RFC 6598)
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link_local'], // includes the metadata service 169.254.169.254
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'reserved'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'reserved'],
  ['198.51.100.0', 24, 'reserved'],
  ['203.0.113.0', 24, 'reserved'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'], // includes the broadcast address
];

/** IPv6 ranges that are not public unicast; embedded IPv4 forms are handled apart. */
const IPV6_RANGES: readonly Range[] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['::', 96, 'reserved'], // IPv4-compatible (deprecated)
  ['64:ff9b:1::', 48, 'private'], // local-use NAT64
  ['100::', 64, 'reserved'], // discard-only
  ['2001::', 32, 'reserved'], // Teredo
  ['2001:db8::', 32, 'reserved'], // documentation
  ['fc00::', 7, 'private'], // unique local (includes AWS's fd00:ec2::254)
  ['fe80::', 10, 'link_local'],
  ['fec0::', 10, 'private'], // site-local (deprecated)
  ['ff00::', 8, 'multicast'],
];

function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

/** An IPv6 address (with `::`, an embedded dotted quad, or a zone) as a 128-bit number. */
function ipv6ToBigInt(address: string): bigint {
  let text = address.split('%')[0]!.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4ToNumber(dotted[1]!);
    text = `${text.slice(0, dotted.index)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(zeros).fill('0'), ...right];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

function inRange4(value: number, [prefix, bits]: Range): boolean {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (value & mask) >>> 0 === (ipv4ToNumber(prefix) & mask) >>> 0;
}

function inRange6(value: bigint, [prefix, bits]: Range): boolean {
  const shift = BigInt(128 - bits);
  return value >> shift === ipv6ToBigInt(prefix) >> shift;
}

function forbiddenIpv4(address: string): ForbiddenAddressReason | null {
  const value = ipv4ToNumber(address);
  return IPV4_RANGES.find((range) => inRange4(value, range))?.[2] ?? null;
}

function v4Of(value: bigint): string {
  const n = Number(value & 0xffffffffn);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Why `address` (an IP address, no brackets) must not be connected to, or null for a public
 * unicast address. Anything that is not an IP address is refused as `reserved`.
 */
export function forbiddenAddress(address: string): ForbiddenAddressReason | null {
  const family = isIP(address.split('%')[0]!);
  if (family === 4) return forbiddenIpv4(address);
  if (family !== 6) return 'reserved';
  const value = ipv6ToBigInt(address);
  // IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96): the IPv4 address decides.
  if (value >> 32n === 0xffffn || value >> 32n === ipv6ToBigInt('64:ff9b::') >> 32n) {
    return forbiddenIpv4(v4Of(value));
  }
  // 6to4 (2002::/16) carries an IPv4 address in bits 16..47.
  if (value >> 112n === 0x2002n) return forbiddenIpv4(v4Of(value >> 80n));
  return IPV6_RANGES.find((range) => inRange6(value, range))?.[2] ?? null;
}

/** Host names that name this machine or a private network whatever DNS says. */
export function forbiddenHostName(host: string): ForbiddenAddressReason | null {
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return 'loopback';
  // RFC 6762 (mDNS), ICANN's private-use .internal (and cloud metadata names under it),
  // RFC 8375 home networks, and single-label names that only a local resolver answers.
  if (/\.(local|internal|home\.arpa)$/.test(name) || !name.includes('.')) return 'private';
  return null;
}
