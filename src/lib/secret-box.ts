/**
 * Authenticated encryption of small secrets at rest: AES-256-GCM (NIST SP 800-38D) with a
 * random 96-bit nonce per value, well below the 2^32 messages per key that SP 800-38D §8.3
 * allows for random nonces. The associated data (`context`) binds each ciphertext to where it
 * was written, so a value copied into another row or account does not open there.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 'v1.';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SECRET_BOX_KEY_BYTES = 32;

export interface SecretBox {
  /** `v1.` + base64url(nonce ‖ ciphertext ‖ tag). */
  seal(plaintext: string, context: string): string;
  /** The plaintext, or null when the value was not sealed by this key for this context. */
  open(sealed: string, context: string): string | null;
}

export function secretBox(key: Uint8Array): SecretBox {
  if (key.length !== SECRET_BOX_KEY_BYTES) {
    throw new RangeError(`a secret box needs a ${SECRET_BOX_KEY_BYTES}-byte key`);
  }
  const k = Buffer.from(key);
  return {
    seal(plaintext, context) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', k, nonce);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return VERSION + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
    },
    open(sealed, context) {
      if (!sealed.startsWith(VERSION)) return null;
      const raw = Buffer.from(sealed.slice(VERSION.length), 'base64url');
      if (raw.length < NONCE_BYTES + TAG_BYTES) return null;
      try {
        const decipher = createDecipheriv('aes-256-gcm', k, raw.subarray(0, NONCE_BYTES));
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
        const body = raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES);
        return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
      } catch {
        // Another key, another context, or altered bytes.
        return null;
      }
    },
  };
}
