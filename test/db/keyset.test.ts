import t from 'tap';
import { cursorCodec, cursorField, cursors, InvalidCursorError } from '../../src/db/keyset.js';

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
