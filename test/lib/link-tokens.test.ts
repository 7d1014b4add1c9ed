import { createHash } from 'node:crypto';
import t from 'tap';
import {
  assertRedeemable,
  LINK_TOKEN_PATTERN,
  linkTokenHash,
  newLinkToken,
} from '../../src/lib/link-tokens.js';

t.test('a new token is 256 random bits, stored only as its SHA-256', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const { token, hash } = newLinkToken();
    t.match(token, LINK_TOKEN_PATTERN);
    t.equal(Buffer.from(token, 'base64url').length, 32);
    t.equal(hash, createHash('sha256').update(token).digest('hex'));
    t.equal(linkTokenHash(token), hash, 'a presented token finds its hash');
    seen.add(token);
  }
  t.equal(seen.size, 50, 'never the same twice');
});

t.test('a string that cannot be one of ours has no hash', async (t) => {
  const { token } = newLinkToken();
  for (const bad of ['', token.slice(1), `${token}A`, `${token.slice(0, -1)}=`, '../'.repeat(15)]) {
    t.equal(linkTokenHash(bad), null, JSON.stringify(bad));
  }
});

t.test('assertRedeemable: none 404, used 409 (even when also expired), expired 410', async (t) => {
  const now = new Date('2026-12-04T12:00:00Z');
  const later = new Date('2026-12-05T12:00:00Z');
  const earlier = new Date('2026-12-03T12:00:00Z');
  t.throws(() => assertRedeemable(undefined, now), { status: 404, code: 'token_invalid' });
  t.throws(() => assertRedeemable({ used_at: earlier, expires_at: later }, now), {
    status: 409,
    code: 'token_used',
  });
  t.throws(() => assertRedeemable({ used_at: earlier, expires_at: earlier }, now), {
    status: 409,
    code: 'token_used',
  });
  t.throws(() => assertRedeemable({ used_at: null, expires_at: now }, now), {
    status: 410,
    code: 'token_expired',
  });
  t.doesNotThrow(() => assertRedeemable({ used_at: null, expires_at: later }, now));
});
