/**
 * Streaming parser for bulk contact imports (`POST /v1/contact-imports`).
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

import { parseCsv } from './csv.js';
import { parseNdjson } from './ndjson.js';
import {
  IMPORT_MAX_ROW_BYTES,
  type ImportFormat,
  type ImportParseResult,
  isRejectedImportRow,
  type ParsedImportRow,
  type ParseImportOptions,
  type RejectedImportRow,
} from './row-schema.js';
import { textChunks } from './text.js';
import type { Settings } from './validate-row.js';

export * from './row-schema.js';

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
