import { type SelectQueryBuilder, sql } from 'kysely';
import { AppError } from '../errors.js';

/**
 * Keyset cursors: an opaque, URL-safe encoding (base64url of a JSON array) of the last row's
 * sort key. Each list declares its cursor as a tuple of typed fields, and decoding checks the
 * arity, every element's type and its range before any of it reaches SQL: a cursor is client
 * input, and a value Postgres cannot cast (a number for a uuid, 2^80 for an integer column,
 * month 13) would otherwise surface as a database error, a 500.
 *
 * Cursors are not signed. A well-typed cursor the API did not issue is only a position in the
 * list's own sort order (the same as a filter the caller could have written), so it reveals
 * nothing; the codec's job is that no cursor can make a query fail.
 */

/** 400 `invalid_cursor`, naming `query.cursor`. */
export class InvalidCursorError extends AppError {
  constructor() {
    const detail = 'query.cursor is not a cursor this API issued.';
    super(400, 'invalid_cursor', 'Bad request', detail, [
      { field: 'query.cursor', message: detail, code: 'invalid_cursor' },
    ]);
  }
}

/** One element of a cursor: its JSON type, and the check a decoded value must pass. */
export interface CursorField<T extends string | number> {
  readonly kind: string;
  /** The value when it is one this field can hold, else undefined. */
  parse(value: unknown): T | undefined;
}

const INT4_MAX = 2_147_483_647;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What `Date#toISOString()` prints for years 0000–9999. */
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** `timestamptz::text` in a UTC session, e.g. `2026-11-25 16:00:00.123456+00`. */
const PG_TIMESTAMPTZ =
  /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?([+-])(\d{2})(?::(\d{2}))?$/;
const SLUG = /^[a-z0-9]+(?:[-_][a-z0-9]+)*$/;
/** The years any row of ours can carry; Postgres refuses year 0 and Date#toISOString 10000+. */
const MIN_YEAR = 1970;
const MAX_YEAR = 9999;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

export const cursorField = {
  /** An integer in [min, max]; defaults fit an `integer` column, from 0. */
  integer(min = 0, max = INT4_MAX): CursorField<number> {
    return {
      kind: `integer ${min}..${max}`,
      parse: (v) =>
        Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max
          ? (v as number)
          : undefined,
    };
  },
  /** A `bigint` sequence number: a safe non-negative integer (JSON numbers are doubles). */
  seq: {
    kind: 'seq',
    parse: (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined),
  } satisfies CursorField<number>,
  uuid: {
    kind: 'uuid',
    parse: (v) => (typeof v === 'string' && UUID.test(v) ? v : undefined),
  } satisfies CursorField<string>,
  /** A purpose key: the slug rule of `PurposeKey`. */
  slug: {
    kind: 'slug',
    parse: (v) => (typeof v === 'string' && v.length <= 64 && SLUG.test(v) ? v : undefined),
  } satisfies CursorField<string>,
  /** A millisecond instant as `toISOString()` prints it; it must round-trip exactly. */
  isoTimestamp: {
    kind: 'iso-timestamp',
    parse(v) {
      if (typeof v !== 'string' || !ISO_MS.test(v)) return undefined;
      const year = Number(v.slice(0, 4));
      if (year < MIN_YEAR || year > MAX_YEAR) return undefined;
      const date = new Date(v);
      return !Number.isNaN(date.getTime()) && date.toISOString() === v ? v : undefined;
    },
  } satisfies CursorField<string>,
  /** A microsecond instant as Postgres prints `timestamptz::text`; the calendar is checked. */
  pgTimestamp: {
    kind: 'pg-timestamptz',
    parse(v) {
      if (typeof v !== 'string') return undefined;
      const m = PG_TIMESTAMPTZ.exec(v);
      if (!m) return undefined;
      const [year, month, day, hour, minute, second, , offH, offM] = m
        .slice(1)
        .map((part) => Number(part ?? 0));
      const ok =
        year! >= MIN_YEAR &&
        year! <= MAX_YEAR &&
        month! >= 1 &&
        month! <= 12 &&
        day! >= 1 &&
        day! <= daysInMonth(year!, month!) &&
        hour! <= 23 &&
        minute! <= 59 &&
        second! <= 59 &&
        offH! <= 15 &&
        offM! <= 59;
      return ok ? v : undefined;
    },
  } satisfies CursorField<string>,
};

type Values<F extends readonly CursorField<string | number>[]> = {
  -readonly [K in keyof F]: F[K] extends CursorField<infer T> ? T : never;
};

export interface CursorCodec<K extends (string | number)[]> {
  readonly fields: readonly CursorField<string | number>[];
  encode(key: K): string;
  /** The key, undefined for no cursor; throws {@link InvalidCursorError} for anything else. */
  decode(cursor: string | undefined): K | undefined;
  /** The key, or undefined when the cursor is not one of this shape (no throw). */
  tryDecode(cursor: string): K | undefined;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A cursor of the given element types, in order. */
export function cursorCodec<const F extends readonly CursorField<string | number>[]>(
  ...fields: F
): CursorCodec<Values<F>> {
  type K = Values<F>;
  function parse(value: unknown): K | undefined {
    if (!Array.isArray(value) || value.length !== fields.length) return undefined;
    const out: (string | number)[] = [];
    for (const [i, field] of fields.entries()) {
      const parsed = field.parse(value[i]);
      if (parsed === undefined) return undefined;
      out.push(parsed);
    }
    return out as K;
  }
  function tryDecode(cursor: string): K | undefined {
    if (!BASE64URL.test(cursor)) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    return parse(value);
  }
  return {
    fields,
    encode(key) {
      return Buffer.from(JSON.stringify(key)).toString('base64url');
    },
    decode(cursor) {
      if (cursor === undefined) return undefined;
      const key = tryDecode(cursor);
      if (key === undefined) throw new InvalidCursorError();
      return key;
    },
    tryDecode,
  };
}

/**
 * Every list's cursor, in one place. Lists with the same sort key share a codec: a cursor from
 * one of them is a valid position in the other, and harmless there.
 */
export const cursors = {
  /** `(created_at, id)`: contacts, users, API keys, imports, accounts. */
  createdAt: cursorCodec(cursorField.isoTimestamp, cursorField.uuid),
  /** `(recorded_at, id)` of the consent ledger, at Postgres' microsecond precision. */
  consentLedger: cursorCodec(cursorField.pgTimestamp, cursorField.uuid),
  /** The audience of a purpose, by contact id. */
  contactId: cursorCodec(cursorField.uuid),
  /** Purposes by key. */
  purposeKey: cursorCodec(cursorField.slug),
  /** Notice versions of a purpose (1, 2, …). */
  noticeVersion: cursorCodec(cursorField.integer(1)),
  /** The audit trail (an `integer` seq, newest first). */
  auditSeq: cursorCodec(cursorField.integer(0)),
  /** The event feed (a `bigint` seq; 0 before the first event). */
  eventSeq: cursorCodec(cursorField.seq),
  /** An import's row errors, by (row number, ordinal). */
  importError: cursorCodec(cursorField.integer(0), cursorField.integer(0)),
};

/**
 * One page of rows in (created_at, id) order, with an opaque cursor for the next page. Keyset
 * pagination: stable under inserts, no OFFSET. `created_at` columns hold milliseconds
 * (timestamptz(3)), so the cursor round-trips through a JavaScript Date exactly.
 */
export async function pageByCreatedAt<Row extends { created_at: Date; id: string }>(
  // biome-ignore lint/suspicious/noExplicitAny: works for any table with created_at and id
  query: SelectQueryBuilder<any, any, Row>,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ rows: Row[]; nextCursor: string | null }> {
  const after = cursors.createdAt.decode(page.cursor);
  let q = query;
  if (after) q = q.where(sql<boolean>`(created_at, id) > (${new Date(after[0])}, ${after[1]})`);
  const rows = await q
    .orderBy('created_at')
    .orderBy('id')
    .limit(page.limit + 1)
    .execute();
  const pageRows = rows.slice(0, page.limit);
  const last = pageRows[pageRows.length - 1];
  return {
    rows: pageRows,
    nextCursor:
      rows.length > page.limit && last
        ? cursors.createdAt.encode([last.created_at.toISOString(), last.id])
        : null,
  };
}
