/** Text decoding: bytes in, UTF-8 checked pieces out, a binary or UTF-16 file refused early. */

import { ImportFormatError } from './row-schema.js';

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
export async function* textChunks(
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
