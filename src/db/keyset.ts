import {
  type Expression,
  type RawBuilder,
  type SelectQueryBuilder,
  type SqlBool,
  sql,
} from 'kysely';
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
  /** One uuid: the audience of a purpose (by contact id). */
  contactId: cursorCodec(cursorField.uuid),
  /** Purposes by key. */
  purposeKey: cursorCodec(cursorField.slug),
  /** Notice versions of a purpose (1, 2, …). */
  noticeVersion: cursorCodec(cursorField.integer(1)),
  /** The audit trail (an `integer` seq, newest first). */
  auditSeq: cursorCodec(cursorField.integer(0)),
  /**
   * The event feed (a `bigint` seq; 0 before the first event), and an endpoint's webhook
   * deliveries (by their event's seq, newest first).
   */
  eventSeq: cursorCodec(cursorField.seq),
  /** An import's row errors, by (row number, ordinal). */
  importError: cursorCodec(cursorField.integer(0), cursorField.integer(0)),
  /** `(due_at, id)`: a list by a deadline held at millisecond precision (`timestamptz(3)`). */
  dueDate: cursorCodec(cursorField.isoTimestamp, cursorField.uuid),
};

type CursorKey = (string | number)[];

/** One column of a list's sort order, and how the cursor carries it. */
export interface KeysetKey<Row, V extends string | number> {
  /** The column as the query names it: `created_at`, `purposes.key`. It must be non-null. */
  readonly column: string;
  /** `asc` (the default) or `desc`. */
  readonly direction?: 'asc' | 'desc';
  /** The row's value of this key, as the cursor carries it. */
  cursorValue(row: Row): V;
  /** The cursor's value as SQL (a cast, a conversion); a bare parameter by default. */
  toSql?(value: V): Expression<unknown>;
}

/** A list's sort keys in order, one per element of its cursor. */
export type KeysetKeys<Row, K extends CursorKey> = {
  readonly [I in keyof K]: KeysetKey<Row, K[I]>;
};

export interface KeysetOptions<Row, K extends CursorKey> {
  codec: CursorCodec<K>;
  /** Typed from the codec and the query's rows, and checked against both. */
  keys: NoInfer<KeysetKeys<Row, K>>;
  limit: number;
  /** The previous page's `nextCursor`; absent for the first page. */
  cursor?: string | undefined;
}

export interface KeysetPage<Row> {
  rows: Row[];
  /** The cursor of the page after this one; null on the last page. */
  nextCursor: string | null;
}

// biome-ignore lint/suspicious/noExplicitAny: the pager works on any table's query
type AnySelect<Row> = SelectQueryBuilder<any, any, Row>;

/**
 * Rows strictly after `after` in the keys' order. All keys one way is a row-value comparison,
 * `(a, b) > (x, y)`, which an index on (a, b) serves as one range; mixed directions need the
 * expanded form, `a > x or (a = x and b < y)`.
 */
function afterPosition<Row, K extends CursorKey>(
  keys: KeysetKeys<Row, K>,
  after: K,
): RawBuilder<SqlBool> {
  const list = keys as readonly KeysetKey<Row, string | number>[];
  const columns = list.map((key) => sql.ref(key.column));
  const values = list.map((key, i) => (key.toSql ? key.toSql(after[i]!) : sql`${after[i]}`));
  const beyond = (key: KeysetKey<Row, string | number>) =>
    sql.raw((key.direction ?? 'asc') === 'asc' ? '>' : '<');
  if (list.length === 1) return sql<SqlBool>`${columns[0]} ${beyond(list[0]!)} ${values[0]}`;
  if (list.every((key) => (key.direction ?? 'asc') === (list[0]!.direction ?? 'asc'))) {
    return sql<SqlBool>`(${sql.join(columns)}) ${beyond(list[0]!)} (${sql.join(values)})`;
  }
  const branches = list.map((key, i) => {
    const equal = columns.slice(0, i).map((column, j) => sql`${column} = ${values[j]}`);
    return sql`(${sql.join([...equal, sql`${columns[i]} ${beyond(key)} ${values[i]}`], sql` and `)})`;
  });
  return sql<SqlBool>`(${sql.join(branches, sql` or `)})`;
}

function cursorOf<Row, K extends CursorKey>(keys: KeysetKeys<Row, K>, row: Row): K {
  return (keys as readonly KeysetKey<Row, string | number>[]).map((key) =>
    key.cursorValue(row),
  ) as K;
}

/** `query` from `after` on, in the keys' order, `limit` rows at most. */
function keysetQuery<Row, K extends CursorKey>(
  query: AnySelect<Row>,
  keys: KeysetKeys<Row, K>,
  after: K | undefined,
  limit: number,
): AnySelect<Row> {
  let q = after ? query.where(afterPosition(keys, after)) : query;
  for (const key of keys as readonly KeysetKey<Row, string | number>[]) {
    q = q.orderBy(key.column, key.direction ?? 'asc');
  }
  return q.limit(limit);
}

/**
 * One page of a list with the cursor for the next. The fetch gets the decoded cursor (the last
 * row served; undefined on the first page) and how many rows to read; it must return them in
 * the list's order, strictly after the cursor. It reads one row more than the page, so the last
 * page, even one exactly `limit` long, says so with a null `nextCursor`.
 *
 * For a statement written by hand (its plan depends on where the cursor goes);
 * {@link keysetPage} does all of it for a query builder.
 */
// `| []` has TypeScript read a `cursorOf` that returns `[a, b]` as a tuple, not an array.
export async function keysetPageWith<Row, K extends CursorKey | []>(
  fetch: (after: K | undefined, limit: number) => Promise<Row[]>,
  options: {
    codec: CursorCodec<K>;
    cursorOf: (row: NoInfer<Row>) => NoInfer<K>;
    limit: number;
    cursor?: string | undefined;
  },
): Promise<KeysetPage<Row>> {
  const after = options.codec.decode(options.cursor);
  const rows = await fetch(after, options.limit + 1);
  const page = rows.slice(0, options.limit);
  const last = page[page.length - 1];
  return {
    rows: page,
    nextCursor:
      rows.length > options.limit && last ? options.codec.encode(options.cursorOf(last)) : null,
  };
}

/**
 * One page of `query` in the keys' order, with an opaque cursor for the next. Keyset
 * pagination: stable under inserts, no OFFSET. A cursor the codec refuses is a 400
 * `invalid_cursor` before any SQL runs. The query must not have an ORDER BY or LIMIT of its own.
 */
export function keysetPage<Row, K extends CursorKey>(
  query: AnySelect<Row>,
  options: KeysetOptions<Row, K>,
): Promise<KeysetPage<Row>> {
  const { codec, keys, limit, cursor } = options;
  return keysetPageWith((after, take) => keysetQuery(query, keys, after, take).execute(), {
    codec,
    cursorOf: (row) => cursorOf(keys, row),
    limit,
    cursor,
  });
}

/**
 * One read of a feed: like {@link keysetPage}, but the feed has no last page. `nextCursor` is
 * always given, the position of the last row served or, with no new rows, the position the
 * reader was at (`start` before the first row), so a reader keeps it and polls again.
 */
export async function keysetFeed<Row, K extends CursorKey>(
  query: AnySelect<Row>,
  options: KeysetOptions<Row, K> & { start: NoInfer<K> },
): Promise<{ rows: Row[]; nextCursor: string }> {
  const { codec, keys, limit } = options;
  const after = codec.decode(options.cursor);
  const rows = await keysetQuery(query, keys, after, limit).execute();
  const last = rows[rows.length - 1];
  return {
    rows,
    nextCursor: codec.encode(last ? cursorOf(keys, last) : (after ?? options.start)),
  };
}

/**
 * Keys `(column, id)` on a `timestamptz(3)` column: the cursor carries the instant as
 * `toISOString()` prints it, exactly what the column holds, so no row is skipped or repeated.
 */
function instantThenId<Row extends { id: string }>(
  column: string,
  instant: (row: Row) => Date,
): KeysetKeys<Row, [string, string]> {
  return [
    { column, cursorValue: (row) => instant(row).toISOString(), toSql: (v) => sql`${new Date(v)}` },
    { column: 'id', cursorValue: (row) => row.id },
  ];
}

/** One page in (created_at, id) order: contacts, users, API keys, imports, accounts. */
export function pageByCreatedAt<Row extends { created_at: Date; id: string }>(
  query: AnySelect<Row>,
  page: { limit: number; cursor?: string | undefined },
): Promise<KeysetPage<Row>> {
  return keysetPage(query, {
    codec: cursors.createdAt,
    keys: instantThenId<Row>('created_at', (row) => row.created_at),
    limit: page.limit,
    cursor: page.cursor,
  });
}

/** One page in (due_at, id) order, the soonest deadline first. */
export function pageByDueDate<Row extends { due_at: Date; id: string }>(
  query: AnySelect<Row>,
  page: { limit: number; cursor?: string | undefined },
): Promise<KeysetPage<Row>> {
  return keysetPage(query, {
    codec: cursors.dueDate,
    keys: instantThenId<Row>('due_at', (row) => row.due_at),
    limit: page.limit,
    cursor: page.cursor,
  });
}

/**
 * Every row of a large set in key order, read `pageSize` rows at a time, so a walk over a whole
 * chain or ledger runs in bounded memory. `fetchPage(after, size)` returns the next rows after
 * key `after` (`start` on the first call), in key order; the walk ends at the first empty page.
 */
export async function* walkInPages<Row, K>(
  fetchPage: (after: K, size: number) => Promise<Row[]>,
  options: { start: K; keyOf: (row: Row) => K; pageSize?: number },
): AsyncGenerator<Row> {
  const size = options.pageSize ?? 1000;
  let after = options.start;
  for (;;) {
    const rows = await fetchPage(after, size);
    const last = rows[rows.length - 1];
    if (last === undefined) return;
    yield* rows;
    after = options.keyOf(last);
  }
}
