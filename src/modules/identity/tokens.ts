import {
  createCipheriv,
  createDecipheriv,
  hash,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

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

/**
 * The key that seals a refresh token's successor during the reuse grace window: HKDF-SHA256
 * (RFC 5869) over the server secret with its own label, so the secret is never used directly
 * and this key serves this purpose only.
 */
export function successorKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, '', 'custodian/refresh-successor/v1', 32));
}

/**
 * Encrypts `plaintext` with AES-256-GCM under `key`, bound to `context` (additional data: the
 * used token's hash, so a sealed value cannot be moved to another row). Returns
 * base64url(12-byte IV | 16-byte tag | ciphertext).
 */
export function seal(key: Buffer, context: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** Reverses {@link seal}; undefined when the value was altered, or sealed under another key. */
export function unseal(key: Buffer, context: string, sealed: string): string | undefined {
  try {
    const data = Buffer.from(sealed, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, 12));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(data.subarray(12, 28));
    return Buffer.concat([decipher.update(data.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
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
