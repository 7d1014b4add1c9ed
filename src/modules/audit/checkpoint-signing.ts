import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../config.js';

/** What a checkpoint asserts: entry `seq` of the account's chain had `hash` at time `at`. */
export interface CheckpointClaim {
  accountId: string;
  seq: number;
  hash: string;
  /** ISO-8601 in UTC with milliseconds, as `Date#toISOString()` prints it. */
  at: string;
}

/**
 * The exact bytes a checkpoint's signature covers, and which a customer rebuilds to check it:
 * the UTF-8 JSON object `{"accountId":"…","seq":N,"hash":"…","at":"…"}`, keys in this order, no
 * whitespace. None of the values needs escaping (a lower-case UUID, an integer, lower-case
 * hex, an ISO timestamp), so any JSON library, or string concatenation, produces the same bytes.
 * Changing it breaks every customer's verifier: it is part of the API contract.
 */
export function checkpointMessage(claim: CheckpointClaim): Buffer {
  const { accountId, seq, hash, at } = claim;
  return Buffer.from(JSON.stringify({ accountId, seq, hash, at }), 'utf8');
}

/**
 * A key's id: the first 16 hex digits of the SHA-256 of its SPKI (DER) encoding, so anyone
 * holding the public key can recompute it.
 */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export interface CheckpointSigner {
  keyId: string;
  /** The public half, SPKI PEM: published, and stored with every checkpoint it signs. */
  publicKey: string;
  /** Base64 of the Ed25519 signature of {@link checkpointMessage}. */
  sign(claim: CheckpointClaim): string;
}

export function checkpointSigner(privateKey: KeyObject): CheckpointSigner {
  const publicKey = createPublicKey(privateKey);
  return {
    keyId: keyIdOf(publicKey),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    // Ed25519 hashes internally: the algorithm argument must be null.
    sign: (claim) => sign(null, checkpointMessage(claim), privateKey).toString('base64'),
  };
}

/**
 * Whether a stored checkpoint is what its own public key signed, and `keyId` names that key.
 * Proves integrity only as far as that public key is trusted: whoever can write the table can
 * also store a key of their own, which is why customers keep the key ids they have seen.
 */
export function checkpointSignatureValid(
  claim: CheckpointClaim & { keyId: string; publicKey: string; signature: string },
): boolean {
  try {
    const publicKey = createPublicKey(claim.publicKey);
    if (publicKey.asymmetricKeyType !== 'ed25519' || keyIdOf(publicKey) !== claim.keyId) {
      return false;
    }
    return verify(
      null,
      checkpointMessage(claim),
      publicKey,
      Buffer.from(claim.signature, 'base64'),
    );
  } catch {
    return false;
  }
}

let processKey: KeyObject | undefined;

/**
 * The checkpoint signing key: AUDIT_SIGNING_KEY, or (outside production, where config refuses
 * to start without it) a key generated once per process, with a warning: checkpoints signed
 * with it still verify later (each stores its public key), but nobody outside the process
 * could have learnt that key in advance, so customers cannot tell it from a forger's.
 */
export function checkpointSigningKeyOf(config: Config, log?: FastifyBaseLogger): KeyObject {
  if (config.AUDIT_SIGNING_KEY) return config.AUDIT_SIGNING_KEY;
  if (!processKey) {
    processKey = generateKeyPairSync('ed25519').privateKey;
    log?.warn(
      'AUDIT_SIGNING_KEY is not set: audit checkpoints are signed with a key generated for ' +
        'this process only; set AUDIT_SIGNING_KEY',
    );
  }
  return processKey;
}
