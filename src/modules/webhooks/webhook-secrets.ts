import { hkdfSync } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { type SecretBox, secretBox } from '../../lib/secret-box.js';

/**
 * The key that encrypts endpoints' signing secrets at rest: WEBHOOK_SECRET_KEY, or outside
 * production (where it may be unset) one derived from the hash secret with HKDF under a label
 * of its own, stable across restarts so stored secrets stay readable, with a warning.
 */
export function webhookSecretKey(
  configured: Buffer | undefined,
  hashSecret: string,
  log?: FastifyBaseLogger,
): Buffer {
  if (configured) return configured;
  log?.warn(
    'WEBHOOK_SECRET_KEY is not set: webhook signing secrets are encrypted with a key derived ' +
      'from the hash secret; set WEBHOOK_SECRET_KEY',
  );
  const label = 'custodian/webhook-secret-key-fallback/v1';
  return Buffer.from(hkdfSync('sha256', hashSecret, Buffer.alloc(0), label, 32));
}

/**
 * Seals and opens an endpoint's signing secrets. The associated data names the account and the
 * endpoint, so a ciphertext copied to another endpoint does not open there; the current and the
 * previous secret share it, so a rotation moves the ciphertext as it is.
 */
export function endpointSecretBox(key: Buffer) {
  const box: SecretBox = secretBox(key);
  const context = (accountId: string, endpointId: string) => `webhooks/${accountId}/${endpointId}`;
  return {
    seal: (accountId: string, endpointId: string, secret: string) =>
      box.seal(secret, context(accountId, endpointId)),
    open: (accountId: string, endpointId: string, sealed: string) =>
      box.open(sealed, context(accountId, endpointId)),
  };
}

export type EndpointSecretBox = ReturnType<typeof endpointSecretBox>;
