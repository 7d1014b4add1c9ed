import { Readable } from 'node:stream';
import t, { type Test as TapTest } from 'tap';
import {
  ATTRIBUTES_MAX_BYTES,
  batches,
  type ImportFormat,
  ImportFormatError,
  type ImportParseResult,
  type ParsedImportRow,
  type ParseImportOptions,
  parseImport,
  type RejectedImportRow,
} from '../../src/modules/contact-imports/parser/index.js';

const CONSENT = {
  purpose: 'newsletter',
  noticeVersion: 3,
  method: 'form',
  grantedAt: '2025-03-01T10:15:00+01:00',
  ip: '192.0.2.10',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
  sourceUrl: 'https://shop.example.com/signup',
};

async function* chunksOf(...parts: (string | Buffer)[]): AsyncGenerator<string | Buffer> {
  for (const part of parts) yield part;
}

/** Splits text into chunks of `size` bytes, cutting through lines and multi-byte characters. */
async function* slices(text: string, size: number): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text, 'utf8');
  for (let offset = 0; offset < bytes.length; offset += size) {
    yield bytes.subarray(offset, offset + size);
  }
}

async function collect(
  source: AsyncIterable<string | Buffer> | NodeJS.ReadableStream,
  format: ImportFormat,
  options?: ParseImportOptions,
): Promise<ImportParseResult[]> {
  const results: ImportParseResult[] = [];
  for await (const result of parseImport(source, format, options)) results.push(result);
  return results;
}

/** Results so far, and the fatal error the parser ended with (if any). */
async function collectUntilFatal(
  source: AsyncIterable<string | Buffer>,
  format: ImportFormat,
  options?: ParseImportOptions,
): Promise<{ results: ImportParseResult[]; fatal: unknown }> {
  const results: ImportParseResult[] = [];
  try {
    for await (const result of parseImport(source, format, options)) results.push(result);
  } catch (error) {
    return { results, fatal: error };
  }
  return { results, fatal: undefined };
}

const ndjson = (...rows: unknown[]) => rows.map((row) => JSON.stringify(row)).join('\n');

function accepted(result: ImportParseResult | undefined): ParsedImportRow {
  if (!result || !('row' in result))
    throw new Error(`expected a row, got ${JSON.stringify(result)}`);
  return result;
}

function rejected(result: ImportParseResult | undefined): RejectedImportRow {
  if (!result || !('errors' in result)) {
    throw new Error(`expected errors, got ${JSON.stringify(result)}`);
  }
  return result;
}

const codes = (result: ImportParseResult | undefined) =>
  rejected(result).errors.map(({ field, code }) => `${field}:${code}`);

// --------------------------------------------------------------------------------------------
// NDJSON

t.test('NDJSON happy path: normalised rows with their line numbers', async (t) => {
  const text = [
    JSON.stringify({
      email: '  Jana.Novak@Example.SI ',
      firstName: ' Jana ',
      lastName: 'Novak',
      language: 'sl-si',
      attributes: { plan: 'gold', tags: ['a', 'b'] },
      consent: CONSENT,
    }),
    '',
    '   ',
    JSON.stringify({ email: 'tom@example.com', consent: { ...CONSENT, method: 'double_opt_in' } }),
    JSON.stringify({ email: 'eva@example.com', firstName: null, consent: CONSENT }),
  ].join('\r\n');
  const results = await collect(chunksOf(`\ufeff${text}\n\n`), 'ndjson');
  t.equal(results.length, 3);
  t.same(
    results.map((result) => result.rowNumber),
    [1, 4, 5],
    'blank lines skipped, counted',
  );
  t.same(accepted(results[0]).row, {
    email: 'jana.novak@example.si',
    firstName: 'Jana',
    lastName: 'Novak',
    language: 'sl-SI',
    attributes: { plan: 'gold', tags: ['a', 'b'] },
    consent: { ...CONSENT, grantedAt: '2025-03-01T09:15:00.000Z' },
    pendingDoubleOptIn: false,
  });
  t.same(accepted(results[1]).row, {
    email: 'tom@example.com',
    consent: { ...CONSENT, method: 'double_opt_in', grantedAt: '2025-03-01T09:15:00.000Z' },
    pendingDoubleOptIn: false,
  });
  t.notOk('firstName' in accepted(results[2]).row, 'null means absent');
});

t.test('NDJSON gives the same result whatever the chunking', async (t) => {
  const text = `${ndjson(
    { email: 'žiga@example.com', consent: CONSENT },
    { email: 'ana@example.com', firstName: 'Ана Žužek', consent: CONSENT },
    { email: 'bad', consent: CONSENT },
  )}\n`;
  const whole = await collect(chunksOf(text), 'ndjson');
  for (const size of [1, 2, 3, 7, 64]) {
    t.same(await collect(slices(text, size), 'ndjson'), whole, `chunks of ${size} bytes`);
  }
  t.equal(accepted(whole[1]).row.firstName, 'Ана Žužek', 'multi-byte characters intact');
});

t.test('NDJSON accepts a Node stream', async (t) => {
  const stream = Readable.from([Buffer.from(ndjson({ email: 'a@example.com', consent: CONSENT }))]);
  const results = await collect(stream, 'ndjson');
  t.equal(accepted(results[0]).row.email, 'a@example.com');
});

t.test('a bad email is a row error that does not contain the address', async (t) => {
  const address = 'jana.novak(at)example.si';
  const results = await collect(
    chunksOf(
      ndjson(
        { email: address, firstName: 'Jana', consent: CONSENT },
        { email: 'ok@example.com', consent: CONSENT },
      ),
    ),
    'ndjson',
  );
  const error = rejected(results[0]);
  t.equal(error.rowNumber, 1);
  t.same(error.errors, [
    { field: 'email', code: 'invalid_email', message: 'is not a valid email address' },
  ]);
  const serialised = JSON.stringify(error);
  t.notOk(serialised.includes('jana'), 'no part of the address');
  t.notOk(serialised.includes('Jana'), 'no other value of the row');
  t.equal(accepted(results[1]).rowNumber, 2, 'the next row is unaffected');
});

t.test('no error echoes any value of the row', async (t) => {
  const secret = 'SECRETVALUE';
  const rows = [
    { email: `${secret}@`, consent: CONSENT },
    { email: 'a@example.com', firstName: `${secret}${'x'.repeat(300)}`, consent: CONSENT },
    { email: 'a@example.com', language: `${secret}-!!`, consent: CONSENT },
    { email: 'a@example.com', consent: { ...CONSENT, method: secret } },
    { email: 'a@example.com', consent: { ...CONSENT, purpose: secret } },
    { email: 'a@example.com', consent: { ...CONSENT, ip: secret } },
    { email: 'a@example.com', consent: { ...CONSENT, grantedAt: secret } },
    { email: 'a@example.com', consent: { ...CONSENT, sourceUrl: `javascript:${secret}` } },
    { email: 'a@example.com', consent: { ...CONSENT, noticeVersion: secret } },
    { email: 'a@example.com', [`${secret}@example.com`]: 1, consent: CONSENT },
    { email: 'a@example.com', attributes: secret, consent: CONSENT },
  ];
  const results = await collect(
    chunksOf(`${ndjson(...rows)}\n{"email": "${secret}`, `\n[${JSON.stringify(secret)}]\n`),
    'ndjson',
  );
  t.equal(results.length, rows.length + 2);
  for (const result of results) {
    t.notOk(JSON.stringify(rejected(result)).includes(secret), `row ${result.rowNumber}`);
  }
  t.same(codes(results[9]), ['null:unknown_field'], 'an address-like key is not named');
  t.same(codes(results[11]), ['null:invalid_json']);
  t.same(codes(results[12]), ['null:not_an_object']);
});

t.test(
  'attributes nested thousands of levels deep, or with Infinity, are row errors',
  async (t) => {
    // 30,000 levels fit in a 64 KiB row; serialising them to measure the size overflowed the stack.
    const deep = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
    const line = `{"email":"a@example.com","attributes":{"x":${deep}},"consent":${JSON.stringify(CONSENT)}}`;
    // 1e400 parses as Infinity, which would be stored as null: the value would change silently.
    const huge = `{"email":"b@example.com","attributes":{"x":1e400},"consent":${JSON.stringify(CONSENT)}}`;
    const results = await collect(chunksOf(`${line}\n${huge}`), 'ndjson');
    t.same(codes(results[0]), ['attributes:attributes_too_deep']);
    t.same(codes(results[1]), ['attributes:not_finite']);
  },
);

t.test('field rules each give a field and a stable code', async (t) => {
  const inFuture = new Date(Date.now() + 3_600_000).toISOString();
  const cases: [unknown, string[]][] = [
    [{ consent: CONSENT }, ['email:required']],
    [{ email: 42, consent: CONSENT }, ['email:invalid_type']],
    [
      { email: 'a@example.com', firstName: 'x'.repeat(201), consent: CONSENT },
      ['firstName:too_long'],
    ],
    [
      { email: 'a@example.com', lastName: 'a\u0000b', consent: CONSENT },
      ['lastName:invalid_characters'],
    ],
    [
      { email: 'a@example.com', lastName: 'a\ud800b', consent: CONSENT },
      ['lastName:invalid_encoding'],
    ],
    [
      { email: 'a@example.com', language: 'english', consent: CONSENT },
      ['language:invalid_language'],
    ],
    [{ email: 'a@example.com', nickname: 'x', consent: CONSENT }, ['nickname:unknown_field']],
    [{ email: 'a@example.com', attributes: [1, 2], consent: CONSENT }, ['attributes:invalid_type']],
    [
      { email: 'a@example.com', attributes: { a: 'x\u0000' }, consent: CONSENT },
      ['attributes:invalid_encoding'],
    ],
    [
      {
        email: 'a@example.com',
        attributes: { a: { b: { c: { d: { e: { f: { g: { h: {} } } } } } } } },
        consent: CONSENT,
      },
      ['attributes:attributes_too_deep'],
    ],
    [{ email: 'a@example.com', consent: 'yes' }, ['consent:invalid_type']],
    [
      { email: 'a@example.com', consent: { ...CONSENT, purpose: 'News Letter' } },
      ['consent.purpose:invalid_format'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, noticeVersion: 0 } },
      ['consent.noticeVersion:too_small'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, noticeVersion: 1.5 } },
      ['consent.noticeVersion:invalid_type'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, method: 'telepathy' } },
      ['consent.method:invalid_value'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, grantedAt: '2025-03-01' } },
      ['consent.grantedAt:invalid_format'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, grantedAt: '2025-03-01T10:15:00' } },
      ['consent.grantedAt:invalid_format'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, grantedAt: inFuture } },
      ['consent.grantedAt:in_future'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, ip: '999.1.1.1' } },
      ['consent.ip:invalid_ip'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, userAgent: 'u'.repeat(513) } },
      ['consent.userAgent:too_long'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, sourceUrl: 'ftp://example.com/x' } },
      ['consent.sourceUrl:invalid_format'],
    ],
    [
      // A URL parser takes these; Postgres refuses them (a 500 before they were checked).
      {
        email: 'a@example.com',
        consent: { ...CONSENT, sourceUrl: 'https://example.com/a\u0000b' },
      },
      ['consent.sourceUrl:invalid_characters'],
    ],
    [
      {
        email: 'a@example.com',
        consent: { ...CONSENT, sourceUrl: 'https://example.com/a\ud800b' },
      },
      ['consent.sourceUrl:invalid_encoding'],
    ],
    [
      { email: 'a@example.com', consent: { ...CONSENT, extra: 1 } },
      ['consent.extra:unknown_field'],
    ],
    [
      // An own "__proto__" key must not become the prototype and lend the row an email.
      JSON.parse(`{"__proto__":{"email":"a@example.com"},"consent":${JSON.stringify(CONSENT)}}`),
      ['email:required', '__proto__:unknown_field'],
    ],
    [
      { email: 'a@example.com', consent: { purpose: 'newsletter' } },
      ['consent.noticeVersion:required', 'consent.method:required', 'consent.grantedAt:required'],
    ],
  ];
  const results = await collect(chunksOf(ndjson(...cases.map(([row]) => row))), 'ndjson');
  for (const [index, [row, expected]] of cases.entries()) {
    t.same(codes(results[index]), expected, JSON.stringify(row).slice(0, 80));
  }
  // IPv6 and the optional evidence fields being absent are fine.
  const ok = await collect(
    chunksOf(
      ndjson(
        { email: 'a@example.com', consent: { ...CONSENT, ip: '2001:db8::1' } },
        {
          email: 'b@example.com',
          consent: {
            purpose: 'news_2',
            noticeVersion: 1,
            method: 'api',
            grantedAt: '2024-12-31T23:00:00Z',
          },
        },
      ),
    ),
    'ndjson',
  );
  t.equal(accepted(ok[0]).row.consent?.ip, '2001:db8::1');
  t.same(accepted(ok[1]).row.consent, {
    purpose: 'news_2',
    noticeVersion: 1,
    method: 'api',
    grantedAt: '2024-12-31T23:00:00.000Z',
  });
});

t.test('missing consent: rejected by default, pending double opt-in when chosen', async (t) => {
  const text = ndjson(
    { email: 'a@example.com' },
    { email: 'b@example.com', consent: null },
    { email: 'c@example.com', consent: CONSENT },
    { email: 'not-an-address' },
  );
  const strict = await collect(chunksOf(text), 'ndjson');
  t.same(codes(strict[0]), ['consent:consent_missing']);
  t.same(codes(strict[1]), ['consent:consent_missing'], 'null consent is missing consent');
  t.equal(accepted(strict[2]).row.pendingDoubleOptIn, false);
  t.same(codes(strict[3]), ['email:invalid_email', 'consent:consent_missing'], 'all problems');

  const explicitReject = await collect(chunksOf(text), 'ndjson', { missingConsent: 'reject' });
  t.same(explicitReject, strict);

  const pending = await collect(chunksOf(text), 'ndjson', {
    missingConsent: 'pending_double_opt_in',
  });
  t.same(accepted(pending[0]).row, { email: 'a@example.com', pendingDoubleOptIn: true });
  t.same(accepted(pending[1]).row, { email: 'b@example.com', pendingDoubleOptIn: true });
  t.same(accepted(pending[2]).row.consent?.purpose, 'newsletter');
  t.equal(accepted(pending[2]).row.pendingDoubleOptIn, false, 'evidence present: not pending');
  t.same(codes(pending[3]), ['email:invalid_email']);
  // Incomplete evidence is not "missing": it is wrong, in either mode.
  const partial = await collect(
    chunksOf(
      ndjson({
        email: 'a@example.com',
        consent: { purpose: 'newsletter', noticeVersion: 1, method: 'form' },
      }),
    ),
    'ndjson',
    { missingConsent: 'pending_double_opt_in' },
  );
  t.same(codes(partial[0]), ['consent.grantedAt:required']);
});

t.test('attributes over 8 KiB are refused; exactly 8 KiB is fine', async (t) => {
  const attributesOf = (bytes: number) => {
    const skeleton = JSON.stringify({ note: '' }).length;
    return { note: 'n'.repeat(bytes - skeleton) };
  };
  const fits = attributesOf(ATTRIBUTES_MAX_BYTES);
  t.equal(JSON.stringify(fits).length, ATTRIBUTES_MAX_BYTES);
  const tooBig = attributesOf(ATTRIBUTES_MAX_BYTES + 1);
  // Multi-byte characters count in bytes: 4,000 × "ž" is 8,000 bytes, over the limit with JSON.
  const wide = { note: 'ž'.repeat(4100) };
  const results = await collect(
    chunksOf(
      ndjson(
        { email: 'a@example.com', attributes: fits, consent: CONSENT },
        { email: 'b@example.com', attributes: tooBig, consent: CONSENT },
        { email: 'c@example.com', attributes: wide, consent: CONSENT },
      ),
    ),
    'ndjson',
  );
  t.same(accepted(results[0]).row.attributes, fits);
  t.same(codes(results[1]), ['attributes:attributes_too_large']);
  t.same(codes(results[2]), ['attributes:attributes_too_large']);
});

t.test('a row over the size limit is an error and parsing resumes at the next line', async (t) => {
  const big = JSON.stringify({
    email: 'big@example.com',
    firstName: 'x'.repeat(5000),
    consent: CONSENT,
  });
  const text = [
    ndjson({ email: 'a@example.com', consent: CONSENT }),
    big,
    ndjson({ email: 'b@example.com', consent: CONSENT }),
    big,
  ].join('\n');
  const results = await collect(slices(text, 100), 'ndjson', { maxRowBytes: 1024 });
  t.same(
    results.map((result) => ('row' in result ? result.row.email : codes(result)[0])),
    ['a@example.com', 'null:row_too_large', 'b@example.com', 'null:row_too_large'],
  );
  t.same(
    results.map((result) => result.rowNumber),
    [1, 2, 3, 4],
  );
  // The default limit is 64 KiB: a line of 100 KiB without any newline is one error, not a crash.
  const endless = await collect(chunksOf('{"email":"', 'a'.repeat(100 * 1024)), 'ndjson');
  t.same(endless.map(codes), [['null:row_too_large']]);
});

t.test('invalid UTF-8 after the first 4 KiB is a row error', async (t) => {
  const filler = ndjson(
    ...Array.from({ length: 40 }, (_, i) => ({ email: `u${i}@example.com`, consent: CONSENT })),
  );
  const broken = Buffer.concat([
    Buffer.from(`${filler}\n{"email":"x@example.com","firstName":"`),
    Buffer.from([0xc3, 0x28]),
    Buffer.from(
      `","consent":${JSON.stringify(CONSENT)}}\n${ndjson({ email: 'last@example.com', consent: CONSENT })}`,
    ),
  ]);
  t.ok(filler.length > 4096);
  const results = await collect(chunksOf(broken), 'ndjson');
  t.equal(results.length, 42);
  t.same(codes(results[40]), ['null:invalid_encoding']);
  t.equal(results[40]?.rowNumber, 41);
  t.equal(accepted(results[41]).row.email, 'last@example.com');
});

t.test('binary input is refused as not_text before any row', async (t) => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const zip = Buffer.concat([Buffer.from('PK\u0003\u0004'), Buffer.alloc(40, 0)]);
  const latin1 = Buffer.from('email,first_name\nana@example.com,Fran\xe7ois\n', 'latin1');
  const utf16 = Buffer.from('\ufeffemail\nana@example.com\n', 'utf16le');
  const nulAfterText = Buffer.concat([Buffer.from('{"email":"a@example.com"}\n'), Buffer.alloc(8)]);
  for (const format of ['ndjson', 'csv'] as const) {
    for (const [name, bytes] of Object.entries({ png, zip, latin1, utf16, nulAfterText })) {
      const { results, fatal } = await collectUntilFatal(chunksOf(bytes), format);
      t.same(results, [], `${format} ${name}: nothing parsed`);
      t.match(
        fatal,
        { constructor: ImportFormatError, code: 'not_text', status: 422 },
        `${format} ${name}`,
      );
    }
  }
  // Split across tiny chunks, the sniffed window still sees the bytes.
  const { fatal } = await collectUntilFatal(slices(png.toString('latin1'), 1), 'ndjson');
  t.match(fatal, { code: 'not_text' });
});

t.test('parsing is lazy: the first row arrives before the input ends', async (t) => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let finished = false;
  async function* slowSource() {
    yield `${ndjson({ email: 'first@example.com', consent: CONSENT })}\n`;
    await gate;
    yield ndjson({ email: 'second@example.com', consent: CONSENT });
    finished = true;
  }
  const iterator = parseImport(slowSource(), 'ndjson');
  const first = await iterator.next();
  t.equal(accepted(first.value as ImportParseResult).row.email, 'first@example.com');
  t.notOk(finished, 'source still open');
  release();
  const second = await iterator.next();
  t.equal(accepted(second.value as ImportParseResult).row.email, 'second@example.com');
  t.ok((await iterator.next()).done);
});

// --------------------------------------------------------------------------------------------
// CSV

const CSV_HEADER =
  'email,first_name,last_name,language,attributes,consent_purpose,consent_notice_version,consent_method,consent_granted_at,consent_ip,consent_user_agent,consent_source_url';
const csvRow = (email: string, firstName = 'Ana') =>
  `${email},${firstName},Novak,sl,,newsletter,3,form,2025-03-01T10:15:00+01:00,192.0.2.10,Mozilla/5.0,https://shop.example.com/signup`;

t.test('CSV happy path: header mapped, quoting, blank lines, line numbers', async (t) => {
  const text = [
    `\ufeff${CSV_HEADER}`,
    csvRow('Ana@Example.com'),
    '',
    `"jan@example.com","Jan ""Johnny""","Kos, ml.",en-gb,"{""plan"":""gold""}",newsletter,3,import,2025-03-01T09:15:00Z,,,`,
    `"eva@example.com","Eva`,
    `Marija",Zupan,,,,,,,,,`,
    ',,,,,,,,,,,',
    csvRow('tina@example.com'),
  ].join('\r\n');
  const results = await collect(slices(`${text}\r\n`, 17), 'csv', {
    missingConsent: 'pending_double_opt_in',
  });
  t.same(
    results.map((result) => result.rowNumber),
    [2, 4, 5, 8],
    'line where each row starts',
  );
  t.same(accepted(results[0]).row, {
    email: 'ana@example.com',
    firstName: 'Ana',
    lastName: 'Novak',
    language: 'sl',
    consent: { ...CONSENT, userAgent: 'Mozilla/5.0', grantedAt: '2025-03-01T09:15:00.000Z' },
    pendingDoubleOptIn: false,
  });
  t.same(accepted(results[1]).row, {
    email: 'jan@example.com',
    firstName: 'Jan "Johnny"',
    lastName: 'Kos, ml.',
    language: 'en-GB',
    attributes: { plan: 'gold' },
    consent: {
      purpose: 'newsletter',
      noticeVersion: 3,
      method: 'import',
      grantedAt: '2025-03-01T09:15:00.000Z',
    },
    pendingDoubleOptIn: false,
  });
  t.same(codes(results[2]), ['first_name:invalid_characters'], 'a line break inside a name');
  t.equal(accepted(results[3]).row.email, 'tina@example.com');
});

t.test('CSV in one large chunk, rows cut at piece boundaries, parses the same', async (t) => {
  const rows = Array.from({ length: 3000 }, (_, i) => csvRow(`u${i}@example.com`, `Ana ${i}`));
  const text = `${CSV_HEADER}\n${rows.join('\n')}\n`;
  t.ok(text.length > 3 * 64 * 1024);
  const results = await collect(chunksOf(text), 'csv');
  t.equal(results.length, 3000);
  t.ok(results.every((result, i) => 'row' in result && result.row.firstName === `Ana ${i}`));
  t.same(
    results.map((result) => result.rowNumber),
    rows.map((_, i) => i + 2),
  );
});

t.test('CSV errors name the column the user sees', async (t) => {
  const text = [
    'EMAIL, Consent_Purpose ,consent_notice_version,consent_method,consent_granted_at,attributes',
    'a@example.com,newsletter,three,form,2025-03-01T10:15:00Z,',
    'b@example.com,newsletter,1,form,yesterday,{oops',
    'c@example.com,,,,,',
    'd@example.com,newsletter,1,form,2025-03-01T10:15:00Z,"[1]"',
  ].join('\n');
  const results = await collect(chunksOf(text), 'csv');
  t.same(codes(results[0]), ['consent_notice_version:invalid_type']);
  t.same(codes(results[1]), ['attributes:invalid_json']);
  t.same(codes(results[2]), ['consent:consent_missing']);
  t.same(codes(results[3]), ['attributes:invalid_type']);
});

t.test('CSV with a semicolon delimiter', async (t) => {
  const text =
    'email;consent_purpose;consent_notice_version;consent_method;consent_granted_at\nana@example.com;newsletter;2;form;2025-03-01T10:15:00Z\n';
  const results = await collect(chunksOf(text), 'csv', { csvDelimiter: ';' });
  t.equal(accepted(results[0]).row.consent?.noticeVersion, 2);
});

t.test('CSV with broken quoting', async (t) => {
  t.test('a stray quote inside a field is a row error; parsing goes on', async (t) => {
    const text = [
      CSV_HEADER,
      csvRow('a@example.com'),
      csvRow('b@example.com', 'Jo"hn'),
      csvRow('c@example.com'),
    ].join('\n');
    const results = await collect(chunksOf(text), 'csv');
    t.equal(accepted(results[0]).rowNumber, 2);
    t.same(rejected(results[1]), {
      rowNumber: 3,
      errors: [
        {
          field: null,
          code: 'csv_malformed',
          message: 'the row has a quote inside an unquoted field',
        },
      ],
    });
    t.equal(accepted(results[2]).row.email, 'c@example.com');
    t.equal(results[2]?.rowNumber, 4);
    t.equal(results.length, 3);
  });

  t.test('a row with the wrong number of fields is a row error', async (t) => {
    const text = [CSV_HEADER, `${csvRow('a@example.com')},extra`, csvRow('b@example.com')].join(
      '\n',
    );
    const results = await collect(chunksOf(text), 'csv');
    t.same(codes(results[0]), ['null:csv_malformed']);
    t.equal(accepted(results[1]).row.email, 'b@example.com');
  });

  t.test('an unclosed quote is fatal, with the line where the row starts', async (t) => {
    const text = [
      CSV_HEADER,
      csvRow('a@example.com'),
      csvRow('b@example.com', '"Ana'),
      csvRow('c@example.com'),
    ].join('\n');
    const { results, fatal } = await collectUntilFatal(chunksOf(`${text}\n`), 'csv');
    t.same(
      results.map((result) => result.rowNumber),
      [2],
      'the rows before it were produced',
    );
    t.match(fatal, { constructor: ImportFormatError, code: 'csv_malformed', line: 3 });
    t.notMatch((fatal as Error).message, /Ana|example/, 'no data in the message');
  });

  t.test('text after a closing quote is fatal, with its line', async (t) => {
    const text = [
      CSV_HEADER,
      csvRow('a@example.com'),
      csvRow('b@example.com', '"Ana"x'),
      csvRow('c@example.com'),
    ].join('\n');
    const { results, fatal } = await collectUntilFatal(chunksOf(text), 'csv');
    t.same(
      results.map((result) => result.rowNumber),
      [2],
    );
    t.match(fatal, { code: 'csv_malformed', line: 3 });
    t.notMatch((fatal as Error).message, /Ana|example/);
  });
});

t.test('CSV header problems are fatal and name the column once', async (t) => {
  const unknown = await collectUntilFatal(
    chunksOf(
      `email,phone,consent_purpose\na@example.com,123,newsletter\nb@example.com,456,newsletter\n`,
    ),
    'csv',
  );
  t.same(unknown.results, []);
  t.match(unknown.fatal, { constructor: ImportFormatError, code: 'unknown_column', line: 1 });
  t.equal(((unknown.fatal as Error).message.match(/"phone"/g) ?? []).length, 1, 'named once');

  const headerless = await collectUntilFatal(
    chunksOf(`${csvRow('ana.novak@example.com')}\n`),
    'csv',
  );
  t.match(headerless.fatal, { code: 'missing_header' });
  t.notMatch((headerless.fatal as Error).message, /ana|novak/i, 'a data row is not echoed');

  const odd = await collectUntilFatal(chunksOf('email,"Ana Novak, ☎ 041 123 456"\n'), 'csv');
  t.match(odd.fatal, { code: 'unknown_column' });
  t.match((odd.fatal as Error).message, /column number 2/);
  t.notMatch((odd.fatal as Error).message, /Novak|041/);

  for (const name of ['constructor', '__proto__', 'toString']) {
    const inherited = await collectUntilFatal(chunksOf(`email,${name}\na@example.com,x\n`), 'csv');
    t.match(inherited.fatal, { code: 'unknown_column' }, `${name} is not a column`);
  }

  const duplicate = await collectUntilFatal(chunksOf('email,first_name,First_Name\n'), 'csv');
  t.match(duplicate.fatal, { code: 'duplicate_column' });

  const noEmail = await collectUntilFatal(chunksOf('first_name,last_name\nAna,Novak\n'), 'csv');
  t.match(noEmail.fatal, { code: 'missing_column' });

  const empty = await collectUntilFatal(chunksOf(''), 'csv');
  t.match(empty.fatal, { code: 'missing_header' });
  const blank = await collectUntilFatal(chunksOf('\n\n'), 'csv');
  t.match(blank.fatal, { code: 'missing_header' });
});

t.test('a CSV record over the size limit is fatal with its line', async (t) => {
  const text = [
    CSV_HEADER,
    csvRow('a@example.com'),
    csvRow('b@example.com', 'x'.repeat(5000)),
    csvRow('c@example.com'),
  ].join('\n');
  const { results, fatal } = await collectUntilFatal(slices(text, 256), 'csv', {
    maxRowBytes: 1024,
  });
  t.same(
    results.map((result) => result.rowNumber),
    [2],
  );
  t.match(fatal, { code: 'row_too_large', line: 3 });
});

t.test('CSV: invalid UTF-8 after the sniffed window is a row error', async (t) => {
  const filler = Array.from({ length: 40 }, (_, i) => csvRow(`u${i}@example.com`)).join('\n');
  const bytes = Buffer.concat([
    Buffer.from(`${CSV_HEADER}\n${filler}\n`),
    Buffer.from(csvRow('x@example.com', 'Fran\xe7ois'), 'latin1'),
    Buffer.from(`\n${csvRow('last@example.com')}\n`),
  ]);
  const results = await collect(chunksOf(bytes), 'csv');
  t.equal(results.length, 42);
  t.same(codes(results[40]), ['first_name:invalid_encoding']);
  t.equal(accepted(results[41]).row.email, 'last@example.com');
});

// --------------------------------------------------------------------------------------------
// Batches

t.test('batches group accepted rows and carry the errors between them', async (t) => {
  const rows = Array.from({ length: 10 }, (_, i) =>
    i % 4 === 3
      ? { email: 'bad', consent: CONSENT }
      : { email: `u${i}@example.com`, consent: CONSENT },
  );
  const output = [];
  for await (const batch of batches(parseImport(chunksOf(ndjson(...rows)), 'ndjson'), 3)) {
    output.push({
      rows: batch.rows.map((row) => row.rowNumber),
      rejected: batch.rejected.map((row) => row.rowNumber),
      first: batch.firstRowNumber,
      last: batch.lastRowNumber,
    });
  }
  t.same(output, [
    { rows: [1, 2, 3], rejected: [], first: 1, last: 3 },
    { rows: [5, 6, 7], rejected: [4], first: 4, last: 7 },
    { rows: [9, 10], rejected: [8], first: 8, last: 10 },
  ]);

  const allBad = [];
  for await (const batch of batches(
    parseImport(chunksOf(ndjson(...Array(7).fill({ email: 'x' }))), 'ndjson'),
    3,
  )) {
    allBad.push([batch.rows.length, batch.rejected.length]);
  }
  t.same(
    allBad,
    [
      [0, 3],
      [0, 3],
      [0, 1],
    ],
    'errors alone are bounded too',
  );
  await t.rejects(batches(parseImport(chunksOf(), 'ndjson'), 0).next(), RangeError);
  t.same(await batches(parseImport(chunksOf(''), 'ndjson'), 5).next(), {
    value: undefined,
    done: true,
  });
});

// --------------------------------------------------------------------------------------------
// Bounded memory

/** `gc()` if this process can be given it; measuring the live heap needs it. */
async function collectGarbage(): Promise<(() => void) | undefined> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as unknown;
  return typeof gc === 'function' ? (gc as () => void) : undefined;
}

/**
 * Parses a lazily generated body (≥ 90 MiB, in ~64 KiB chunks as an HTTP body would arrive)
 * and reports the largest growth of the live heap seen along the way.
 */
async function parseMeasuringHeap(
  t: TapTest,
  format: ImportFormat,
  rows: number,
  line: (index: number) => string,
  header = '',
) {
  let generatedBytes = 0;
  async function* body(): AsyncGenerator<string> {
    let chunk = header;
    for (let index = 0; index < rows; index++) {
      chunk += line(index);
      if (chunk.length >= 65_536) {
        generatedBytes += chunk.length;
        yield chunk;
        chunk = '';
      }
    }
    generatedBytes += chunk.length;
    yield chunk;
  }
  const gc = await collectGarbage();
  gc?.();
  const before = process.memoryUsage().heapUsed;
  let peak = 0;
  let accepted = 0;
  let errors = 0;
  let batchCount = 0;
  const started = Date.now();
  for await (const batch of batches(parseImport(body(), format), 1000)) {
    accepted += batch.rows.length;
    errors += batch.rejected.length;
    batchCount += 1;
    if (batchCount % 4 === 0) {
      gc?.();
      peak = Math.max(peak, process.memoryUsage().heapUsed - before);
    }
  }
  const seconds = (Date.now() - started) / 1000;
  t.equal(accepted, rows, 'every row parsed');
  t.equal(errors, 0);
  t.ok(generatedBytes > 90 * 2 ** 20, `input was ${(generatedBytes / 2 ** 20).toFixed(0)} MiB`);
  t.ok(
    peak < 60 * 2 ** 20,
    `heap grew by at most ${(peak / 2 ** 20).toFixed(1)} MiB (gc ${gc ? 'forced' : 'not available'}) in ${seconds.toFixed(1)} s`,
  );
}

t.test('a ~100 MB NDJSON import is parsed in bounded memory', async (t) => {
  const pad = 'p'.repeat(2200);
  const consent = JSON.stringify({ ...CONSENT, userAgent: `Mozilla/5.0 ${'u'.repeat(150)}` });
  await parseMeasuringHeap(
    t,
    'ndjson',
    40_000,
    (i) =>
      `{"email":"user${i}@example.com","firstName":"First${i}","language":"sl-SI","attributes":{"n":${i},"pad":"${pad}"},"consent":${consent}}\n`,
  );
});

t.test('a ~100 MB CSV import is parsed in bounded memory', async (t) => {
  const pad = 'p'.repeat(5000);
  await parseMeasuringHeap(
    t,
    'csv',
    19_000,
    (i) =>
      `user${i}@example.com,First${i},Novak,sl,"{""n"":${i},""pad"":""${pad}""}",newsletter,3,form,2025-03-01T10:15:00+01:00,192.0.2.10,Mozilla/5.0,https://shop.example.com/signup\n`,
    `${CSV_HEADER}\n`,
  );
});
