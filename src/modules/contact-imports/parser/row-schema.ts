/**
 * The shape of one import row and the rules each field must meet, with the error types both
 * formats report. Messages are our own and never quote the offending value (Art. 17: the error
 * report must not outlive an erasure).
 */

import { isIP } from 'node:net';
import { z } from 'zod';
import { UnprocessableError } from '../../../errors.js';
import { normalizeEmail } from '../../../lib/email.js';
import { LONE_SURROGATE } from '../../../lib/storable-input.js';

/** Longest accepted row (an NDJSON line or a CSV record), in bytes. */
export const IMPORT_MAX_ROW_BYTES = 64 * 1024;
/** `attributes` serialised as JSON, in UTF-8 bytes. Custom fields are tags, not documents. */
export const ATTRIBUTES_MAX_BYTES = 8 * 1024;
/** Nesting depth of `attributes`; deep nesting is never a real contact field. */
export const ATTRIBUTES_MAX_DEPTH = 8;
export const NAME_MAX_LENGTH = 200;
export const USER_AGENT_MAX_LENGTH = 512;
export const SOURCE_URL_MAX_LENGTH = 2048;
/** How far in the future a consent timestamp may be, to absorb clock skew between systems. */
export const CONSENT_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** How the ledger records the way consent was given (Art. 7(1): demonstrable consent). */
export const CONSENT_METHODS = ['form', 'import', 'api', 'double_opt_in'] as const;

/** A purpose key as used by `/v1/purposes`, e.g. `newsletter` or `product-updates`. */
const PURPOSE_KEY = /^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$/;

/** BCP 47-ish: a 2–3 letter language, then subtags (`en`, `sl-SI`, `zh-Hant-TW`). */
const LANGUAGE_TAG = /^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$/;

/**
 * C0 controls and DEL in a single-line text field are never legitimate, and NUL in particular
 * is refused by Postgres in `text` and `jsonb` (it would surface as a 5xx at insert time).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
/**
 * U+FFFD is what a decoder leaves where the bytes were not UTF-8 (csv-parse decodes leniently);
 * a lone surrogate can come from a JSON `\uD800` escape and is not valid UTF-8 either.
 */
const ENCODING_DAMAGE = new RegExp(`\\uFFFD|${LONE_SURROGATE.source}`);

type Refinement = z.core.$RefinementCtx;

function reject(ctx: Refinement, code: string, message: string): void {
  ctx.addIssue({ code: 'custom', message, params: { code } });
}

/** Refuses damaged encoding and control characters (NUL among them); true when it is clean. */
function cleanText(value: string, ctx: Refinement): boolean {
  if (ENCODING_DAMAGE.test(value)) {
    reject(ctx, 'invalid_encoding', 'contains characters that are not valid UTF-8');
    return false;
  }
  if (CONTROL_CHARACTERS.test(value)) {
    reject(ctx, 'invalid_characters', 'contains control characters');
    return false;
  }
  return true;
}

/** Single-line text: trimmed, empty means absent, no control characters, valid Unicode. */
function singleLineText(max: number) {
  return z
    .string()
    .trim()
    .max(max)
    .transform((value, ctx) => {
      if (!cleanText(value, ctx)) return z.NEVER;
      return value === '' ? undefined : value;
    });
}

/**
 * A small cache of canonical language tags: `Intl.getCanonicalLocales` is comparatively slow
 * and an import repeats the same handful of tags millions of times. Bounded, so hostile input
 * with many distinct tags cannot grow it without limit.
 */
const canonicalLanguages = new Map<string, string | null>();

function canonicalLanguage(tag: string): string | null {
  const cached = canonicalLanguages.get(tag);
  if (cached !== undefined) return cached;
  let canonical: string | null = null;
  if (tag.length <= 35 && LANGUAGE_TAG.test(tag)) {
    try {
      canonical = Intl.getCanonicalLocales(tag)[0] ?? null;
    } catch {
      canonical = null;
    }
  }
  if (canonicalLanguages.size < 1000) canonicalLanguages.set(tag, canonical);
  return canonical;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Walks attribute values: depth limit, strings (keys included) that Postgres can store, and
 * numbers that survive serialising (`1e400` parses as Infinity and would be stored as null).
 */
function attributesProblem(
  value: unknown,
  depth: number,
): 'too_deep' | 'encoding' | 'not_finite' | null {
  if (typeof value === 'string') {
    return value.includes('\u0000') || ENCODING_DAMAGE.test(value) ? 'encoding' : null;
  }
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'not_finite';
  if (typeof value !== 'object' || value === null) return null;
  if (depth > ATTRIBUTES_MAX_DEPTH) return 'too_deep';
  const entries = Array.isArray(value) ? value.entries() : Object.entries(value);
  for (const [key, child] of entries) {
    if (typeof key === 'string' && (key.includes('\u0000') || ENCODING_DAMAGE.test(key))) {
      return 'encoding';
    }
    const problem = attributesProblem(child, depth + 1);
    if (problem) return problem;
  }
  return null;
}

const attributesSchema = z
  .unknown()
  .meta({
    type: 'object',
    additionalProperties: {},
    description: `Custom fields: a JSON object of at most ${ATTRIBUTES_MAX_BYTES} bytes serialised.`,
  })
  .transform((value, ctx) => {
    if (!isPlainObject(value)) {
      reject(ctx, 'invalid_type', 'must be a JSON object');
      return z.NEVER;
    }
    // The walk first: it stops at the depth limit, while serialising a value nested thousands of
    // levels deep (a 64 KiB row holds 30,000 `[`) overflows the stack.
    const problem = attributesProblem(value, 1);
    if (problem === 'too_deep') {
      reject(ctx, 'attributes_too_deep', `must be nested at most ${ATTRIBUTES_MAX_DEPTH} levels`);
      return z.NEVER;
    }
    if (problem === 'encoding') {
      reject(ctx, 'invalid_encoding', 'contains NUL or characters that are not valid UTF-8');
      return z.NEVER;
    }
    if (problem === 'not_finite') {
      reject(ctx, 'not_finite', 'contains a number too large to represent');
      return z.NEVER;
    }
    if (Buffer.byteLength(JSON.stringify(value), 'utf8') > ATTRIBUTES_MAX_BYTES) {
      reject(ctx, 'attributes_too_large', `must be at most ${ATTRIBUTES_MAX_BYTES} bytes as JSON`);
      return z.NEVER;
    }
    return value;
  });

/**
 * The evidence of one consent (Art. 7(1)): for which purpose, after which version of the
 * notice text (Art. 13: the information given decides what was consented to), how and when,
 * and the technical traces that make it demonstrable.
 */
export const ConsentEvidenceSchema = z.strictObject({
  purpose: z.string().trim().regex(PURPOSE_KEY),
  noticeVersion: z.number().int().positive().max(2_147_483_647),
  method: z.enum(CONSENT_METHODS),
  grantedAt: z.iso.datetime({ offset: true }).transform((value, ctx) => {
    const at = new Date(value);
    // Evidence of a consent that has not happened yet is no evidence (Art. 7(1)).
    if (at.getTime() > Date.now() + CONSENT_CLOCK_SKEW_MS) {
      reject(ctx, 'in_future', 'must not be in the future');
      return z.NEVER;
    }
    return at.toISOString();
  }),
  ip: z
    .string()
    .trim()
    .refine((value) => isIP(value) !== 0, { params: { code: 'invalid_ip' } })
    .optional(),
  userAgent: singleLineText(USER_AGENT_MAX_LENGTH).optional(),
  // A URL parser accepts a NUL or a lone surrogate in the path; Postgres does not store them.
  sourceUrl: z
    .url({ protocol: /^https?$/ })
    .max(SOURCE_URL_MAX_LENGTH)
    .transform((value, ctx) => (cleanText(value, ctx) ? value : z.NEVER))
    .optional(),
});

/**
 * One import row as the NDJSON format spells it (CSV columns are mapped onto it). `consent` is
 * optional here because its absence is a policy decision (`missingConsent`), not a shape error.
 */
export const ImportRowSchema = z.strictObject({
  email: z.string().transform((value, ctx) => {
    const email = normalizeEmail(value);
    if (email === null) {
      reject(ctx, 'invalid_email', 'is not a valid email address');
      return z.NEVER;
    }
    return email;
  }),
  firstName: singleLineText(NAME_MAX_LENGTH).optional(),
  lastName: singleLineText(NAME_MAX_LENGTH).optional(),
  language: z
    .string()
    .trim()
    .transform((value, ctx) => {
      if (value === '') return undefined;
      const language = canonicalLanguage(value);
      if (language === null) {
        reject(ctx, 'invalid_language', 'must be a language tag such as en or sl-SI');
        return z.NEVER;
      }
      return language;
    })
    .optional(),
  attributes: attributesSchema.optional(),
  consent: ConsentEvidenceSchema.optional(),
});

export type ConsentEvidence = z.output<typeof ConsentEvidenceSchema>;
type ValidatedImportRow = z.output<typeof ImportRowSchema>;

/**
 * An accepted row: normalised email, optional profile fields, and either consent evidence or,
 * when the caller allowed it, a flag that the contact must confirm by double opt-in before any
 * mail is sent (the service creates the pending consent for the import's purpose).
 */
export type ImportRow = Omit<ValidatedImportRow, 'consent'> &
  (
    | { consent: ConsentEvidence; pendingDoubleOptIn: false }
    | { consent?: undefined; pendingDoubleOptIn: true }
  );

/** A problem with one row. `field` is null when the problem is the row as a whole. */
export interface ImportRowError {
  field: string | null;
  code: string;
  message: string;
}

/** `rowNumber`: the 1-based line of the file where the row starts (a CSV header is line 1). */
export interface ParsedImportRow {
  rowNumber: number;
  row: ImportRow;
}

export interface RejectedImportRow {
  rowNumber: number;
  errors: ImportRowError[];
}

export type ImportParseResult = ParsedImportRow | RejectedImportRow;

export type ImportFormat = 'ndjson' | 'csv';

export interface ParseImportOptions {
  /**
   * What to do with a row that has no consent evidence: `reject` it (the default; Art. 6(1)(a)
   * and 7(1), no basis, no contact) or accept it flagged `pendingDoubleOptIn`, so the service
   * creates it pending until the person confirms.
   */
  missingConsent?: 'reject' | 'pending_double_opt_in';
  /** Longest accepted row in bytes; default 64 KiB. */
  maxRowBytes?: number;
  /** CSV field delimiter; default `,`. Spreadsheets in many EU locales write `;`. */
  csvDelimiter?: ',' | ';' | '\t';
}

export type ImportFormatErrorCode =
  | 'not_text'
  | 'csv_malformed'
  | 'row_too_large'
  | 'missing_header'
  | 'unknown_column'
  | 'duplicate_column'
  | 'missing_column';

/**
 * The file as a whole cannot be read further: not text, a CSV header we cannot map, or CSV
 * quoting the parser cannot recover from. Rows before it were already produced; the service
 * decides what to keep (whole batches only). `line` says where, when known.
 */
export class ImportFormatError extends UnprocessableError {
  constructor(
    code: ImportFormatErrorCode,
    detail: string,
    readonly line?: number,
  ) {
    super(code, detail);
  }
}

export function isRejectedImportRow(result: ImportParseResult): result is RejectedImportRow {
  return 'errors' in result;
}
