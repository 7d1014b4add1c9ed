import { createHash, randomBytes } from 'node:crypto';
import { AppError, ConflictError, NotFoundError } from '../errors.js';

/**
 * Single-use link tokens (double opt-in and withdrawal links, identity-verification links): 256
 * random bits as base64url, 43 characters. Only the token's SHA-256 is stored, so a database
 * reader cannot act for the person the link was sent to, and a changed character finds no row.
 * There is no payload to sign: the stored hash is what makes a link unforgeable.
 */
export const LINK_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newLinkToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: createHash('sha256').update(token).digest('hex') };
}

/** The stored hash of a presented token, or null when it cannot be one we issued. */
export function linkTokenHash(token: string): string | null {
  return LINK_TOKEN_PATTERN.test(token) ? createHash('sha256').update(token).digest('hex') : null;
}

/** 404 `token_invalid`: no link has this token (or it cannot be one). */
export class TokenInvalidError extends NotFoundError {
  constructor() {
    super('The link is not valid.', 'token_invalid');
  }
}

/** 409 `token_used`: the link worked once already. */
export class TokenUsedError extends ConflictError {
  constructor() {
    super('token_used', 'The link was already used.');
  }
}

/** 410 `token_expired`. */
export class TokenExpiredError extends AppError {
  constructor() {
    super(410, 'token_expired', 'Gone', 'The link has expired.');
  }
}

/**
 * Refuses a link's row that cannot be redeemed at `now`: none (404 `token_invalid`), used (409
 * `token_used`) or expired (410 `token_expired`), in that order, so a used link says so even
 * after it would have expired.
 */
export function assertRedeemable<Row extends { used_at: Date | null; expires_at: Date }>(
  row: Row | undefined,
  now: Date,
): asserts row is Row {
  if (!row) throw new TokenInvalidError();
  if (row.used_at) throw new TokenUsedError();
  if (row.expires_at.getTime() <= now.getTime()) throw new TokenExpiredError();
}
