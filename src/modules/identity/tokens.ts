import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * SHA-256 hex: for high-entropy secrets (refresh tokens, API keys), a fast hash is enough.
 * One-shot `crypto.hash`: no Hash object per call (API keys are hashed on every request).
 */
export function sha256Hex(value: string): string {
  return hash('sha256', value, 'hex');
}

export function constantTimeEqualHex(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** Opaque refresh token (256 random bits); only its hash is stored. */
export function newRefreshToken(): { token: string; hash: string } {
  const token = `crt_${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256Hex(token) };
}

const API_KEY = /^cst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/**
 * API keys look like `cst_<16 hex prefix>_<43 chars secret>`. The prefix is public (listed,
 * used to find the key); the secret is 256 random bits, stored only as a SHA-256 hash.
 */
export function newApiKey(): { key: string; prefix: string; secretHash: string } {
  const prefix = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { key: `cst_${prefix}_${secret}`, prefix, secretHash: sha256Hex(secret) };
}

export function parseApiKey(key: string): { prefix: string; secret: string } | null {
  const match = API_KEY.exec(key);
  return match ? { prefix: match[1]!, secret: match[2]! } : null;
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith('cst_');
}
