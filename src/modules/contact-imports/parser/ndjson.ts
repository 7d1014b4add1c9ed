/** NDJSON: one JSON object per line, each line bounded in memory. */

import { isUtf8 } from 'node:buffer';
import { type ImportParseResult, isPlainObject } from './row-schema.js';
import { rowError, type Settings, validateRow } from './validate-row.js';

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

export async function* parseNdjson(
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
