import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../identity/tokens.js';

/**
 * Consent links: the single-use double opt-in confirmation and withdrawal links a data subject
 * follows (rows of `consent_tokens`). A link's secret is its token, 256 random bits (base64url,
 * 43 characters); only its SHA-256 is stored, so a database reader cannot act for the subject,
 * and a changed character finds no row. That is what makes the link unforgeable: there is no
 * payload to sign, the stored hash is the signature.
 */
export const CONSENT_LINK_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Art. 7(3): withdrawing must be as easy as giving, so the link outlives any mail campaign. */
export const WITHDRAWAL_LINK_TTL_DAYS = 365;

export type ConsentLinkKind = 'confirm' | 'withdraw';

export const CONSENT_LINK_PATHS: Record<ConsentLinkKind, string> = {
  confirm: '/v1/public/consent-confirmations/',
  withdraw: '/v1/public/consent-withdrawals/',
};

export function newConsentLinkToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: sha256Hex(token) };
}

/** The stored hash of a presented token, or null when it cannot be one we issued. */
export function consentLinkTokenHash(token: string): string | null {
  return CONSENT_LINK_TOKEN_PATTERN.test(token) ? sha256Hex(token) : null;
}
