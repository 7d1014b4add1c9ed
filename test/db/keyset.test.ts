import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import t from 'tap';
import {
  cursorCodec,
  cursorField,
  cursors,
  InvalidCursorError,
  keysetFeed,
  keysetPage,
  keysetPageWith,
  pageByDueDate,
} from '../../src/db/keyset.js';
import { testDatabase } from '../helper.js';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');
const UUID = '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a';

t.test('every codec round-trips the keys it issues', async (t) => {
  const keys: { [K in keyof typeof cursors]: Parameters<(typeof cursors)[K]['encode']>[0] } = {
    createdAt: ['2026-11-25T17:00:00.123Z', UUID],
    consentLedger: ['2026-11-25 17:00:00.123456+00', UUID],
    contactId: [UUID],
    purposeKey: ['product-news_2'],
    noticeVersion: [2_147_483_647],
    auditSeq: [0],
    eventSeq: [Number.MAX_SAFE_INTEGER],
    importError: [12, 0],
    dueDate: ['2026-12-25T09:30:00.000Z', UUID],
  };
  for (const [name, key] of Object.entries(keys)) {
    const codec = cursors[name as keyof typeof cursors] as ReturnType<typeof cursorCodec>;
    const cursor = codec.encode(key as never);
    t.match(cursor, /^[A-Za-z0-9_-]+$/, `${name}: URL-safe`);
    t.same(codec.decode(cursor), key, `${name}: round-trips`);
  }
  t.equal(cursors.createdAt.decode(undefined), undefined, 'no cursor, no key');
  // Postgres prints whole seconds without a fraction, and other session time zones' offsets.
  t.ok(cursors.consentLedger.tryDecode(b64(`["2026-11-25 17:00:00+01:30","${UUID}"]`)));
  t.ok(cursors.consentLedger.tryDecode(b64(`["2024-02-29 23:59:59.5-05","${UUID}"]`)));
});

t.test('decode checks arity, element types and ranges', async (t) => {
  const refused: [keyof typeof cursors, string][] = [
    // The reported ones.
    ['createdAt', '["2026-01-01",1]'],
    ['auditSeq', '[1.5]'],
    ['eventSeq', '[1.5]'],
    ['auditSeq', '["x"]'],
    ['noticeVersion', '["x"]'],
    ['eventSeq', JSON.stringify([2 ** 80])],
    ['importError', JSON.stringify([2 ** 80, 0])],
    // Ranges: int4 columns, safe integers, no negatives.
    ['auditSeq', JSON.stringify([2 ** 31])],
    ['noticeVersion', '[0]'],
    ['eventSeq', JSON.stringify([2 ** 53])],
    ['eventSeq', '[-1]'],
    ['importError', '[1,-1]'],
    ['eventSeq', '[1e400]'],
    // Types: numbers are not strings and the other way round.
    ['eventSeq', '["1"]'],
    ['purposeKey', '[1]'],
    ['contactId', '[null]'],
    ['contactId', '[true]'],
    ['contactId', '[["x"]]'],
    ['purposeKey', '["a\\u0000b"]'],
    ['purposeKey', '["Newsletter"]'],
    ['purposeKey', `["${'a'.repeat(65)}"]`],
    ['contactId', '["3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5g"]'],
    // Arity.
    ['eventSeq', '[]'],
    ['eventSeq', '[1,2]'],
    ['createdAt', `["2026-11-25T17:00:00.000Z"]`],
    ['createdAt', `["2026-11-25T17:00:00.000Z","${UUID}",1]`],
    ['eventSeq', '{"0":1}'],
    ['eventSeq', '1'],
    ['eventSeq', 'null'],
    // Calendars: only instants that exist, in the years a row can carry.
    ['createdAt', `["2026-13-01T00:00:00.000Z","${UUID}"]`],
    ['createdAt', `["2026-02-30T00:00:00.000Z","${UUID}"]`],
    ['createdAt', `["0000-01-01T00:00:00.000Z","${UUID}"]`],
    ['createdAt', `["2026-11-25T17:00:00Z","${UUID}"]`],
    ['createdAt', `["2026-11-25T17:00:00.000+01:00","${UUID}"]`],
    ['consentLedger', `["2026-02-29 10:00:00+00","${UUID}"]`],
    ['consentLedger', `["2026-11-25 24:00:00+00","${UUID}"]`],
    ['consentLedger', `["2026-11-25 17:00:00+16","${UUID}"]`],
    ['consentLedger', `["2026-11-25T17:00:00.000Z","${UUID}"]`],
    ['consentLedger', `["0000-11-25 17:00:00+00","${UUID}"]`],
    // Another list's shape.
    ['createdAt', b64ToText(cursors.consentLedger.encode(['2026-11-25 17:00:00+00', UUID]))],
    ['auditSeq', b64ToText(cursors.contactId.encode([UUID]))],
    ['contactId', b64ToText(cursors.eventSeq.encode([3]))],
    ['importError', b64ToText(cursors.createdAt.encode(['2026-11-25T17:00:00.000Z', UUID]))],
  ];
  for (const [name, json] of refused) {
    const codec = cursors[name];
    t.equal(codec.tryDecode(b64(json)), undefined, `${name} refuses ${json.slice(0, 60)}`);
    t.throws(() => codec.decode(b64(json)), InvalidCursorError);
  }
});

function b64ToText(cursor: string) {
  return Buffer.from(cursor, 'base64url').toString('utf8');
}

t.test('bytes that are not a base64url JSON array are refused', async (t) => {
  for (const cursor of [
    '',
    '!!!',
    'W1Nd=',
    `${b64('[1]')}+/`,
    b64('not json'),
    Buffer.from([0x5b, 0xff, 0xfe, 0x5d]).toString('base64url'),
    b64('[1'),
  ]) {
    t.equal(cursors.eventSeq.tryDecode(cursor), undefined, JSON.stringify(cursor));
  }
});

t.test('the error is a 400 invalid_cursor naming query.cursor', async (t) => {
  const err = t.throws(() => cursors.auditSeq.decode('!!!')) as InvalidCursorError;
  t.match(err, {
    status: 400,
    code: 'invalid_cursor',
    errors: [{ field: 'query.cursor', code: 'invalid_cursor' }],
  });
});

t.test('a codec declared from fields checks each in order', async (t) => {
  const codec = cursorCodec(cursorField.integer(5, 10), cursorField.uuid);
  t.same(codec.decode(codec.encode([5, UUID])), [5, UUID]);
  t.equal(codec.tryDecode(codec.encode([4, UUID])), undefined, 'below the range');
  t.equal(codec.tryDecode(codec.encode([11, UUID])), undefined, 'above the range');
});

/**
 * The pager against a real table of this file's database (an embedded one, or a schema of its
 * own on Postgres). `due_at` is a `timestamptz(3)` like every deadline of ours; `due_at` and
 * `grp` have ties, so only the keys after them decide the order there.
 */
t.test('the pager against a real query', async (t) => {
  const { owner: base } = await testDatabase();
  const statements: string[] = [];
  const db = base
    .withTables<{ keyset_probe: { id: string; n: number; grp: string; due_at: Date } }>()
    .withPlugin({
      transformQuery(args) {
        if (args.node.kind === 'SelectQueryNode') {
          statements.push(base.getExecutor().compileQuery(args.node, args.queryId).sql);
        }
        return args.node;
      },
      transformResult: async (args) => args.result,
    });
  await db.schema
    .createTable('keyset_probe')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('n', 'integer', (c) => c.notNull())
    .addColumn('grp', 'text', (c) => c.notNull())
    .addColumn('due_at', sql`timestamptz(3)`, (c) => c.notNull())
    .execute();
  const due = ['2026-12-01T09:00:00.000Z', '2026-12-01T09:00:00.001Z', '2027-01-15T00:00:00.000Z'];
  type Probe = { id: string; n: number; grp: string; due_at: Date };
  const rows: Probe[] = Array.from({ length: 11 }, (_, i) => ({
    id: randomUUID(),
    n: (i * 7) % 11,
    grp: 'abc'[i % 3]!,
    due_at: new Date(due[i % 3]!),
  }));
  await db.insertInto('keyset_probe').values(rows).execute();
  const probes = () => db.selectFrom('keyset_probe').selectAll();
  const compare = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);

  /** Every page of a list, following nextCursor, with the statements each page ran. */
  async function walk(
    page: (cursor: string | undefined) => Promise<{ rows: Probe[]; nextCursor: string | null }>,
  ) {
    const pages: Probe[][] = [];
    let cursor: string | undefined;
    do {
      const result = await page(cursor);
      pages.push(result.rows);
      cursor = result.nextCursor ?? undefined;
    } while (cursor && pages.length < 20);
    return pages;
  }
  const ns = (pages: Probe[][]) => pages.map((page) => page.map((row) => row.n));

  t.test('one key, ascending', async (t) => {
    statements.length = 0;
    const pages = await walk((cursor) =>
      keysetPage(probes(), {
        codec: cursors.auditSeq,
        keys: [{ column: 'n', cursorValue: (row) => row.n }],
        limit: 4,
        cursor,
      }),
    );
    t.same(ns(pages), [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9, 10],
    ]);
    t.match(statements[1], /where "n" > \$1 order by "n" asc limit \$2$/);
  });

  t.test('one key, descending', async (t) => {
    statements.length = 0;
    const pages = await walk((cursor) =>
      keysetPage(probes(), {
        codec: cursors.auditSeq,
        keys: [{ column: 'n', direction: 'desc', cursorValue: (row) => row.n }],
        limit: 5,
        cursor,
      }),
    );
    t.same(ns(pages), [[10, 9, 8, 7, 6], [5, 4, 3, 2, 1], [0]]);
    t.match(statements[1], /where "n" < \$1 order by "n" desc limit \$2$/);
  });

  /** The group letter as a cursor integer (the import-error codec's first element). */
  const groupKey = {
    column: 'grp',
    cursorValue: (row: { grp: string }) => 'abc'.indexOf(row.grp),
    toSql: (v: number) => sql`${'abc'[v]}`,
  } as const;

  t.test('two keys, one direction: a row-value comparison', async (t) => {
    statements.length = 0;
    const pages = await walk((cursor) =>
      keysetPage(probes(), {
        codec: cursors.importError,
        keys: [groupKey, { column: 'n', cursorValue: (row) => row.n }],
        limit: 3,
        cursor,
      }),
    );
    const expected = [...rows].sort((a, b) => compare(a.grp, b.grp) || compare(a.n, b.n));
    t.same(pages.flat(), expected);
    t.same(
      pages.map((page) => page.length),
      [3, 3, 3, 2],
    );
    t.match(statements[1], /where \("grp", "n"\) > \(\$1, \$2\) order by "grp" asc, "n" asc/);
  });

  t.test('mixed directions: the expanded comparison', async (t) => {
    statements.length = 0;
    const pages = await walk((cursor) =>
      keysetPage(probes(), {
        codec: cursors.importError,
        keys: [groupKey, { column: 'n', direction: 'desc', cursorValue: (row) => row.n }],
        limit: 2,
        cursor,
      }),
    );
    const expected = [...rows].sort((a, b) => compare(a.grp, b.grp) || compare(b.n, a.n));
    t.same(pages.flat(), expected);
    t.equal(pages.length, 6);
    t.match(statements[1], /where \(\("grp" > \$1\) or \("grp" = \$2 and "n" < \$3\)\)/);
  });

  t.test('the due-date order: (due_at asc, id asc), ties on due_at broken by id', async (t) => {
    statements.length = 0;
    // Pages of 3 end inside the runs of equal due dates (4, 4 and 3 rows long).
    const pages = await walk((cursor) => pageByDueDate(probes(), { limit: 3, cursor }));
    const expected = [...rows].sort(
      (a, b) => compare(a.due_at.getTime(), b.due_at.getTime()) || compare(a.id, b.id),
    );
    t.same(pages.flat(), expected, 'every row once, soonest first');
    t.same(
      pages.map((page) => page.length),
      [3, 3, 3, 2],
    );
    t.match(
      statements[1],
      /where \("due_at", "id"\) > \(\$1, \$2\) order by "due_at" asc, "id" asc/,
    );
    // The cursor is the last row's key at the column's millisecond precision: after the last
    // row due at .000, the next page starts with the first one due 1 ms later.
    const first = await pageByDueDate(probes(), { limit: 4 });
    const last = first.rows[3]!;
    t.same(cursors.dueDate.decode(first.nextCursor!), [last.due_at.toISOString(), last.id]);
    const second = await pageByDueDate(probes(), { limit: 4, cursor: first.nextCursor! });
    t.same(second.rows, expected.slice(4, 8));
    const filtered = await pageByDueDate(probes().where('grp', '=', 'b'), { limit: 10 });
    t.same(
      filtered.rows.map((row) => row.grp),
      ['b', 'b', 'b', 'b'],
      "the caller's filter stays",
    );
    t.equal(filtered.nextCursor, null);
  });

  t.test('a page of exactly `limit` rows at the end has no next cursor', async (t) => {
    const keys = [{ column: 'n', cursorValue: (row: Probe) => row.n }] as const;
    const all = await keysetPage(probes(), { codec: cursors.auditSeq, keys, limit: 11 });
    t.equal(all.rows.length, 11);
    t.equal(all.nextCursor, null, 'limit = rows: the last page');
    const short = await keysetPage(probes(), { codec: cursors.auditSeq, keys, limit: 10 });
    t.equal(short.rows.length, 10);
    t.same(cursors.auditSeq.decode(short.nextCursor!), [9]);
    const rest = await keysetPage(probes(), {
      codec: cursors.auditSeq,
      keys,
      limit: 10,
      cursor: short.nextCursor!,
    });
    t.same(ns([rest.rows]), [[10]]);
    t.equal(rest.nextCursor, null);
    const none = await keysetPage(probes().where('n', '>', 99), {
      codec: cursors.auditSeq,
      keys,
      limit: 10,
    });
    t.same(none, { rows: [], nextCursor: null }, 'an empty list');
  });

  t.test('a feed always answers a cursor: the last row, or where the reader was', async (t) => {
    const options = {
      codec: cursors.eventSeq,
      keys: [{ column: 'n', cursorValue: (row: Probe) => row.n }] as const,
      start: [0] as [number],
    };
    const first = await keysetFeed(probes().where('n', '>', 0), { ...options, limit: 6 });
    t.same(ns([first.rows]), [[1, 2, 3, 4, 5, 6]]);
    t.same(cursors.eventSeq.decode(first.nextCursor), [6]);
    const rest = await keysetFeed(probes(), { ...options, limit: 6, cursor: first.nextCursor });
    t.same(ns([rest.rows]), [[7, 8, 9, 10]]);
    t.same(cursors.eventSeq.decode(rest.nextCursor), [10], 'a short read: its last row');
    const idle = await keysetFeed(probes(), { ...options, limit: 6, cursor: rest.nextCursor });
    t.same(idle, { rows: [], nextCursor: rest.nextCursor }, 'nothing new: the same cursor');
    const empty = await keysetFeed(probes().where('n', '>', 99), { ...options, limit: 6 });
    t.same(empty, { rows: [], nextCursor: cursors.eventSeq.encode([0]) }, 'the start');
  });

  t.test('a hand-written fetch gets the decoded cursor and one row more', async (t) => {
    const calls: unknown[] = [];
    const options = {
      codec: cursors.contactId,
      cursorOf: (row: Probe): [string] => [row.id],
      limit: 2,
    };
    const fetch = async (after: [string] | undefined, limit: number) => {
      calls.push([after, limit]);
      let q = probes().orderBy('id').limit(limit);
      if (after) q = q.where('id', '>', after[0]);
      return q.execute();
    };
    const pages = await walk((cursor) => keysetPageWith(fetch, { ...options, cursor }));
    t.same(
      pages.flat().map((row) => row.id),
      rows.map((row) => row.id).sort(),
    );
    t.same(calls[0], [undefined, 3]);
    t.same(calls[1], [[pages[0]![1]!.id], 3]);
  });

  t.test('a forged cursor is refused before any SQL runs', async (t) => {
    statements.length = 0;
    const forged = [
      b64('[1.5]'),
      b64('["x"]'),
      b64('[1,2]'),
      b64(JSON.stringify([2 ** 80])),
      '!!!',
    ];
    // The query names a table that does not exist: running it would fail differently.
    const missing = db.selectFrom('no_such_table' as 'keyset_probe').selectAll();
    const keys = [{ column: 'n', cursorValue: (row: Probe) => row.n }] as const;
    for (const cursor of forged) {
      await t.rejects(
        keysetPage(missing, { codec: cursors.auditSeq, keys, limit: 2, cursor }),
        { status: 400, code: 'invalid_cursor' },
        `page: ${cursor}`,
      );
      await t.rejects(
        keysetFeed(missing, { codec: cursors.eventSeq, keys, limit: 2, cursor, start: [0] }),
        { status: 400, code: 'invalid_cursor' },
        `feed: ${cursor}`,
      );
      await t.rejects(
        pageByDueDate(missing, { limit: 2, cursor }),
        { status: 400, code: 'invalid_cursor' },
        `due date: ${cursor}`,
      );
    }
    t.same(statements, [], 'no statement ran');
  });
});
