import argon2 from 'argon2';
import t from 'tap';
import {
  ARGON2_OPTIONS,
  checkPasswordPolicy,
  commonPasswordCount,
  DUMMY_HASH,
  hashPassword,
  needsRehash,
  PASSWORD_MAX_LENGTH,
  type PasswordPolicyResult,
  passwordAge,
  verifyAgainstDummy,
  verifyPassword,
} from '../../src/modules/identity/password.js';

/** Parses `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`; argon2 writes the params in any order. */
function phcParts(hash: string) {
  const [, id, version, params] = hash.split('$');
  const entries = (params ?? '').split(',').map((pair) => pair.split('=') as [string, string]);
  return { id, version, params: Object.fromEntries(entries) as Record<string, string> };
}

function codeOf(result: PasswordPolicyResult): string {
  return result.ok ? 'ok' : result.code;
}

const SOLE_FACTOR = { minLength: 15 };

t.test('hashing', async (t) => {
  const password = 'vellum quasar tundra obliged';
  const hash = await hashPassword(password);

  t.test('round trip verifies', async (t) => {
    t.equal(await verifyPassword(hash, password), true);
  });

  t.test('a wrong password does not verify', async (t) => {
    t.equal(await verifyPassword(hash, 'vellum quasar tundra obligee'), false);
    t.equal(await verifyPassword(hash, ''), false);
  });

  t.test('each hash has its own salt', async (t) => {
    t.not(await hashPassword(password), hash);
  });

  t.test('the hash string records argon2id and the chosen parameters', async (t) => {
    const { id, version, params } = phcParts(hash);
    t.equal(id, 'argon2id');
    t.equal(version, 'v=19');
    t.same(params, {
      m: String(ARGON2_OPTIONS.memoryCost),
      t: String(ARGON2_OPTIONS.timeCost),
      p: String(ARGON2_OPTIONS.parallelism),
    });
    t.same(
      [ARGON2_OPTIONS.memoryCost, ARGON2_OPTIONS.timeCost, ARGON2_OPTIONS.parallelism],
      [19_456, 2, 1],
      'at the OWASP minimum',
    );
  });

  t.test('malformed hashes answer false instead of throwing', async (t) => {
    const truncated = hash.slice(0, hash.lastIndexOf('$'));
    for (const bad of [
      '',
      'not a hash',
      '$2b$10$abcdefghijklmnopqrstuu5Zs4pWvW0E0pSBx1d6NJvA0lHIlV9lW', // bcrypt
      truncated,
      hash.replace('m=19456', 'm=banana'),
      '$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g', // below argon2's own limits
      '$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA',
    ]) {
      t.equal(await verifyPassword(bad, password), false, JSON.stringify(bad));
    }
  });

  t.test('NFKC: precomposed and decomposed accents are the same password', async (t) => {
    const composed = 'crème brûlée zèbre façade';
    const decomposed = composed.normalize('NFD');
    t.not(decomposed, composed, 'the two spellings differ before normalisation');
    t.equal(await verifyPassword(await hashPassword(composed), decomposed), true);
    t.equal(await verifyPassword(await hashPassword(decomposed), composed), true);
  });
});

t.test('needsRehash', async (t) => {
  t.equal(needsRehash(await hashPassword('current parameters here')), false, 'current hash');

  const weaker = await argon2.hash('old parameters here', {
    type: argon2.argon2id,
    memoryCost: 4096,
    timeCost: 1,
    parallelism: 1,
  });
  t.equal(needsRehash(weaker), true, 'weaker memory and time');

  const fewerPasses = await argon2.hash('old parameters here', {
    ...ARGON2_OPTIONS,
    timeCost: 1,
  });
  t.equal(needsRehash(fewerPasses), true, 'weaker time only');

  const otherVariant = await argon2.hash('old parameters here', {
    ...ARGON2_OPTIONS,
    type: argon2.argon2i,
  });
  t.equal(needsRehash(otherVariant), true, 'argon2i with the same parameters');

  t.equal(needsRehash('garbage'), true, 'malformed');
  t.equal(needsRehash('$argon2id$garbage'), true, 'malformed argon2id prefix');
});

t.test('dummy hash for unknown emails', async (t) => {
  const dummy = await DUMMY_HASH.get();
  t.equal(await DUMMY_HASH.get(), dummy, 'computed once');
  t.equal(needsRehash(dummy), false, 'same parameters as real hashes, so the same cost');
  t.equal(await verifyAgainstDummy('any password at all'), false);
  t.equal(await verifyPassword(dummy, ''), false);
});

t.test('policy: length', async (t) => {
  t.test('shorter than minLength is refused with its code', async (t) => {
    const result = checkPasswordPolicy('quasar tundra', SOLE_FACTOR); // 13
    t.equal(codeOf(result), 'password_too_short');
    t.match(result, { reason: /15 characters/ });
  });

  t.test('minLength comes from the caller', async (t) => {
    t.equal(codeOf(checkPasswordPolicy('vellum quasar', { minLength: 12 })), 'ok');
    t.equal(codeOf(checkPasswordPolicy('vellum quasar', { minLength: 15 })), 'password_too_short');
  });

  t.test('minLength below NIST floor of 8 is a configuration error', async (t) => {
    t.throws(() => checkPasswordPolicy('whatever it is', { minLength: 6 }), RangeError);
    t.throws(() => checkPasswordPolicy('whatever it is', { minLength: 15.5 }), RangeError);
  });

  t.test('more than 256 code points is refused, 256 is not', async (t) => {
    const words = 'vellum quasar tundra obliged marmot ';
    const long = words.repeat(8).slice(0, PASSWORD_MAX_LENGTH);
    t.equal([...long].length, 256);
    t.not(codeOf(checkPasswordPolicy(long, SOLE_FACTOR)), 'password_too_long');
    t.equal(codeOf(checkPasswordPolicy(`${long}x`, SOLE_FACTOR)), 'password_too_long');
    t.equal(codeOf(checkPasswordPolicy('x'.repeat(1_000_000), SOLE_FACTOR)), 'password_too_long');
  });

  t.test('length counts code points: an emoji is one character', async (t) => {
    const emoji = '🦊🌵🎻🛶🧭🪁🦉🍄🌋🧊🪐🦔🎲🧶'; // 14 emoji, 28 UTF-16 units
    t.equal(emoji.length, 28);
    t.equal(codeOf(checkPasswordPolicy(emoji, SOLE_FACTOR)), 'password_too_short');
    t.equal(codeOf(checkPasswordPolicy(`${emoji}🦀`, SOLE_FACTOR)), 'ok');
  });

  t.test('length counts after NFKC: a decomposed accent is one character', async (t) => {
    const decomposed = 'é'.normalize('NFD').repeat(8); // 16 code points, 8 after NFKC
    t.equal([...decomposed].length, 16);
    t.equal(codeOf(checkPasswordPolicy(decomposed, SOLE_FACTOR)), 'password_too_short');
    const accented = 'çàéîõüñøåæßœ'; // 12 code points precomposed, 24 decomposed
    t.equal(
      codeOf(checkPasswordPolicy(accented.normalize('NFD'), { minLength: 13 })),
      'password_too_short',
    );
  });

  t.test('the reason never repeats the password', async (t) => {
    for (const password of ['tiny pw', 'passwordpassword', 'password1234567890']) {
      const result = checkPasswordPolicy(password, SOLE_FACTOR);
      t.equal(result.ok, false);
      if (!result.ok) t.notOk(result.reason.includes(password), result.code);
    }
  });
});

t.test('policy: common and weak passwords', async (t) => {
  t.test('a password on the common list is refused, whatever its case', async (t) => {
    const result = checkPasswordPolicy('PasswordPassword', SOLE_FACTOR);
    t.equal(codeOf(result), 'password_common');
    t.match(result, { reason: /common or breached/ });
    t.equal(codeOf(checkPasswordPolicy('1qaz2wsx3edc4rfv', SOLE_FACTOR)), 'password_common');
  });

  t.test("'password1234567890' is refused", async (t) => {
    const code = codeOf(checkPasswordPolicy('password1234567890', SOLE_FACTOR));
    t.ok(['password_common', 'password_too_weak'].includes(code), code);
  });

  t.test('a long but guessable password is too weak, with zxcvbn advice', async (t) => {
    const result = checkPasswordPolicy('aaaaaaaaaaaaaaaaaaaa', SOLE_FACTOR);
    t.equal(codeOf(result), 'password_too_weak');
    t.match(result, { reason: /too easy to guess\. Repeated characters/ });
  });

  t.test('zxcvbn score 2 is not enough', async (t) => {
    // A keyboard walk: zxcvbn scores it 2 (about 10^7.5 guesses).
    const result = checkPasswordPolicy('1qaz2wsx3edc4rfv5tgb', SOLE_FACTOR);
    t.equal(codeOf(result), 'password_too_weak');
    t.match(result, { reason: /Add more words/ });
  });

  t.test('a passphrase of unusual words is accepted', async (t) => {
    t.same(checkPasswordPolicy('correct horse battery staple orbit', SOLE_FACTOR), { ok: true });
    t.same(checkPasswordPolicy('quixotic marmalade zeppelin fjord', SOLE_FACTOR), { ok: true });
  });

  t.test('no composition rule: lowercase words without digits or symbols pass', async (t) => {
    const password = 'vellum quasar tundra obliged';
    t.match(password, /^[a-z ]+$/);
    t.same(checkPasswordPolicy(password, SOLE_FACTOR), { ok: true });
  });
});

t.test('policy: breached-password blocklist with normalisation', async (t) => {
  t.test('the blocklist holds at least 100,000 entries', async (t) => {
    t.ok(commonPasswordCount() >= 100_000, `${commonPasswordCount()} entries`);
  });

  t.test('padded, repeated and famous common passwords are refused', async (t) => {
    for (const password of [
      'correcthorsebatterystaple',
      'Correct Horse Battery Staple',
      'Password123456789!',
      'iloveyou iloveyou',
      'ILoveYouILoveYou!!',
      '2024 sunshine 2024!!',
      'dragon-dragon-dragon',
    ]) {
      t.equal(codeOf(checkPasswordPolicy(password, SOLE_FACTOR)), 'password_common', password);
    }
  });

  t.test('an entry found only in the large breach list is refused', async (t) => {
    // In the SecLists/xato top-1M list, not in zxcvbn's 49k list.
    t.equal(codeOf(checkPasswordPolicy('Per aspera ad astra', SOLE_FACTOR)), 'password_common');
    t.equal(codeOf(checkPasswordPolicy('stairwaytoheaven', SOLE_FACTOR)), 'password_common');
  });

  t.test('the name of the service counts as a context-specific word', async (t) => {
    t.equal(
      codeOf(checkPasswordPolicy('Custodian vellum quasar tundra', SOLE_FACTOR)),
      'password_contains_personal_info',
    );
  });

  t.test('a long random passphrase is accepted', async (t) => {
    t.same(checkPasswordPolicy('qX7!mZp2 rV9#kL4w tB6$nH8e', SOLE_FACTOR), { ok: true });
    t.same(checkPasswordPolicy('vellum quasar tundra obliged 1987', SOLE_FACTOR), { ok: true });
  });
});

t.test('policy: personal information', async (t) => {
  const person = {
    minLength: 15,
    email: 'marguerite.dubois@lavandula-outils.fr',
    accountName: 'Zephyrine Logistics',
    userName: 'Margot Kowalczyk',
  };

  t.test('the email local part is refused', async (t) => {
    const result = checkPasswordPolicy('MargueriteDubois orbit fjord', person);
    t.equal(codeOf(result), 'password_contains_personal_info');
    t.match(result, { reason: /your email address/ });
    t.equal(
      codeOf(checkPasswordPolicy('quasar marguerite tundra', person)),
      'password_contains_personal_info',
      'one piece of the local part is enough',
    );
  });

  t.test('a domain label is refused, the top-level domain is not', async (t) => {
    t.equal(
      codeOf(checkPasswordPolicy('quasar lavandula tundra', person)),
      'password_contains_personal_info',
    );
    t.equal(
      codeOf(checkPasswordPolicy('vellum quasar tundra info', { ...person, email: 'x@y.info' })),
      'ok',
    );
  });

  t.test('the account name and the user name are refused', async (t) => {
    const account = checkPasswordPolicy('zephyrine quasar tundra', person);
    t.equal(codeOf(account), 'password_contains_personal_info');
    t.match(account, { reason: /account name/ });
    const name = checkPasswordPolicy('quasar KOWALCZYK tundra', person);
    t.equal(codeOf(name), 'password_contains_personal_info');
    t.match(name, { reason: /your name/ });
  });

  t.test('short personal tokens are not matched by containment', async (t) => {
    t.same(checkPasswordPolicy('vellum quasar tundra obliged', { ...person, userName: 'Ob Li' }), {
      ok: true,
    });
  });

  t.test('without personal words the same passphrase passes', async (t) => {
    t.same(checkPasswordPolicy('quasar marguerite tundra', SOLE_FACTOR), { ok: true });
  });
});

t.test('passwordAge', async (t) => {
  const changedAt = new Date('2025-01-01T12:00:00Z');
  const at = (iso: string) => new Date(iso);

  t.same(passwordAge(changedAt, at('2025-01-01T12:00:00Z'), 90), {
    passwordChangedAt: '2025-01-01T12:00:00.000Z',
    passwordAgeDays: 0,
    passwordChangeRecommended: false,
  });
  t.equal(
    passwordAge(changedAt, at('2025-01-02T11:59:59Z'), 90).passwordAgeDays,
    0,
    'not a full day',
  );
  t.equal(passwordAge(changedAt, at('2025-01-02T12:00:00Z'), 90).passwordAgeDays, 1);

  const day90 = passwordAge(changedAt, at('2025-04-01T12:00:00Z'), 90);
  t.equal(day90.passwordAgeDays, 90);
  t.equal(day90.passwordChangeRecommended, false, 'exactly maxAgeDays is not over it');

  const day91 = passwordAge(changedAt, at('2025-04-02T12:00:00Z'), 90);
  t.equal(day91.passwordAgeDays, 91);
  t.equal(day91.passwordChangeRecommended, true);

  t.equal(
    passwordAge(changedAt, at('2035-01-01T12:00:00Z'), 0).passwordChangeRecommended,
    false,
    'maxAgeDays 0 disables the recommendation',
  );
  t.equal(passwordAge(changedAt, at('2024-12-31T12:00:00Z'), 90).passwordAgeDays, 0, 'clock skew');
  t.throws(() => passwordAge(changedAt, at('2025-01-02T00:00:00Z'), -1), RangeError);
  t.throws(() => passwordAge(new Date('nonsense'), at('2025-01-02T00:00:00Z'), 90), RangeError);
});
