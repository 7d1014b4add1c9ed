import { LINK_TOKEN_PATTERN, linkTokenHash, newLinkToken } from '../../lib/link-tokens.js';

/**
 * Consent links: the single-use double opt-in confirmation and withdrawal links a data subject
 * follows (rows of `consent_tokens`), with tokens as `lib/link-tokens.ts` makes them.
 */
export const CONSENT_LINK_TOKEN_PATTERN = LINK_TOKEN_PATTERN;

/** Art. 7(3): withdrawing must be as easy as giving, so the link outlives any mail campaign. */
export const WITHDRAWAL_LINK_TTL_DAYS = 365;

export type ConsentLinkKind = 'confirm' | 'withdraw';

export const CONSENT_LINK_PATHS: Record<ConsentLinkKind, string> = {
  confirm: '/v1/public/consent-confirmations/',
  withdraw: '/v1/public/consent-withdrawals/',
};

export const newConsentLinkToken = newLinkToken;

/** The stored hash of a presented token, or null when it cannot be one we issued. */
export const consentLinkTokenHash = linkTokenHash;
