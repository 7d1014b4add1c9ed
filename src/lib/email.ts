/**
 * Email addresses as contact identity.
 *
 * A contact's address is unique per account, case-insensitively (a product rule: one person,
 * one consent history, one erasure). That uniqueness, the suppression list (Art. 17 erasure)
 * and the keyed hashes in `keyed-hash.ts` all depend on one address having exactly one
 * spelling, so every address that enters the system goes through {@link normalizeEmail} first.
 *
 * What we deliberately do NOT do is provider-specific folding: no removing dots in Gmail
 * local parts, no cutting `+tag` suffixes. `jane.doe+news@example.com` and `janedoe@example.com`
 * may be one person's aliases at one provider, but at another provider they are two mailboxes,
 * possibly two people. Merging them would attach one person's consent (Art. 7) to another
 * person's record and would let an erasure request (Art. 17) delete someone else's data, so
 * the only folding applied is the one every mail system agrees on: case and Unicode form.
 */
import { domainToASCII } from 'node:url';
import { z } from 'zod';

/** RFC 5321 §4.5.3.1.3: a forward path is at most 256 octets, 254 without the angle brackets. */
export const EMAIL_MAX_LENGTH = 254;

/** RFC 5321 §4.5.3.1.1: the local part is at most 64 octets. */
const LOCAL_PART_MAX_LENGTH = 64;

/**
 * zod's default email pattern (`z.regexes.email`: dot-atom local part of common characters,
 * dotted domain), with one change: the top-level label may also be an IDNA A-label
 * (`xn--p1ai`, i.e. `.рф`). zod's default only allows letters there, which would reject every
 * address under an internationalised TLD after we convert the domain to ASCII below.
 * Input is already lower-cased when this runs.
 */
const EMAIL_PATTERN =
  /^(?:[a-z0-9_'+-]+\.)*[a-z0-9_'+-]*[a-z0-9_+-]@(?:[a-z0-9][a-z0-9-]*\.)+(?:[a-z]{2,}|xn--[a-z0-9-]+)$/;

const emailSchema = z.email({ pattern: EMAIL_PATTERN });

/**
 * The spelling-only part of normalisation: trim, Unicode NFC, lower case. Total (never fails),
 * so it can canonicalise an address that a later, stricter validator would reject — used for
 * keyed hashes, where an address stored long ago must still hash the same way at erasure time.
 *
 * `toLowerCase` (not `toLocaleLowerCase`) on purpose: the result must not depend on the
 * server's locale (a Turkish locale would turn `I` into dotless `ı`).
 */
export function canonicalizeEmail(input: string): string {
  return input.trim().normalize('NFC').toLowerCase();
}

/**
 * Returns the canonical form of an email address — trimmed, NFC, lower-cased as a whole, with
 * an internationalised domain converted to its ASCII (punycode) form — or `null` when the input
 * is not a deliverable-looking address or is longer than 254 characters.
 *
 * The whole address is lower-cased, local part included. RFC 5321 lets a server treat local
 * parts case-sensitively, but no mainstream mailbox provider does, and the product rule is
 * case-insensitive uniqueness per account: `Jane@Example.com` and `jane@example.com` are one
 * contact, one consent history, one erasure.
 *
 * Internationalised domains (`ana@žabe.si`) become their A-label form (`ana@xn--abe-3na.si`)
 * so the two spellings of one domain are one contact, and any SMTP server can deliver to it.
 * Non-ASCII local parts (SMTPUTF8) are refused: few sending pipelines support them.
 *
 * No provider-specific folding (dots, `+tags`): see the module comment for why.
 */
export function normalizeEmail(input: string): string | null {
  if (typeof input !== 'string') return null;
  // Cheap bound before any regex or IDNA work: no valid address is anywhere near this long,
  // even before a Unicode domain is converted.
  if (input.length > EMAIL_MAX_LENGTH * 4) return null;
  const canonical = canonicalizeEmail(input);
  const at = canonical.lastIndexOf('@');
  if (at <= 0 || at === canonical.length - 1) return null;
  const localPart = canonical.slice(0, at);
  let domain = canonical.slice(at + 1);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
  if (/[^\x00-\x7f]/.test(domain)) {
    domain = domainToASCII(domain);
    if (domain === '') return null;
  }
  const address = `${localPart}@${domain}`;
  if (localPart.length > LOCAL_PART_MAX_LENGTH || address.length > EMAIL_MAX_LENGTH) return null;
  return emailSchema.safeParse(address).success ? address : null;
}

/** A letter or digit: what continues a word, as opposed to a separator such as `-` or `:`. */
const WORD_CHARACTER = /[\p{L}\p{N}]/u;

/**
 * The addresses a free text could contain — a client-chosen `Idempotency-Key` such as
 * `import-jana@example.si-2` — normalised: every cut of the text around each `@` that starts
 * and ends at a separator (or the text's edge) and forms a valid address. Over-generating is
 * harmless, since callers compare the candidates' keyed hashes with known ones: erasure
 * (Art. 17) recognises an address it only holds as a hash this way.
 */
export function addressesWithin(text: string): string[] {
  const found = new Set<string>();
  const stop = (c: string) => c === '@' || /\s/.test(c);
  for (let at = text.indexOf('@'); at !== -1; at = text.indexOf('@', at + 1)) {
    const starts: number[] = [];
    for (let s = at - 1; s >= 0 && at - s <= LOCAL_PART_MAX_LENGTH; s--) {
      if (stop(text[s]!)) break;
      if (s === 0 || !WORD_CHARACTER.test(text[s - 1]!)) starts.push(s);
    }
    const ends: number[] = [];
    for (let e = at + 2; e <= text.length && e - at <= EMAIL_MAX_LENGTH; e++) {
      if (stop(text[e - 1]!)) break;
      if (e === text.length || !WORD_CHARACTER.test(text[e]!)) ends.push(e);
    }
    for (const s of starts) {
      for (const e of ends) {
        const address = normalizeEmail(text.slice(s, e));
        if (address) found.add(address);
      }
    }
  }
  return [...found];
}
