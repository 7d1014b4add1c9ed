/**
 * Keyed hashes for data that must be recognisable but not readable.
 *
 * Art. 17 (erasure) requires the personal data to be gone; Art. 5(2) and 24 (accountability)
 * require us to show that an erasure request existed and was carried out, and the suppression
 * list must stop an erased address from being re-imported by accident. Both needs are met by
 * keeping an HMAC-SHA256 of the address under a server secret, never the address itself:
 * without the secret the hash cannot be reversed by hashing a list of candidate addresses, as
 * an unkeyed SHA-256 of an email address trivially can.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { canonicalizeEmail } from './email.js';

/** Same floor as `JWT_SECRET`: a short secret would make the hash brute-forceable again. */
export const KEYED_HASH_SECRET_MIN_LENGTH = 32;

/**
 * Separates email fingerprints from any other keyed hash made with the same secret, so a hash
 * computed for one purpose can never be presented as valid for another. Versioned so the
 * canonical form can change later without silently colliding with old fingerprints.
 * The NUL separator cannot occur in a canonical address.
 */
const EMAIL_FINGERPRINT_PREFIX = 'custodian/email-fingerprint/v1\u0000';

/**
 * HMAC-SHA256 of `value` under `secret`, as 64 lower-case hex characters. Deterministic: the
 * same secret and value always give the same hash, which is what lets a suppression check
 * find an erased address without storing it.
 *
 * @throws TypeError when the secret is shorter than {@link KEYED_HASH_SECRET_MIN_LENGTH}.
 */
export function keyedHash(secret: string, value: string): string {
  if (typeof secret !== 'string' || secret.length < KEYED_HASH_SECRET_MIN_LENGTH) {
    throw new TypeError(
      `keyedHash needs a secret of at least ${KEYED_HASH_SECRET_MIN_LENGTH} characters`,
    );
  }
  return createHmac('sha256', secret).update(value, 'utf8').digest('hex');
}

/**
 * The keyed hash that stands for an email address after erasure (Art. 17) and in the
 * suppression list. The address is canonicalised first (trim, NFC, lower case — the spelling
 * rules of `normalizeEmail`), so `Jane@Example.com ` and `jane@example.com` have one
 * fingerprint. Canonicalisation here is total: an address stored before a validation rule
 * changed must still be erasable and suppressible, so invalid input is hashed, not refused.
 * Callers that accept new addresses should still validate them with `normalizeEmail`.
 */
export function emailFingerprint(secret: string, email: string): string {
  return keyedHash(secret, EMAIL_FINGERPRINT_PREFIX + canonicalizeEmail(email));
}

/**
 * Compares two strings (hashes, tokens) in time that does not depend on where they differ,
 * so a caller cannot learn a stored hash byte by byte from response timings. Strings of
 * different lengths are unequal; only the length is revealed, which for fixed-size hashes is
 * public anyway.
 */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  if (left.length !== right.length) {
    // Spend the same work as a real comparison, so a length mismatch is not a fast path.
    timingSafeEqual(left, left);
    return false;
  }
  return timingSafeEqual(left, right);
}
