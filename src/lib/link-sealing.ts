/**
 * Encryption at rest for links that act for a data subject (double opt-in confirmations).
 *
 * The link tables keep only a SHA-256 of each token, but the event feed must hand the customer
 * the link itself, possibly more than once (a customer re-reads the feed from an older cursor
 * after a crash). So the feed stores the link encrypted and decrypts it only when it is served
 * over the API: a copy of the database (a backup, a read replica, an analyst's read access)
 * alone cannot confirm a consent on someone's behalf. Art. 32(1)(a) names encryption as such a
 * measure; Art. 7(1) needs the confirmation to be the subject's own act.
 *
 * AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce per link, well below the 2^32
 * messages per key that SP 800-38D §8.3 allows for random nonces. The key is derived with HKDF
 * (RFC 5869, SP 800-56C) from the server's HASH_SECRET under a label of its own, so it is
 * independent of the keyed hashes made with the same secret and needs no new setting.
 * The associated data binds each ciphertext to where it was written (account and consent
 * event), so a sealed link copied into another account's feed does not open there.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const KEY_LABEL = 'custodian/event-link-encryption/v1';
const VERSION = 'v1.';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface LinkSealer {
  /** `v1.` + base64url(nonce ‖ ciphertext ‖ tag). */
  seal(link: string, context: string): string;
  /** The link, or null when the value was not sealed by this key for this context. */
  open(sealed: string, context: string): string | null;
}

export function linkSealer(secret: string): LinkSealer {
  const key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), KEY_LABEL, 32));
  return {
    seal(link, context) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const body = Buffer.concat([cipher.update(link, 'utf8'), cipher.final()]);
      return VERSION + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
    },
    open(sealed, context) {
      if (!sealed.startsWith(VERSION)) return null;
      const raw = Buffer.from(sealed.slice(VERSION.length), 'base64url');
      if (raw.length < NONCE_BYTES + TAG_BYTES) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, NONCE_BYTES));
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
        const body = raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES);
        return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
      } catch {
        // Another key (HASH_SECRET was changed), another context, or altered bytes.
        return null;
      }
    },
  };
}
