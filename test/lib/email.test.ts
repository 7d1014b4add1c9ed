import t from 'tap';
import {
  addressesWithin,
  canonicalizeEmail,
  EMAIL_MAX_LENGTH,
  normalizeEmail,
} from '../../src/lib/email.js';

t.test('trims, lower-cases the whole address and applies NFC', async (t) => {
  t.equal(normalizeEmail('  Jane.Doe@Example.COM \n'), 'jane.doe@example.com');
  // "é" written as e + combining acute (NFD) in the local part is refused (ASCII local parts
  // only), but in the domain both spellings must land on the same A-label.
  const nfd = 'ana@cafe\u0301.si';
  const nfc = 'ana@caf\u00e9.si';
  t.not(nfd, nfc);
  t.equal(normalizeEmail(nfd), normalizeEmail(nfc));
  t.equal(normalizeEmail(nfc), 'ana@xn--caf-dma.si');
  t.equal(canonicalizeEmail(' A\u0301@X.COM '), '\u00e1@x.com', 'canonical form is NFC');
});

t.test('case-insensitive: spellings of one address normalise to one value', async (t) => {
  const spellings = [
    'JANE@EXAMPLE.COM',
    'jane@example.com',
    'Jane@Example.Com',
    ' jane@EXAMPLE.com',
  ];
  t.same(new Set(spellings.map(normalizeEmail)), new Set(['jane@example.com']));
});

t.test('no provider-specific folding: dots and +tags stay', async (t) => {
  t.equal(normalizeEmail('j.a.n.e+news@gmail.com'), 'j.a.n.e+news@gmail.com');
  t.not(normalizeEmail('jane.doe@gmail.com'), normalizeEmail('janedoe@gmail.com'));
  t.not(normalizeEmail('jane+a@example.com'), normalizeEmail('jane@example.com'));
});

t.test('internationalised domains become their ASCII form', async (t) => {
  t.equal(normalizeEmail('user@Bücher.de'), 'user@xn--bcher-kva.de');
  t.equal(normalizeEmail('user@xn--bcher-kva.de'), 'user@xn--bcher-kva.de');
  t.equal(normalizeEmail('info@пример.рф'), 'info@xn--e1afmkfd.xn--p1ai', 'IDN top-level domain');
});

t.test('accepts ordinary valid addresses', async (t) => {
  for (const address of [
    "o'brien@example.ie",
    'a+b@example.com',
    'first_last@sub.example.co.uk',
    'x@example.museum',
    '1234@example.com',
  ]) {
    t.equal(normalizeEmail(address), address, address);
  }
});

t.test('refuses invalid addresses', async (t) => {
  for (const address of [
    '',
    '   ',
    'plain',
    '@example.com',
    'jane@',
    'jane@@example.com',
    'jane@example',
    'jane@localhost',
    'jane doe@example.com',
    '.jane@example.com',
    'jane..doe@example.com',
    'jane@example..com',
    'jane@-example.com',
    '"jane"@example.com',
    'jane@[192.0.2.1]',
    'jürgen@example.de',
    'jane@exa mple.com',
    'jane\u0000@example.com',
  ]) {
    t.equal(normalizeEmail(address), null, JSON.stringify(address));
  }
});

t.test('enforces the RFC 5321 lengths', async (t) => {
  const local64 = 'l'.repeat(64);
  /** `local64@` plus a dotted domain (labels of at most 60 characters) of exactly `total`. */
  const addressOfLength = (total: number) => {
    let domain = 'com';
    while (domain.length + 61 < total - 65) domain = `${'d'.repeat(60)}.${domain}`;
    domain = `${'e'.repeat(total - 65 - domain.length - 1)}.${domain}`;
    return `${local64}@${domain}`;
  };
  const longest = addressOfLength(EMAIL_MAX_LENGTH);
  t.equal(longest.length, 254);
  t.equal(normalizeEmail(longest), longest, '254 characters with a 64-character local part');
  const tooLong = addressOfLength(EMAIL_MAX_LENGTH + 1);
  t.equal(tooLong.length, 255);
  t.equal(normalizeEmail(tooLong), null, 'over 254 characters');
  t.equal(normalizeEmail(`${'l'.repeat(65)}@example.com`), null, 'local part over 64');
  t.equal(normalizeEmail(`a@${'x'.repeat(100_000)}.com`), null, 'huge input returns quickly');
});

t.test('non-strings are refused rather than thrown on', async (t) => {
  t.equal(normalizeEmail(undefined as unknown as string), null);
  t.equal(normalizeEmail(42 as unknown as string), null);
});

t.test('addressesWithin finds the addresses inside a free text', async (t) => {
  t.ok(addressesWithin('import-Jana@Example.si').includes('jana@example.si'));
  t.ok(addressesWithin('import:jana@example.si-2026-12').includes('jana@example.si'));
  t.ok(addressesWithin('x ana@žabe.si y').includes(normalizeEmail('ana@žabe.si')!), 'IDN domain');
  t.ok(addressesWithin('a@example.com,b@example.org').includes('b@example.org'));
  t.same(addressesWithin('batch-2026-12-03'), []);
  t.same(addressesWithin('@@@'), []);
});

t.test('sign-in and contact addresses share one spelling rule', async (t) => {
  const { Email } = await import('../../src/http/schemas.js');
  const { ContactEmail } = await import('../../src/modules/contacts/contacts.schemas.js');
  for (const input of ['Jane.Doe@Example.COM', 'DPO+gdpr@Sub.Example.org', "o'neil@example.ie"]) {
    const signIn = Email.parse(input);
    t.equal(signIn, canonicalizeEmail(input), `${input}: Email applies canonicalizeEmail`);
    t.equal(ContactEmail.parse(input), signIn, `${input}: ContactEmail spells it the same`);
  }
  t.notOk(Email.safeParse(' jane@example.com').success, 'Email still refuses surrounding space');
  t.notOk(Email.safeParse('ana@žabe.si').success, 'and Unicode domains (contacts only)');
});
