import t from 'tap';
import { linkSealer } from '../../src/lib/link-sealing.js';

const SECRET = 'test-hash-secret-0123456789abcdef0123456789';
const LINK = '/v1/public/consent-confirmations/q3J0d2xYk1R8nH6pV9sT4wZ2cB7mF5aE0gL1iO3uK8y';

t.test('a sealed link opens with the same key and context only', async (t) => {
  const sealer = linkSealer(SECRET);
  const sealed = sealer.seal(LINK, 'events/a/1');
  t.match(sealed, /^v1\.[A-Za-z0-9_-]+$/);
  t.notOk(sealed.includes('q3J0d2xY'), 'no part of the link in clear');
  t.equal(sealer.open(sealed, 'events/a/1'), LINK);
  t.equal(linkSealer(SECRET).open(sealed, 'events/a/1'), LINK, 'the key is derived, not random');
  t.not(sealer.seal(LINK, 'events/a/1'), sealed, 'a fresh nonce each time');

  t.equal(sealer.open(sealed, 'events/b/1'), null, 'another context');
  t.equal(linkSealer(`${SECRET}x`).open(sealed, 'events/a/1'), null, 'another key');
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  for (const at of [0, 12, raw.length - 1]) {
    const flipped = Buffer.from(raw);
    flipped[at]! ^= 1;
    t.equal(sealer.open(`v1.${flipped.toString('base64url')}`, 'events/a/1'), null, `byte ${at}`);
  }
  for (const bad of ['', 'v1.', 'v1.AAAA', `v2.${sealed.slice(3)}`, LINK]) {
    t.equal(sealer.open(bad, 'events/a/1'), null, JSON.stringify(bad.slice(0, 20)));
  }
});
