import { createHash } from 'node:crypto';
import { AppError, UnprocessableError } from '../../errors.js';

/**
 * The body of one import upload, read once: it enforces the size limit, hashes the bytes as
 * they are handed to the parser, takes the checkpoints that go with each committed batch and,
 * on a resumed upload, proves that the body begins with the bytes already imported before
 * anything of it may be written.
 *
 * Why a prefix hash: a resumed upload skips the rows up to the job's last committed row. That
 * is only right if those rows are the same rows, so each batch's checkpoint stores how many
 * bytes had been read when the batch closed and their SHA-256 (Node's Hash cannot be stored,
 * but `copy()` gives the digest so far). The resumed upload hashes its own first bytes and
 * compares them with the checkpoint as soon as it has read that many.
 */

/** What a committed batch had read of the body. */
export interface BodyCheckpoint {
  bytes: number;
  sha256: string;
  /** The body had ended: these bytes are all of it. */
  whole: boolean;
}

/** Largest piece handed on at once (the parser's unit of work, and the checkpoints' grain). */
const PIECE_BYTES = 64 * 1024;

/**
 * How far a resumed upload may read ahead to check its prefix before writing. A checkpoint is
 * taken as a batch closes, at most two pieces after the end of the batch's last row (the CSV
 * parser may wait for one more piece before it hands over a record); with the same bytes, the
 * next row can only come out within those pieces of the checkpoint. A row that comes out
 * earlier means the rows are not where they were: the bodies differ.
 */
const MAX_READ_AHEAD_BYTES = 16 * PIECE_BYTES;

export class ImportContentMismatchError extends UnprocessableError {
  constructor(detail: string) {
    super(
      'import_content_mismatch',
      `${detail} Retry with the file that was being imported, or import this one with a new ` +
        'Idempotency-Key.',
    );
  }
}

export function importTooLarge(limit: number) {
  return new AppError(
    413,
    'payload_too_large',
    'Payload too large',
    `The import body is larger than IMPORT_MAX_BYTES (${limit} bytes); split the file.`,
  );
}

function toBuffer(chunk: Buffer | Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

export class ImportBody {
  private readonly source: AsyncIterator<Buffer | Uint8Array | string>;
  private readonly hash = createHash('sha256');
  /** Read from the source but not yet handed on, in order. */
  private readonly ahead: Buffer[] = [];
  private aheadBytes = 0;
  /** Bytes read from the source (the size limit). */
  private received = 0;
  /** Bytes handed on (and hashed). */
  private consumed = 0;
  private sourceDone = false;
  /** Every byte was handed on. */
  private ended = false;
  private failure: Error | undefined;
  private cancelRead: ((error: Error) => void) | undefined;
  /** Only a resumed upload has one: what the job's last checkpoint says it had read. */
  private readonly expected: BodyCheckpoint | null;
  /** The expected prefix was found (for a `whole` one: and the body ended right after it). */
  private prefixMatched: boolean;
  verified: boolean;

  constructor(
    private readonly stream: AsyncIterable<Buffer | Uint8Array | string>,
    private readonly maxBytes: number,
    expected: BodyCheckpoint | null = null,
  ) {
    this.source = stream[Symbol.asyncIterator]();
    this.expected = expected && expected.bytes > 0 ? expected : null;
    this.prefixMatched = this.expected === null;
    this.verified = this.expected === null;
  }

  /** Stops the reading: the pending read and every later one fail with `error`. */
  interrupt(error: Error) {
    this.failure ??= error;
    this.cancelRead?.(error);
  }

  get interrupted(): Error | undefined {
    return this.failure;
  }

  /**
   * Releases the source: a stream not read to its end is destroyed (as leaving a `for await`
   * early would). Not through the iterator's `return()`: with a read still pending (a stalled
   * sender) that waits for the read, which may never come.
   */
  close() {
    this.cancelRead = undefined;
    if (this.sourceDone) return;
    const stream = this.stream as { destroy?: () => void };
    if (typeof stream.destroy === 'function') stream.destroy();
    else this.source.return?.().catch(() => undefined);
  }

  private async read(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.sourceDone) return undefined;
      const next = this.source.next();
      const result = await new Promise<IteratorResult<Buffer | Uint8Array | string>>(
        (resolve, reject) => {
          this.cancelRead = reject;
          next.then(resolve, reject);
        },
      ).finally(() => {
        this.cancelRead = undefined;
      });
      if (result.done) {
        this.sourceDone = true;
        return undefined;
      }
      const bytes = toBuffer(result.value);
      this.received += bytes.length;
      if (this.received > this.maxBytes) throw importTooLarge(this.maxBytes);
      if (bytes.length > 0) return bytes;
    }
  }

  /** The body in pieces of at most 64 KiB, hashed as they are handed on. */
  async *pieces(): AsyncGenerator<Buffer> {
    for (;;) {
      let chunk = this.ahead.shift();
      if (chunk) this.aheadBytes -= chunk.length;
      else chunk = await this.read();
      if (chunk === undefined) {
        this.ended = true;
        this.atEnd();
        return;
      }
      if (chunk.length > PIECE_BYTES) {
        this.ahead.unshift(chunk.subarray(PIECE_BYTES));
        this.aheadBytes += chunk.length - PIECE_BYTES;
        chunk = chunk.subarray(0, PIECE_BYTES);
      }
      this.consume(chunk);
      yield chunk;
    }
  }

  private consume(piece: Buffer) {
    const expected = this.expected;
    const before = this.consumed;
    this.consumed += piece.length;
    if (!expected || this.consumed < expected.bytes) {
      this.hash.update(piece);
      return;
    }
    if (this.prefixMatched) {
      // Only a whole-body checkpoint gets here: the body goes on past what it said was all.
      if (expected.whole) throw this.mismatch();
      this.hash.update(piece);
      return;
    }
    const cut = expected.bytes - before;
    this.hash.update(piece.subarray(0, cut));
    if (this.hash.copy().digest('hex') !== expected.sha256) throw this.mismatch();
    this.prefixMatched = true;
    if (expected.whole && cut < piece.length) throw this.mismatch();
    this.hash.update(piece.subarray(cut));
    if (!expected.whole) this.verified = true;
  }

  private atEnd() {
    if (this.verified) return;
    if (!this.prefixMatched) throw this.mismatch();
    this.verified = true; // a whole-body checkpoint, matched, and nothing after it
  }

  private mismatch() {
    const expected = this.expected!;
    return new ImportContentMismatchError(
      expected.whole
        ? `This body is not the file this import read to its end (${expected.bytes} bytes, ` +
            'compared by SHA-256).'
        : `The first ${expected.bytes} bytes of this body are not the ones this import ` +
            'already committed (compared by SHA-256), so the rows it would skip are not the ' +
            'rows it imported.',
    );
  }

  /**
   * Before the first row after the checkpoint is written: reads ahead (keeping the bytes for
   * the parser) until the expected prefix can be compared, and compares it.
   */
  async verifyPrefix(): Promise<void> {
    if (this.verified) return;
    const expected = this.expected!;
    // A whole-body checkpoint also needs to see that nothing follows.
    const needed = expected.bytes + (expected.whole ? 1 : 0);
    let readAhead = 0;
    while (this.consumed + this.aheadBytes < needed) {
      if (readAhead > MAX_READ_AHEAD_BYTES) throw this.mismatch();
      const chunk = await this.read();
      if (chunk === undefined) break;
      this.ahead.push(chunk);
      this.aheadBytes += chunk.length;
      readAhead += chunk.length;
    }
    if (!this.prefixMatched) {
      const probe = this.hash.copy();
      let at = this.consumed;
      for (const chunk of this.ahead) {
        if (at >= expected.bytes) break;
        const take = Math.min(chunk.length, expected.bytes - at);
        probe.update(chunk.subarray(0, take));
        at += take;
      }
      if (at < expected.bytes || probe.digest('hex') !== expected.sha256) throw this.mismatch();
    }
    if (expected.whole && this.consumed + this.aheadBytes > expected.bytes) throw this.mismatch();
    this.verified = true;
  }

  /**
   * After a failure before the prefix was verified: reads on, without keeping the bytes, to
   * tell whether this body differs from the one being resumed. `unknown` when the body cannot
   * be read further.
   */
  async settlePrefix(): Promise<'match' | 'mismatch' | 'unknown'> {
    if (this.verified) return 'match';
    const expected = this.expected!;
    try {
      const probe = this.hash.copy();
      let at = this.consumed;
      let matched = this.prefixMatched;
      const take = (chunk: Buffer) => {
        if (!matched && at < expected.bytes) {
          probe.update(chunk.subarray(0, expected.bytes - at));
        }
        at += chunk.length;
        if (!matched && at >= expected.bytes) {
          if (probe.digest('hex') !== expected.sha256) return 'mismatch';
          matched = true;
        }
        return matched && expected.whole && at > expected.bytes ? 'mismatch' : null;
      };
      for (const chunk of this.ahead.splice(0)) if (take(chunk)) return 'mismatch';
      this.aheadBytes = 0;
      while (!matched || expected.whole) {
        const chunk = await this.read();
        if (chunk === undefined) return matched ? 'match' : 'mismatch';
        if (take(chunk)) return 'mismatch';
      }
      return 'match';
    } catch {
      return 'unknown';
    }
  }

  /** What has been handed on so far: stored with the batch that is closing now. */
  checkpoint(): BodyCheckpoint {
    return {
      bytes: this.consumed,
      sha256: this.hash.copy().digest('hex'),
      whole: this.ended,
    };
  }

  /** SHA-256 of the whole body, hex; only once it was read to its end. */
  digest(): string {
    return this.hash.copy().digest('hex');
  }

  /** Reads the body to its end and returns its SHA-256 (for answering a finished import). */
  async drain(): Promise<string> {
    for await (const _ of this.pieces());
    return this.digest();
  }
}
