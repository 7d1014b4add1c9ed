import { createHmac } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import type { DB } from '../../db/schema.js';
import { UnprocessableError } from '../../errors.js';
import { emailFingerprint } from '../../lib/keyed-hash.js';
import { contactsWithConfirmation } from '../consents/consents.service.js';
import { findContactsByEmail, markedUntilConfirmed } from '../contacts/contacts.service.js';
import { isSuppressed } from './suppressions.repository.js';

/**
 * Used only when HASH_SECRET is unset and JWT_SECRET too (development): fixed, so fingerprints
 * (and with them the suppression list) stay the same across restarts. Production refuses to
 * start without HASH_SECRET (see `config.ts`).
 */
const DEVELOPMENT_HASH_SECRET = 'custodian-development-hash-secret-never-use-in-production';

/**
 * The secret of the keyed email hashes (Art. 17 erasure, suppression list). Without HASH_SECRET
 * (allowed outside production) it is derived from JWT_SECRET — an HMAC with a fixed label, so
 * the JWT key itself is never used for another purpose — or from a fixed development string,
 * and a warning is logged: such hashes are only as secret as that fallback.
 */
export function hashSecretOf(config: Config, log?: FastifyBaseLogger): string {
  if (config.HASH_SECRET) return config.HASH_SECRET;
  log?.warn(
    { fallback: config.JWT_SECRET ? 'derived from JWT_SECRET' : 'fixed development secret' },
    'HASH_SECRET is not set: erased addresses are hashed with a fallback key; set HASH_SECRET',
  );
  return createHmac('sha256', config.JWT_SECRET ?? DEVELOPMENT_HASH_SECRET)
    .update('custodian/hash-secret-fallback/v1')
    .digest('hex');
}

/**
 * The one rule for grants at erased addresses, used by every path that records a grant (the
 * consent API and imports) — Art. 17 with Art. 7(1): the person asked to be forgotten, so an
 * erased address comes back only when the person themselves confirms a double opt-in. Until
 * then the only grant that may be recorded is a double opt-in one (pending, not mailable).
 *
 * Of `emails` (normalised, one account), returns those that must confirm first:
 * - a contact marked `suppressed_until_confirmed` (created at a suppressed address). The mark
 *   is on the contact, so it survives rectification to another address and a restriction
 *   being lifted; only a recorded confirmation clears it;
 * - an address in `suppressedEmails` (on the suppression list), unless its contact already
 *   has a confirmed double opt-in: a new contact, or one re-admitted before the mark existed.
 */
export async function mustConfirmFirst(
  db: Kysely<DB>,
  accountId: string,
  emails: string[],
  suppressedEmails: string[],
): Promise<Set<string>> {
  if (emails.length === 0) return new Set();
  const result = await markedUntilConfirmed(db, accountId, emails);
  if (suppressedEmails.length === 0) return result;
  const contacts = await findContactsByEmail(db, accountId, suppressedEmails);
  const confirmed = await contactsWithConfirmation(
    db,
    accountId,
    contacts.map((contact) => contact.id),
  );
  const released = new Set(
    contacts.filter((contact) => confirmed.has(contact.id)).map((contact) => contact.email),
  );
  for (const email of suppressedEmails) if (!released.has(email)) result.add(email);
  return result;
}

/** {@link mustConfirmFirst} for one address. */
export async function addressMustConfirmFirst(
  db: Kysely<DB>,
  accountId: string,
  email: string,
  hashSecret: string,
): Promise<boolean> {
  const suppressed = await isSuppressed(db, accountId, emailFingerprint(hashSecret, email));
  const result = await mustConfirmFirst(db, accountId, [email], suppressed ? [email] : []);
  return result.has(email);
}

/** Whether a grant collected by `method` may be recorded, given {@link mustConfirmFirst}. */
export function grantAllowed(method: string, mustConfirm: boolean): boolean {
  return !mustConfirm || method === 'double_opt_in';
}

/** Why a grant was refused under {@link mustConfirmFirst}: the API's and the import's words. */
export const MUST_CONFIRM_FIRST =
  'the address is on the suppression list (it was erased), or the contact was re-admitted at ' +
  'such an address: until the person confirms a double opt-in, only a double opt-in grant ' +
  '(method double_opt_in) can be recorded';

export function mustConfirmFirstError() {
  return new UnprocessableError('suppressed', `Refused: ${MUST_CONFIRM_FIRST}.`);
}

/**
 * The suppression list (Art. 17): keyed hashes of erased addresses, so that an erased address
 * is not re-created or re-imported by accident. Checking stores nothing.
 */
export function createSuppressionsService(deps: { db: Kysely<DB>; hashSecret: string }) {
  const { db, hashSecret } = deps;
  return {
    /** The keyed hash that stands for a (normalised) address. */
    fingerprint(email: string): string {
      return emailFingerprint(hashSecret, email);
    },

    async check(accountId: string, email: string): Promise<boolean> {
      return isSuppressed(db, accountId, emailFingerprint(hashSecret, email));
    },
  };
}

export type SuppressionsService = ReturnType<typeof createSuppressionsService>;

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself.
 */
export { isSuppressed, suppress, suppressedFingerprints } from './suppressions.repository.js';
