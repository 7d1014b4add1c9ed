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
import { hkdfSync } from 'node:crypto';
import { type SecretBox, secretBox } from './secret-box.js';

const KEY_LABEL = 'custodian/event-link-encryption/v1';

/** Seals links with {@link secretBox}: `v1.` + base64url(nonce ‖ ciphertext ‖ tag). */
export type LinkSealer = SecretBox;

export function linkSealer(secret: string): LinkSealer {
  return secretBox(Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), KEY_LABEL, 32)));
}
