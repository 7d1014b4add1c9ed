import { randomBytes } from 'node:crypto';
import t from 'tap';
import { secretBox } from '../../src/lib/secret-box.js';

t.test('a sealed secret opens with the same key and context only', async (t) => {
  const key = randomBytes(32);
  const box = secretBox(key);
  const sealed = box.seal('whsec_abc', 'webhooks/a/1');
  t.match(sealed, /^v1\.[A-Za-z0-9_-]+$/);
  t.notOk(sealed.includes('whsec'), 'nothing in clear');
  t.equal(box.open(sealed, 'webhooks/a/1'), 'whsec_abc');
  t.equal(secretBox(Buffer.from(key)).open(sealed, 'webhooks/a/1'), 'whsec_abc');
  t.equal(box.open(sealed, 'webhooks/b/1'), null, 'another context');
  t.equal(secretBox(randomBytes(32)).open(sealed, 'webhooks/a/1'), null, 'another key');
  t.equal(box.open('v1.AAAA', 'webhooks/a/1'), null, 'too short');
  t.throws(() => secretBox(randomBytes(16)), RangeError, 'a 32-byte key only');
});
