/**
 * Streaming parser for bulk contact imports (`POST /v1/contact-imports`, issue 4 item 9).
 *
 * Pure: bytes in, validated rows and per-row errors out. No database, no HTTP. The service
 * feeds it the request body and writes {@link batches} of its output in transactions.
 *
 * Three promises shape it:
 * - **Bounded memory whatever the file size.** Input is consumed chunk by chunk and rows are
 *   produced lazily (the consumer's pace drives the reading); a row longer than `maxRowBytes`
 *   is rejected without being buffered, so a file with no newline cannot exhaust memory.
 * - **Only lawful rows pass.** Art. 7(1): the controller must be able to demonstrate consent,
 *   so every row carries its consent evidence (purpose, notice version, method, time, and
 *   where available IP, user agent, source URL) or is rejected with `consent_missing` — unless
 *   the caller chose to create such contacts pending a double opt-in.
 * - **No personal data echoed.** A per-row error names the row number, field and a stable code,
 *   never the offending value (the error report is stored and shown in places the data itself
 *   would not be, and must not outlive an erasure under Art. 17). Messages are our own; zod's
 *   and csv-parse's messages can quote input, so they are never passed through.
 */
import { isUtf8 } from 'node:buffer';
import { isIP } from 'node:net';
import { type CsvError, parse as createCsvParser } from 'csv-parse';
import { z } from 'zod';
import { UnprocessableError } from '../../errors.js';
import { normalizeEmail } from '../../lib/email.js';
import { LONE_SURROGATE } from '../../lib/storable-input.js';

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

// ---------------------------------------------------------------------------------------------
// Row schema

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

function isPlainObject(value: unknown): value is Record<string, unknown> {
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

const attributesSchema = z.unknown().transform((value, ctx) => {
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

// ---------------------------------------------------------------------------------------------
// Validation shared by both formats

interface Settings {
  missingConsent: 'reject' | 'pending_double_opt_in';
  maxRowBytes: number;
  csvDelimiter: ',' | ';' | '\t';
}

/** Field names that may appear in an error as they are; anything else might be data. */
const SAFE_FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function describeExpected(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'object':
      return 'an object';
    case 'number':
      return 'a number';
    default:
      return `a ${expected}`;
  }
}

function valueAt(candidate: Record<string, unknown>, path: PropertyKey[]): unknown {
  let value: unknown = candidate;
  for (const key of path) {
    if (!isPlainObject(value)) return undefined;
    value = value[String(key)];
  }
  return value;
}

/** Our own message per zod issue: zod's can quote input (unrecognised keys, for one). */
function toRowErrors(
  issue: z.core.$ZodIssue,
  candidate: Record<string, unknown>,
): ImportRowError[] {
  const field = issue.path.map(String).join('.') || null;
  if (
    (issue.code === 'invalid_type' || issue.code === 'invalid_value') &&
    valueAt(candidate, issue.path) === undefined
  ) {
    return [{ field, code: 'required', message: 'is required' }];
  }
  switch (issue.code) {
    case 'invalid_type':
      return [
        { field, code: 'invalid_type', message: `must be ${describeExpected(issue.expected)}` },
      ];
    case 'too_big':
      return [
        {
          field,
          code: issue.origin === 'string' ? 'too_long' : 'too_big',
          message:
            issue.origin === 'string'
              ? `must be at most ${issue.maximum} characters`
              : `must be at most ${issue.maximum}`,
        },
      ];
    case 'too_small':
      return [
        {
          field,
          code: 'too_small',
          message: issue.origin === 'string' ? 'must not be empty' : `must be at least 1`,
        },
      ];
    case 'invalid_format': {
      const expected: Record<string, string> = {
        datetime: 'must be an ISO 8601 timestamp with a time zone, e.g. 2025-05-01T09:30:00Z',
        url: 'must be an http or https URL',
        regex:
          field === 'consent.purpose'
            ? 'must be a purpose key: lower-case letters, digits, - and _'
            : 'has an invalid format',
      };
      return [{ field, code: 'invalid_format', message: expected[issue.format] ?? 'is invalid' }];
    }
    case 'invalid_value':
      return [
        { field, code: 'invalid_value', message: `must be one of: ${issue.values.join(', ')}` },
      ];
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        field: SAFE_FIELD_NAME.test(key) ? [...issue.path.map(String), key].join('.') : field,
        code: 'unknown_field',
        message: 'is not a recognised field',
      }));
    case 'custom': {
      const code = typeof issue.params?.code === 'string' ? issue.params.code : 'invalid';
      const message =
        code === 'invalid_ip' ? 'must be an IPv4 or IPv6 address' : issue.message || 'is invalid';
      return [{ field, code, message }];
    }
    default:
      return [{ field, code: 'invalid', message: 'is invalid' }];
  }
}

/** Validates one candidate row and applies the missing-consent policy. */
function validateRow(
  rowNumber: number,
  candidate: Record<string, unknown>,
  settings: Settings,
  fieldName: (field: string | null) => string | null = (field) => field,
): ImportParseResult {
  const parsed = ImportRowSchema.safeParse(candidate);
  const errors = parsed.success
    ? []
    : parsed.error.issues.flatMap((issue) => toRowErrors(issue, candidate));
  const consentMissing = candidate.consent === undefined;
  if (consentMissing && settings.missingConsent === 'reject') {
    errors.push({
      field: 'consent',
      code: 'consent_missing',
      message: 'consent evidence is required (or import with pending double opt-in)',
    });
  }
  if (errors.length > 0 || !parsed.success) {
    return {
      rowNumber,
      errors: errors.map((error) => ({ ...error, field: fieldName(error.field) })),
    };
  }
  const { consent, ...profile } = parsed.data;
  const row: ImportRow =
    consent === undefined
      ? { ...profile, pendingDoubleOptIn: true }
      : { ...profile, consent, pendingDoubleOptIn: false };
  return { rowNumber, row };
}

function rowError(rowNumber: number, code: string, message: string): RejectedImportRow {
  return { rowNumber, errors: [{ field: null, code, message }] };
}

// ---------------------------------------------------------------------------------------------
// Bytes in

/** How much of the start of the input is inspected to decide whether it is text at all. */
const SNIFF_BYTES = 4096;
/**
 * Largest piece handed to a format parser at once. csv-parse turns a whole piece into records
 * in one synchronous call, so a caller passing one huge Buffer must not make that all rows.
 */
const MAX_PIECE_BYTES = 64 * 1024;

function toBuffer(chunk: Buffer | Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

function notText(utf16: boolean): ImportFormatError {
  return new ImportFormatError(
    'not_text',
    utf16
      ? 'The file is UTF-16 text; save it as UTF-8.'
      : 'The file is not UTF-8 text (it looks binary: a spreadsheet, archive or image?).',
  );
}

/**
 * Normalises the source to Buffers and refuses a binary file before anything is parsed: the
 * first 4 KiB must be UTF-8 without NUL bytes. Each chunk is checked as it arrives and passed on
 * at once, so a slow sender's first rows are not held back. Later damage is reported per row.
 */
async function* textChunks(
  source: AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream,
): AsyncGenerator<Buffer> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let inspected = 0;
  for await (const chunk of source as AsyncIterable<Buffer | Uint8Array | string>) {
    const buffer = toBuffer(chunk);
    if (buffer.length === 0) continue;
    if (inspected < SNIFF_BYTES) {
      const sample = buffer.subarray(0, SNIFF_BYTES - inspected);
      const utf16 =
        inspected === 0 &&
        ((sample[0] === 0xff && sample[1] === 0xfe) || (sample[0] === 0xfe && sample[1] === 0xff));
      if (utf16 || sample.includes(0)) throw notText(utf16);
      try {
        // `stream: true` keeps a character cut in half at the end of a chunk for the next one.
        decoder.decode(sample, { stream: true });
      } catch {
        throw notText(false);
      }
      inspected += sample.length;
    }
    for (let offset = 0; offset < buffer.length; offset += MAX_PIECE_BYTES) {
      yield buffer.length <= MAX_PIECE_BYTES
        ? buffer
        : buffer.subarray(offset, offset + MAX_PIECE_BYTES);
    }
  }
  if (inspected < SNIFF_BYTES) {
    try {
      decoder.decode(); // the whole input was inspected: it must not end inside a character
    } catch {
      throw notText(false);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// NDJSON

type Line =
  | { lineNumber: number; tooLarge: false; bytes: Buffer }
  | { lineNumber: number; tooLarge: true };

/**
 * Splits bytes into lines without ever holding more than `maxBytes` of one line: past that the
 * line is reported too large once and the rest of it is skipped up to the next newline, where
 * parsing resumes.
 */
async function* lines(chunks: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<Line> {
  let parts: Buffer[] = [];
  let length = 0;
  let skipping = false;
  let lineNumber = 1;
  for await (const chunk of chunks) {
    let start = 0;
    while (start <= chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? chunk.length : newline;
      if (!skipping && end > start) {
        if (length + (end - start) > maxBytes) {
          skipping = true;
          parts = [];
          length = 0;
          yield { lineNumber, tooLarge: true };
        } else {
          parts.push(chunk.subarray(start, end));
          length += end - start;
        }
      }
      if (newline === -1) break;
      if (!skipping) {
        yield { lineNumber, tooLarge: false, bytes: joinParts(parts, length) };
      }
      parts = [];
      length = 0;
      skipping = false;
      lineNumber += 1;
      start = newline + 1;
    }
  }
  if (!skipping && length > 0) {
    yield { lineNumber, tooLarge: false, bytes: joinParts(parts, length) };
  }
}

function joinParts(parts: Buffer[], length: number): Buffer {
  const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  // CR LF line endings: the CR belongs to the line break, not the row.
  return joined[joined.length - 1] === 0x0d ? joined.subarray(0, joined.length - 1) : joined;
}

/**
 * Keys set to null mean "not given": treat them as absent, one level into `consent` too.
 * The copy has no prototype, so a `"__proto__"` key stays an ordinary (unknown) field instead
 * of becoming the object's prototype and lending it inherited fields.
 */
function withoutNulls(record: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = Object.create(null);
  for (const [key, value] of Object.entries(record)) {
    if (value === null) continue;
    result[key] = key === 'consent' && isPlainObject(value) ? withoutNulls(value) : value;
  }
  return result;
}

async function* parseNdjson(
  chunks: AsyncIterable<Buffer>,
  settings: Settings,
): AsyncGenerator<ImportParseResult> {
  for await (const line of lines(chunks, settings.maxRowBytes)) {
    if (line.tooLarge) {
      yield rowError(
        line.lineNumber,
        'row_too_large',
        `the row is longer than ${settings.maxRowBytes} bytes`,
      );
      continue;
    }
    if (!isUtf8(line.bytes)) {
      yield rowError(line.lineNumber, 'invalid_encoding', 'the row is not valid UTF-8');
      continue;
    }
    // TextDecoder-like BOM handling for the first line: an editor may have written one.
    let text = line.bytes.toString('utf8');
    if (line.lineNumber === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      yield rowError(line.lineNumber, 'invalid_json', 'the row is not valid JSON');
      continue;
    }
    if (!isPlainObject(value)) {
      yield rowError(line.lineNumber, 'not_an_object', 'the row must be a JSON object');
      continue;
    }
    yield validateRow(line.lineNumber, withoutNulls(value), settings);
  }
}

// ---------------------------------------------------------------------------------------------
// CSV

/**
 * CSV column → field path in {@link ImportRowSchema}. A Map, not an object literal: a header
 * cell reading `constructor` or `__proto__` must not find something on Object.prototype.
 */
const CSV_COLUMNS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    email: 'email',
    first_name: 'firstName',
    last_name: 'lastName',
    language: 'language',
    attributes: 'attributes',
    consent_purpose: 'consent.purpose',
    consent_notice_version: 'consent.noticeVersion',
    consent_method: 'consent.method',
    consent_granted_at: 'consent.grantedAt',
    consent_ip: 'consent.ip',
    consent_user_agent: 'consent.userAgent',
    consent_source_url: 'consent.sourceUrl',
  }),
);

const CSV_COLUMN_OF_FIELD: ReadonlyMap<string, string> = new Map(
  [...CSV_COLUMNS].map(([column, field]) => [field, column]),
);

/** Errors name the CSV column the user sees, not our internal field path. */
function csvFieldName(field: string | null): string | null {
  return field === null ? null : (CSV_COLUMN_OF_FIELD.get(field) ?? field);
}

/** A header cell worth naming in an error: short and identifier-like, so not a data value. */
const SAFE_COLUMN_NAME = /^[A-Za-z0-9_ .-]{1,64}$/;

type CsvEvent =
  | { kind: 'record'; fields: string[]; startLine: number }
  | { kind: 'skipped'; line: number };

interface CsvHeader {
  paths: string[];
}

function readHeader(fields: string[]): CsvHeader {
  const names = fields.map((name) => name.trim().toLowerCase());
  // A file without a header row: its first row is data, and naming it would echo that data.
  if (names.some((name) => name.includes('@'))) {
    throw new ImportFormatError(
      'missing_header',
      'The first line must be a header naming the columns (it looks like a data row).',
      1,
    );
  }
  const seen = new Set<string>();
  const paths: string[] = [];
  for (const [index, name] of names.entries()) {
    const path = CSV_COLUMNS.get(name);
    if (path === undefined) {
      const label = SAFE_COLUMN_NAME.test(name) ? `"${name}"` : `number ${index + 1}`;
      throw new ImportFormatError(
        'unknown_column',
        `Unknown column ${label}. Known columns: ${[...CSV_COLUMNS.keys()].join(', ')}.`,
        1,
      );
    }
    if (seen.has(name)) {
      throw new ImportFormatError('duplicate_column', `Column "${name}" appears twice.`, 1);
    }
    seen.add(name);
    paths.push(path);
  }
  if (!seen.has('email')) {
    throw new ImportFormatError('missing_column', 'The header has no "email" column.', 1);
  }
  return { paths };
}

/**
 * Line breaks inside a record's quoted fields: how many lines csv-parse counted for them (it
 * counts every CR and every LF, so a CR LF counts twice) and how many physical lines they are.
 */
function lineBreaksIn(fields: string[]): { counted: number; physical: number } {
  let counted = 0;
  let physical = 0;
  for (const field of fields) {
    for (let index = 0; index < field.length; index++) {
      const char = field.charCodeAt(index);
      if (char === 0x0a) {
        counted += 1;
        physical += 1;
      } else if (char === 0x0d) {
        counted += 1;
        if (field.charCodeAt(index + 1) !== 0x0a) physical += 1;
      }
    }
  }
  return { counted, physical };
}

function csvRecordToRow(
  rowNumber: number,
  fields: string[],
  header: CsvHeader,
  settings: Settings,
): ImportParseResult {
  if (fields.length !== header.paths.length) {
    return rowError(
      rowNumber,
      'csv_malformed',
      `the row has ${fields.length} fields; the header has ${header.paths.length}`,
    );
  }
  const candidate: Record<string, unknown> = {};
  const consent: Record<string, unknown> = {};
  for (const [index, path] of header.paths.entries()) {
    const raw = fields[index]!;
    // An empty cell is an absent value: spreadsheets cannot express "not given" otherwise.
    if (raw.trim() === '') continue;
    if (path === 'attributes') {
      try {
        candidate.attributes = JSON.parse(raw);
      } catch {
        return {
          rowNumber,
          errors: [{ field: 'attributes', code: 'invalid_json', message: 'must be JSON' }],
        };
      }
    } else if (path === 'consent.noticeVersion') {
      consent.noticeVersion = /^\s*\d{1,10}\s*$/.test(raw) ? Number(raw) : raw;
    } else if (path.startsWith('consent.')) {
      consent[path.slice('consent.'.length)] = raw;
    } else {
      candidate[path] = raw;
    }
  }
  if (Object.keys(consent).length > 0) candidate.consent = consent;
  return validateRow(rowNumber, candidate, settings, csvFieldName);
}

/**
 * csv-parse errors it can step over: the record is dropped and parsing goes on at the next
 * record. Every other error stops the import: after an unclosed or badly closed quote the
 * parser stays inside a quoted field and would silently swallow the rows that follow, and past
 * `max_record_size` it stops without an error. Those become a fatal {@link ImportFormatError}.
 */
const SKIPPABLE_CSV_ERRORS = new Set(['INVALID_OPENING_QUOTE']);

async function* parseCsv(
  chunks: AsyncIterable<Buffer>,
  settings: Settings,
): AsyncGenerator<ImportParseResult> {
  // Records and skipped-record notices, in input order, from the chunk just written.
  const events: CsvEvent[] = [];
  // Physical line where the last complete record ended, and how many lines csv-parse's own
  // count is ahead of the physical one (see lineBreaksIn).
  let lastLine = 0;
  let overcount = 0;
  const parser = createCsvParser({
    bom: true,
    delimiter: settings.csvDelimiter,
    skip_empty_lines: true,
    // Column counts are checked here, so the message is ours and the row number exact.
    relax_column_count: true,
    skip_records_with_error: true,
    max_record_size: settings.maxRowBytes,
    on_record: (record: string[], context) => {
      // A record with a line break inside a quoted field spans several lines; the row number
      // is the line where it starts, as for NDJSON.
      const fast = !record.some((field) => field.includes('\n') || field.includes('\r'));
      const breaks = fast ? { counted: 0, physical: 0 } : lineBreaksIn(record);
      const endLine = context.lines - overcount - (breaks.counted - breaks.physical);
      overcount += breaks.counted - breaks.physical;
      events.push({ kind: 'record', fields: record, startLine: endLine - breaks.physical });
      lastLine = endLine;
      return null; // consumed here; nothing accumulates in the stream's buffer
    },
    on_skip: (error: CsvError | undefined) => {
      const line = typeof error?.lines === 'number' ? error.lines - overcount : lastLine + 1;
      if (error && SKIPPABLE_CSV_ERRORS.has(error.code)) {
        events.push({ kind: 'skipped', line });
        lastLine = Math.max(lastLine, line);
        return undefined;
      }
      // Where the broken record began: the line after the last complete one.
      const start = lastLine + 1;
      if (error?.code === 'CSV_MAX_RECORD_SIZE') {
        throw new ImportFormatError(
          'row_too_large',
          `The row starting at line ${start} is longer than ${settings.maxRowBytes} bytes (or a quoted field there is never closed).`,
          start,
        );
      }
      if (error?.code === 'CSV_QUOTE_NOT_CLOSED') {
        throw new ImportFormatError(
          'csv_malformed',
          `A quoted field in the row starting at line ${start} is never closed.`,
          start,
        );
      }
      throw new ImportFormatError(
        'csv_malformed',
        error?.code === 'CSV_INVALID_CLOSING_QUOTE'
          ? `Broken CSV quoting at line ${line}: a closing quote must be followed by a delimiter or the end of the line.`
          : `The CSV cannot be read past line ${line}.`,
        line,
      );
    },
  });
  // Failures arrive through the write and end callbacks below; this only keeps the stream's
  // 'error' event from being an uncaught exception.
  parser.on('error', () => {});

  const feed = (chunk: Buffer | null) =>
    new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null) => (error ? reject(error) : resolve());
      if (chunk === null) parser.end(done);
      else parser.write(chunk, done);
    });

  let header: CsvHeader | null = null;
  let lastSkippedLine = -1;
  function* drain(): Generator<ImportParseResult> {
    const pending = events.splice(0);
    for (const event of pending) {
      if (event.kind === 'skipped') {
        if (header === null) {
          throw new ImportFormatError('csv_malformed', 'The header row has broken quoting.', 1);
        }
        // csv-parse may report one bad record more than once (one call per stray quote).
        if (event.line === lastSkippedLine) continue;
        lastSkippedLine = event.line;
        yield rowError(event.line, 'csv_malformed', 'the row has a quote inside an unquoted field');
        continue;
      }
      lastSkippedLine = -1;
      if (header === null) {
        header = readHeader(event.fields);
        continue;
      }
      // Rows of empty cells (`,,,`) are what spreadsheets write for blank lines.
      if (event.fields.every((field) => field.trim() === '')) continue;
      yield csvRecordToRow(event.startLine, event.fields, header, settings);
    }
  }

  // The rows parsed before a fatal error in the same chunk are still produced, then the error.
  async function* feedAndDrain(chunk: Buffer | null): AsyncGenerator<ImportParseResult> {
    let failure: unknown;
    try {
      await feed(chunk);
    } catch (error) {
      failure = error;
    }
    yield* drain();
    if (failure !== undefined) throw failure;
  }

  try {
    for await (const chunk of chunks) yield* feedAndDrain(chunk);
    yield* feedAndDrain(null);
    if (header === null) {
      throw new ImportFormatError('missing_header', 'The file is empty: a header row is required.');
    }
  } finally {
    parser.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/**
 * Parses an import body as it streams in. Yields, in file order, `{ rowNumber, row }` for each
 * accepted row and `{ rowNumber, errors }` for each rejected one; blank lines are skipped.
 * Reading is driven by the consumer, so memory stays bounded by one chunk plus one row.
 *
 * NDJSON: one JSON object per line in the shape of {@link ImportRowSchema}; `null` means
 * absent. CSV: a header row naming columns from `email, first_name, last_name, language,
 * attributes` (a JSON object as text) and `consent_purpose, consent_notice_version,
 * consent_method, consent_granted_at, consent_ip, consent_user_agent, consent_source_url`; an
 * empty cell is an absent value.
 *
 * @throws ImportFormatError when the input is not text (`not_text`), the CSV header cannot be
 *   mapped (`missing_header`, `unknown_column`, `duplicate_column`, `missing_column`), or the
 *   CSV cannot be read past some point (`csv_malformed`, `row_too_large`, with `line`).
 */
export function parseImport(
  source: AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream,
  format: ImportFormat,
  options: ParseImportOptions = {},
): AsyncGenerator<ImportParseResult> {
  const settings: Settings = {
    missingConsent: options.missingConsent ?? 'reject',
    maxRowBytes: options.maxRowBytes ?? IMPORT_MAX_ROW_BYTES,
    csvDelimiter: options.csvDelimiter ?? ',',
  };
  if (!Number.isInteger(settings.maxRowBytes) || settings.maxRowBytes < 1) {
    throw new RangeError('maxRowBytes must be a positive integer');
  }
  const chunks = textChunks(source);
  return format === 'csv' ? parseCsv(chunks, settings) : parseNdjson(chunks, settings);
}

/**
 * A contiguous stretch of the file: its accepted rows (at most `size`) and the rejected rows
 * among them (at most `size`). Writing `rows` and `rejected` in one transaction, with
 * `lastRowNumber` as the import's checkpoint, is what makes an interrupted import resumable
 * without duplicates or half-written batches.
 */
export interface ImportBatch {
  rows: ParsedImportRow[];
  rejected: RejectedImportRow[];
  firstRowNumber: number;
  lastRowNumber: number;
}

/**
 * Groups parse results into batches for multi-row inserts. Errors travel inside the batch of
 * the rows around them rather than ahead of it, so a checkpoint after a batch covers both.
 * A batch closes when it holds `size` accepted rows or `size` rejected ones (so a file of
 * nothing but errors still comes out in bounded pieces), and at the end of the input.
 */
export async function* batches(
  results: AsyncIterable<ImportParseResult>,
  size: number,
): AsyncGenerator<ImportBatch> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  let batch: ImportBatch | null = null;
  for await (const result of results) {
    batch ??= {
      rows: [],
      rejected: [],
      firstRowNumber: result.rowNumber,
      lastRowNumber: result.rowNumber,
    };
    batch.lastRowNumber = result.rowNumber;
    if (isRejectedImportRow(result)) batch.rejected.push(result);
    else batch.rows.push(result);
    if (batch.rows.length >= size || batch.rejected.length >= size) {
      yield batch;
      batch = null;
    }
  }
  if (batch !== null) yield batch;
}
