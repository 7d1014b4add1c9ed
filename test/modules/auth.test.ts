import t from 'tap';
import { createOperator } from '../../src/modules/ops/operators.js';
import { bearer, GOOD_PASSWORD, login, signup, uniqueEmail } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';

const PROBLEM = /^application\/problem\+json/;

t.test('sign-up creates an account, its owner and a working session', async (t) => {
  const app = await build(t);
  const email = uniqueEmail('Owner');
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { name: 'Example Shop', email: email.toUpperCase(), password: GOOD_PASSWORD },
  });
  t.equal(res.statusCode, 201, res.body);
  const body = res.json();
  t.equal(body.account.timeZone, 'Europe/Ljubljana', 'default time zone');
  t.equal(body.user.role, 'owner');
  t.equal(body.user.email, email.toLowerCase(), 'email is normalised');
  t.notOk('passwordHash' in body.user, 'no hash on the wire');
  t.notOk(JSON.stringify(body).includes('argon2'), 'no hash anywhere in the body');
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(body.accessToken),
  });
  t.equal(me.statusCode, 200);
  t.equal(me.json().account.id, body.account.id);
  t.equal(me.json().password.passwordAgeDays, 0);
  t.equal(me.json().password.passwordChangeRecommended, false);

  const again = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { name: 'Other', email, password: GOOD_PASSWORD },
  });
  t.equal(again.statusCode, 409);
  t.equal(again.json().code, 'email_taken');
});

t.test('weak and common passwords are refused with the reason', async (t) => {
  const app = await build(t);
  const cases: [string, string, string][] = [
    ['short one', 'password_too_short', 'body.password'],
    ['passwordpassword', 'password_common', 'body.password'],
  ];
  for (const [password, code, field] of cases) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/auth/signup',
      payload: { name: 'Example', email: uniqueEmail(), password },
    });
    t.equal(res.statusCode, 400, `${code}: ${res.body}`);
    t.match(res.headers['content-type'], PROBLEM);
    const problem = res.json();
    t.ok(
      [code, 'password_too_weak'].includes(problem.code),
      `${password.length} chars refused as ${problem.code}`,
    );
    t.equal(problem.errors[0].field, field);
    t.ok(problem.detail.length > 10, 'a reason is given');
    t.notOk(problem.detail.includes(password), 'the password is not echoed');
  }
  const personal = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: {
      name: 'Example',
      email: 'marjetica.kovacic@example.com',
      password: 'marjetica.kovacic 2026 spring',
    },
  });
  t.equal(personal.statusCode, 400);
  t.equal(personal.json().code, 'password_contains_personal_info');
});

t.test('common passwords are refused wherever a password is set', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const opEmail = uniqueEmail('ops');
  await createOperator(app.database.owner, testConfig(), {
    email: opEmail,
    password: GOOD_PASSWORD,
  });
  const op = await login(app, opEmail);
  const common = ['correcthorsebatterystaple', 'Password123456789!', 'iloveyou iloveyou'];
  const places = [
    {
      label: 'sign-up',
      field: 'body.password',
      request: (password: string) =>
        app.inject({
          method: 'POST',
          url: '/v1/auth/signup',
          payload: { name: 'Example', email: uniqueEmail(), password },
        }),
    },
    {
      label: 'password change',
      field: 'body.newPassword',
      request: (password: string) =>
        app.inject({
          method: 'POST',
          url: '/v1/auth/password',
          headers: bearer(owner.accessToken),
          payload: { currentPassword: GOOD_PASSWORD, newPassword: password },
        }),
    },
    {
      label: 'new user',
      field: 'body.password',
      request: (password: string) =>
        app.inject({
          method: 'POST',
          url: '/v1/users',
          headers: bearer(owner.accessToken),
          payload: { email: uniqueEmail(), password, role: 'member' },
        }),
    },
    {
      label: 'owner of an account made by an operator, with the set-password link',
      field: 'body.password',
      request: async (password: string) => {
        const created = await app.inject({
          method: 'POST',
          url: '/v1/ops/accounts',
          headers: bearer(op.accessToken),
          payload: { name: 'Made by ops', owner: { email: uniqueEmail() } },
        });
        return app.inject({
          method: 'POST',
          url: `/v1/public/password-setups/${created.json().passwordSetup.token}`,
          payload: { password },
        });
      },
    },
  ];
  for (const place of places) {
    for (const password of common) {
      const res = await place.request(password);
      t.equal(res.statusCode, 400, `${place.label} refuses ${password}: ${res.body}`);
      t.match(res.headers['content-type'], PROBLEM);
      t.equal(res.json().code, 'password_common');
      t.same(
        res.json().errors.map((e: { field: string; code: string }) => [e.field, e.code]),
        [[place.field, 'password_common']],
      );
    }
    const random = await place.request('qX7!mZp2 rV9#kL4w tB6$nH8e');
    t.ok([200, 201, 204].includes(random.statusCode), `${place.label} accepts a random passphrase`);
  }
  // The command-line bootstrap of operators applies the same policy.
  await t.rejects(
    createOperator(app.database.owner, testConfig(), {
      email: uniqueEmail('ops'),
      password: 'Password123456789!',
    }),
    { code: 'password_common' },
  );
});

t.test('sign-up can be closed', async (t) => {
  const app = await build(t, { env: { SIGNUP: 'closed' } });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { name: 'Example', email: uniqueEmail(), password: GOOD_PASSWORD },
  });
  t.equal(res.statusCode, 403);
  t.equal(res.json().code, 'signup_closed');
});

t.test('unknown and known emails get identical login failures', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const known = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: owner.email, password: 'wrong password entirely here' },
  });
  const unknown = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: uniqueEmail('nobody'), password: 'wrong password entirely here' },
  });
  t.equal(known.statusCode, 401);
  t.equal(unknown.statusCode, 401);
  const strip = (b: Record<string, unknown>) => ({ ...b, requestId: undefined });
  t.same(strip(known.json()), strip(unknown.json()), 'same body apart from the request id');
  t.equal(known.json().code, 'invalid_credentials');
  t.equal(known.headers['content-type'], unknown.headers['content-type']);
});

t.test('login is throttled per client address, and its 429 says so', async (t) => {
  const app = await build(t, { env: { LOGIN_MAX_PER_IP_PER_MINUTE: '2' } });
  const answers = [];
  for (let i = 0; i < 3; i++) {
    answers.push(
      await app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        payload: { email: uniqueEmail(`ip${i}`), password: 'wrong password entirely here' },
      }),
    );
  }
  t.same(
    answers.map((res) => res.statusCode),
    [401, 401, 429],
  );
  const limited = answers[2]!;
  // The headers describe the login limiter that refused (2 a minute), not the global budget.
  t.equal(limited.headers['x-ratelimit-limit'], '2');
  t.equal(limited.headers['x-ratelimit-remaining'], '0');
  const reset = Number(limited.headers['x-ratelimit-reset']);
  t.ok(reset > 0 && reset <= 60, `X-RateLimit-Reset ${reset}`);
  t.equal(limited.headers['retry-after'], limited.headers['x-ratelimit-reset']);
});

t.test('sign-up and login return the tokens the same way', async (t) => {
  const app = await build(t);
  const email = uniqueEmail('shape');
  const signedUp = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { name: 'Shape Ltd', email, password: GOOD_PASSWORD },
  });
  t.equal(signedUp.statusCode, 201, signedUp.body);
  const loggedIn = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password: GOOD_PASSWORD },
  });
  t.equal(loggedIn.statusCode, 200, loggedIn.body);
  const tokenFields = Object.keys(loggedIn.json()).sort();
  t.same(tokenFields, [
    'accessToken',
    'expiresIn',
    'refreshToken',
    'refreshTokenExpiresAt',
    'tokenType',
  ]);
  const body = signedUp.json();
  t.same(
    Object.keys(body).sort(),
    [...tokenFields, 'account', 'user'].sort(),
    'the token pair at the top level, with the account and its owner',
  );
  t.equal(body.tokenType, 'Bearer');
  t.equal(body.account.name, 'Shape Ltd', 'name is the account’s name, as everywhere');
  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(body.accessToken) });
  t.equal(me.statusCode, 200);
  const old = await app.inject({
    method: 'POST',
    url: '/v1/auth/signup',
    payload: { accountName: 'Old Shape', email: uniqueEmail('old'), password: GOOD_PASSWORD },
  });
  t.equal(old.statusCode, 400, 'accountName is not a field any more');
});

t.test('consecutive failures lock the account, without saying so', async (t) => {
  const app = await build(t, {
    env: { LOGIN_LOCKOUT_THRESHOLD: '3' },
  });
  const owner = await signup(app);
  for (let i = 0; i < 3; i++) {
    await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: owner.email, password: 'wrong password entirely here' },
    });
  }
  const res = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: owner.email, password: GOOD_PASSWORD },
  });
  t.equal(res.statusCode, 401, 'even the right password is refused while locked');
  t.equal(res.json().code, 'invalid_credentials');
});

t.test('refresh rotates; reusing an old refresh token kills the session family', async (t) => {
  // No grace window: the reuse below comes right after the rotation.
  const app = await build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
  const owner = await signup(app);
  const first = await app.inject({
    method: 'POST',
    url: '/v1/auth/refresh',
    payload: { refreshToken: owner.refreshToken },
  });
  t.equal(first.statusCode, 200, first.body);
  const rotated = first.json();
  t.not(rotated.refreshToken, owner.refreshToken, 'a new refresh token');

  const meBefore = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(rotated.accessToken),
  });
  t.equal(meBefore.statusCode, 200);

  const reuse = await app.inject({
    method: 'POST',
    url: '/v1/auth/refresh',
    payload: { refreshToken: owner.refreshToken },
  });
  t.equal(reuse.statusCode, 401);
  t.equal(reuse.json().code, 'refresh_token_reused');

  const newer = await app.inject({
    method: 'POST',
    url: '/v1/auth/refresh',
    payload: { refreshToken: rotated.refreshToken },
  });
  t.equal(newer.statusCode, 401, 'the newest token of the family is dead too');
  const meAfter = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(rotated.accessToken),
  });
  t.equal(meAfter.statusCode, 401, 'access tokens of the family stop working');
  t.equal(meAfter.json().code, 'session_revoked');

  const other = await login(app, owner.email);
  const meOther = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(other.accessToken),
  });
  t.equal(meOther.statusCode, 200, 'a separate login is unaffected');
});

t.test('logout revokes the session', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const out = await app.inject({
    method: 'POST',
    url: '/v1/auth/logout',
    headers: bearer(owner.accessToken),
  });
  t.equal(out.statusCode, 204);
  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(owner.accessToken) });
  t.equal(me.statusCode, 401);
  const refresh = await app.inject({
    method: 'POST',
    url: '/v1/auth/refresh',
    payload: { refreshToken: owner.refreshToken },
  });
  t.equal(refresh.statusCode, 401);
});

t.test('password change needs the current password and ends other sessions', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const second = await login(app, owner.email);
  const wrong = await app.inject({
    method: 'POST',
    url: '/v1/auth/password',
    headers: bearer(owner.accessToken),
    payload: {
      currentPassword: 'not the password at all',
      newPassword: 'marble comet harbour sideways',
    },
  });
  t.equal(wrong.statusCode, 400);
  t.equal(wrong.json().code, 'current_password_wrong');
  const weak = await app.inject({
    method: 'POST',
    url: '/v1/auth/password',
    headers: bearer(owner.accessToken),
    payload: { currentPassword: GOOD_PASSWORD, newPassword: 'short' },
  });
  t.equal(weak.statusCode, 400);
  t.equal(weak.json().errors[0].field, 'body.newPassword');

  const ok = await app.inject({
    method: 'POST',
    url: '/v1/auth/password',
    headers: bearer(owner.accessToken),
    payload: { currentPassword: GOOD_PASSWORD, newPassword: 'marble comet harbour sideways' },
  });
  t.equal(ok.statusCode, 204, ok.body);
  const mine = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(owner.accessToken),
  });
  t.equal(mine.statusCode, 200, 'the session that changed it stays');
  const other = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(second.accessToken),
  });
  t.equal(other.statusCode, 401, 'other sessions end');
  await login(app, owner.email, 'marble comet harbour sideways');
});

t.test('access tokens: algorithm pinned, tampering and expiry refused', async (t) => {
  const app = await build(t, { env: { ACCESS_TOKEN_TTL: '3s' } });
  const owner = await signup(app);
  const [header, payload] = owner.accessToken.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
  // Used while valid, so this process has it among its verified tokens: expiry still applies.
  const valid = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(owner.accessToken),
  });
  t.equal(valid.statusCode, 200, valid.body);
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
  const res = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(none) });
  t.equal(res.statusCode, 401, 'alg=none refused');
  const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: claims.sid })).toString('base64url')}.${owner.accessToken.split('.')[2]}`;
  const tampered = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(forged) });
  t.equal(tampered.statusCode, 401, 'a changed payload fails the signature');
  t.equal(claims.iss, 'custodian');
  t.equal(claims.aud, 'custodian-api');
  // Wait past the token's own `exp` (whole seconds), however long the steps above took.
  await new Promise((r) => setTimeout(r, Math.max(0, claims.exp * 1000 - Date.now()) + 1_100));
  const expired = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: bearer(owner.accessToken),
  });
  t.equal(expired.statusCode, 401);
  t.equal(expired.json().code, 'token_expired');
});

t.test('the password age shows and recommends a change when old', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  await app.database.owner
    .updateTable('users')
    .set({ password_changed_at: new Date(Date.now() - 400 * 86_400_000) })
    .where('id', '=', owner.userId)
    .execute();
  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(owner.accessToken) });
  t.equal(me.statusCode, 200);
  t.equal(me.json().password.passwordAgeDays, 400);
  t.equal(me.json().password.passwordChangeRecommended, true);
});

t.test('sign-ups and new users racing for one address: one user, the rest 409', async (t) => {
  const app = await build(t);
  const email = uniqueEmail('race');
  const accountName = `Race ${email}`;
  // Each request passes any check of its own before the others insert (on Postgres these
  // run concurrently; the unique index decides, and its violation must not surface as a 500).
  const signups = await Promise.all(
    Array.from({ length: 6 }, () =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/signup',
        payload: { name: accountName, email, password: GOOD_PASSWORD },
      }),
    ),
  );
  t.same(
    signups.map((r) => r.statusCode).sort(),
    [201, 409, 409, 409, 409, 409],
    signups.map((r) => r.body.slice(0, 120)).join('\n'),
  );
  for (const res of signups.filter((r) => r.statusCode === 409)) {
    t.equal(res.json().code, 'email_taken');
  }
  const accounts = await app.database.owner
    .selectFrom('accounts')
    .select('id')
    .where('name', '=', accountName)
    .execute();
  t.equal(accounts.length, 1, 'no account left behind by the refused sign-ups');

  const owner = await signup(app);
  const member = uniqueEmail('member');
  const adds = await Promise.all(
    Array.from({ length: 6 }, () =>
      app.inject({
        method: 'POST',
        url: '/v1/users',
        headers: bearer(owner.accessToken),
        payload: { email: member, password: GOOD_PASSWORD, role: 'member' },
      }),
    ),
  );
  t.same(
    adds.map((r) => r.statusCode).sort(),
    [201, 409, 409, 409, 409, 409],
    adds.map((r) => r.body.slice(0, 120)).join('\n'),
  );
});
