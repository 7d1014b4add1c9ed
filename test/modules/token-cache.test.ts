import t from 'tap';
import { VerifiedTokenCache } from '../../src/modules/identity/token-cache.js';

const claims = (exp: number) => ({ sub: 'user', sid: 'session', typ: 'access', exp });

t.test('a cached token is answered until its exp, then forgotten', async (t) => {
  const cache = new VerifiedTokenCache();
  const exp = 1_800_000_000; // seconds
  cache.set('token-a', claims(exp));
  t.same(cache.get('token-a', exp * 1000 - 1), claims(exp), 'valid one ms before exp');
  t.equal(cache.get('token-a', exp * 1000), undefined, 'gone at exp');
  t.equal(cache.size, 0, 'and dropped');
  t.equal(cache.get('token-b', 0), undefined, 'an unknown token misses');
});

t.test('only the exact token string hits', async (t) => {
  const cache = new VerifiedTokenCache();
  cache.set('header.payload.signature', claims(1_800_000_000));
  t.equal(cache.get('header.payload.signaturf', 0), undefined);
  t.equal(cache.get('header.payload.signature ', 0), undefined);
  t.ok(cache.get('header.payload.signature', 0));
});

t.test('the cache is bounded: the oldest entry goes first', async (t) => {
  const cache = new VerifiedTokenCache(3);
  for (const token of ['a', 'b', 'c', 'd']) cache.set(token, claims(1_800_000_000));
  t.equal(cache.size, 3);
  t.equal(cache.get('a', 0), undefined, 'the oldest was dropped');
  t.ok(cache.get('d', 0));
  cache.set('d', claims(1_800_000_001));
  t.equal(cache.size, 3, 'renewing a present token evicts nobody');
  t.ok(cache.get('b', 0), 'b is still there');
  const off = new VerifiedTokenCache(0);
  off.set('a', claims(1_800_000_000));
  t.equal(off.size, 0, 'size 0 caches nothing');
});
