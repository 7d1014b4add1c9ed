/**
 * Standard Webhooks 1.0 (https://www.standardwebhooks.com): the secret format and the
 * signature. A receiver checks a message with any of the spec's libraries (the test suite uses
 * the `standardwebhooks` npm package, written independently of this file).
 *
 * - The secret is `whsec_` + base64 of random bytes (the spec allows 24 to 64; we use 32).
 * - `webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.
 *   <body>")), the key being the secret's decoded bytes; several signatures are separated by
 *   spaces (old and new during a secret rotation), and a receiver accepts any that matches.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
const SECRET_BYTES = 32;

/** A new signing secret, `whsec_…`. */
export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** The HMAC key of a secret: its decoded bytes (`whsec_` and base64 taken off). */
function signingKey(secret: string): KeyObject {
  return createSecretKey(
    Buffer.from(
      secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret,
      'base64',
    ),
  );
}

function sign(key: KeyObject, message: { id: string; timestamp: number; body: string }): string {
  const mac = createHmac('sha256', key)
    .update(`${message.id}.${message.timestamp}.`)
    .update(message.body)
    .digest('base64');
  return `v1,${mac}`;
}

/** `v1,<base64 HMAC-SHA256>` of one message under one secret. */
export function webhookSignature(
  secret: string,
  message: { id: string; timestamp: number; body: string },
): string {
  return sign(signingKey(secret), message);
}

/** The headers of a signed message (see {@link webhookHeaders}). */
export type WebhookHeaders = Record<
  'webhook-id' | 'webhook-timestamp' | 'webhook-signature',
  string
>;

/**
 * {@link webhookHeaders} for many messages under the same secrets: the keys are decoded once
 * (a sender signs every message of an endpoint with them).
 */
export function webhookSigner(
  secrets: readonly string[],
): (message: { id: string; timestamp: number; body: string }) => WebhookHeaders {
  const keys = secrets.map(signingKey);
  return (message) => ({
    'webhook-id': message.id,
    'webhook-timestamp': String(message.timestamp),
    'webhook-signature': keys.map((key) => sign(key, message)).join(' '),
  });
}

/**
 * The three headers of a signed message: `webhook-id` (stable across retries, so receivers
 * deduplicate on it), `webhook-timestamp` (Unix seconds of this attempt) and
 * `webhook-signature` (one signature per secret, space-separated).
 */
export function webhookHeaders(
  secrets: readonly string[],
  message: { id: string; timestamp: number; body: string },
): WebhookHeaders {
  return webhookSigner(secrets)(message);
}
