/** CSV: a header row mapped to the row schema's fields, then one record per row. */

import { type CsvError, parse as createCsvParser } from 'csv-parse';
import { ImportFormatError, type ImportParseResult } from './row-schema.js';
import { rowError, type Settings, validateRow } from './validate-row.js';

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

/** The columns a CSV header may name, in the order the contract lists them. */
export const CSV_COLUMN_NAMES: readonly string[] = [...CSV_COLUMNS.keys()];

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

export async function* parseCsv(
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
