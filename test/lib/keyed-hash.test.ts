import { createHmac } from 'node:crypto';
import t from 'tap';
import { emailFingerprint, keyedHash, safeEqual } from '../../src/lib/keyed-hash.js';

const SECRET = 'test-secret-0123456789abcdef0123456789';
const OTHER_SECRET = 'another-secret-0123456789abcdef012345';

t.test('keyedHash is HMAC-SHA256 in hex, deterministic', async (t) => {
  const hash = keyedHash(SECRET, 'jane@example.com');
  t.match(hash, /^[0-9a-f]{64}$/);
  t.equal(keyedHash(SECRET, 'jane@example.com'), hash, 'same input, same hash');
  t.equal(hash, createHmac('sha256', SECRET).update('jane@example.com').digest('hex'));
  t.not(keyedHash(SECRET, 'john@example.com'), hash, 'different value, different hash');
});

t.test('different secrets give different hashes', async (t) => {
  t.not(keyedHash(SECRET, 'jane@example.com'), keyedHash(OTHER_SECRET, 'jane@example.com'));
  t.not(
    emailFingerprint(SECRET, 'jane@example.com'),
    emailFingerprint(OTHER_SECRET, 'jane@example.com'),
  );
});

t.test('no plaintext in the output', async (t) => {
  const email = 'jane.doe@example.com';
  for (const output of [keyedHash(SECRET, email), emailFingerprint(SECRET, email)]) {
    t.notMatch(output, /jane|doe|example|@/);
    t.notOk(output.includes(Buffer.from(email).toString('hex')), 'not the hex of the address');
  }
});

t.test('refuses a short or missing secret', async (t) => {
  t.throws(() => keyedHash('', 'x'), TypeError);
  t.throws(() => keyedHash('short', 'x'), TypeError);
  t.throws(() => emailFingerprint('short', 'jane@example.com'), TypeError);
});

t.test('emailFingerprint canonicalises and is domain-separated', async (t) => {
  const fingerprint = emailFingerprint(SECRET, 'jane@example.com');
  t.match(fingerprint, /^[0-9a-f]{64}$/);
  t.equal(emailFingerprint(SECRET, '  JANE@Example.com '), fingerprint, 'case and spaces');
  t.not(emailFingerprint(SECRET, 'jane+x@example.com'), fingerprint, 'no +tag folding');
  t.not(fingerprint, keyedHash(SECRET, 'jane@example.com'), 'differs from a plain keyed hash');
  // An address a validator would refuse today still has a stable fingerprint (erasable).
  t.equal(emailFingerprint(SECRET, 'Not An Address'), emailFingerprint(SECRET, 'not an address'));
});

t.test('safeEqual compares exactly', async (t) => {
  const hash = keyedHash(SECRET, 'jane@example.com');
  t.ok(safeEqual(hash, `${hash}`));
  t.notOk(safeEqual(hash, keyedHash(SECRET, 'john@example.com')));
  t.notOk(safeEqual(hash, hash.slice(0, -1)), 'different lengths');
  t.notOk(safeEqual(hash, `${hash.slice(0, -1)}${hash.endsWith('0') ? '1' : '0'}`), 'last char');
  t.ok(safeEqual('', ''));
});
