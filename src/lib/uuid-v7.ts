import { randomBytes } from 'node:crypto';

/**
 * A UUID version 7 (RFC 9562, section 5.7): the Unix time in milliseconds in the first 48 bits,
 * then random bits apart from the version and variant. The same layout as the database's
 * `uuid_v7()` default, for rows whose id must be known before the insert (an audit entry's
 * hash covers its id).
 */
export function uuidV7(at: Date = new Date()): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(at.getTime(), 0, 6);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
