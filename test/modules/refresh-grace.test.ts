import t from 'tap';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

function refresh(app: Awaited<ReturnType<typeof build>>, refreshToken: string) {
  return app.inject({ method: 'POST', url: '/v1/auth/refresh', payload: { refreshToken } });
}

t.test('parallel refreshes with one token all get the same successor', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const answers = await Promise.all(
    Array.from({ length: 4 }, () => refresh(app, owner.refreshToken)),
  );
  t.same(
    answers.map((res) => res.statusCode),
    [200, 200, 200, 200],
    answers.map((res) => res.body).join('\n'),
  );
  const bodies = answers.map((res) => res.json());
  const successor = bodies[0].refreshToken;
  t.not(successor, owner.refreshToken, 'a new refresh token');
  t.ok(
    bodies.every((body) => body.refreshToken === successor),
    'the same refresh token for every tab',
  );
  t.ok(
    bodies.every((body) => body.refreshTokenExpiresAt === bodies[0].refreshTokenExpiresAt),
    'with the same expiry',
  );
  for (const body of bodies) {
    const me = await app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: bearer(body.accessToken),
    });
    t.equal(me.statusCode, 200, 'each access token works: the session is alive');
  }
  const next = await refresh(app, successor);
  t.equal(next.statusCode, 200, 'the successor rotates normally');

  const stored = await app.database.owner
    .selectFrom('refresh_tokens')
    .select('successor_ciphertext')
    .where('successor_ciphertext', 'is not', null)
    .execute();
  const text = JSON.stringify(stored);
  t.ok(stored.length > 0, 'successors are kept during the window');
  t.notOk(text.includes(successor) || text.includes(successor.slice(4)), 'only encrypted');
});

t.test('reuse after the grace window ends the session family', async (t) => {
  const app = await build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '1' } });
  const owner = await signup(app);
  const first = await refresh(app, owner.refreshToken);
  t.equal(first.statusCode, 200);
  const rotated = first.json();
  const within = await refresh(app, owner.refreshToken);
  t.equal(within.statusCode, 200, 'within the window: the same successor');
  t.equal(within.json().refreshToken, rotated.refreshToken);

  await new Promise((resolve) => setTimeout(resolve, 1_200));
  const late = await refresh(app, owner.refreshToken);
  t.equal(late.statusCode, 401);
  t.equal(late.json().code, 'refresh_token_reused');
  const newest = await refresh(app, rotated.refreshToken);
  t.equal(newest.statusCode, 401, 'the successor is dead too');
  t.equal(newest.json().code, 'session_revoked');
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(rotated.accessToken),
  });
  t.equal(me.statusCode, 401, 'and the access tokens of the family');

  const sealed = await app.database.owner
    .selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .select('refresh_tokens.successor_ciphertext')
    .where('sessions.user_id', '=', owner.userId)
    .where('refresh_tokens.successor_ciphertext', 'is not', null)
    .execute();
  t.same(sealed, [], 'no successor is kept past the window');
});

t.test('successors whose window passed are cleared by the next rotation', async (t) => {
  const app = await build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '1' } });
  const a = await signup(app);
  const b = await signup(app);
  t.equal((await refresh(app, a.refreshToken)).statusCode, 200);
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  t.equal((await refresh(app, b.refreshToken)).statusCode, 200);
  const sealed = await app.database.owner
    .selectFrom('refresh_tokens')
    .innerJoin('sessions', 'sessions.id', 'refresh_tokens.session_id')
    .select('refresh_tokens.successor_ciphertext')
    .where('sessions.user_id', '=', a.userId)
    .where('refresh_tokens.successor_ciphertext', 'is not', null)
    .execute();
  t.same(sealed, [], "the other session's expired successor is gone");
});

t.test('REFRESH_REUSE_GRACE_SECONDS=0: any reuse ends the session', async (t) => {
  const app = await build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
  const owner = await signup(app);
  const answers = await Promise.all([
    refresh(app, owner.refreshToken),
    refresh(app, owner.refreshToken),
  ]);
  t.same(answers.map((res) => res.statusCode).sort(), [200, 401]);
});
