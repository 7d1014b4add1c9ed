import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';

/** Runs loadConfig and returns the ConfigError it throws (fails the test otherwise). */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

t.test('bad values throw a ConfigError naming every bad variable', async (t) => {
  const err = configError({
    PORT: 'abc',
    DATABASE_URL: 'mysql://x',
    TLS_CERT_FILE: '/etc/custodian/cert.pem',
    HOST: 'localhost',
  });
  t.equal(err.name, 'ConfigError');
  t.type(err, Error);
  const named = err.problems.map((p) => p.split(':')[0]).sort();
  t.same(named, ['DATABASE_URL', 'PORT', 'TLS_KEY_FILE'], 'each bad variable, and only those');
  for (const variable of ['PORT', 'DATABASE_URL', 'TLS_KEY_FILE']) {
    t.match(err.message, new RegExp(`^  - ${variable}: \\S`, 'm'), `the message names ${variable}`);
  }
  t.match(err.message, /^Invalid configuration:/);
});

t.test('a key without its certificate is named the other way round', async (t) => {
  const err = configError({ TLS_KEY_FILE: '/etc/custodian/key.pem' });
  t.same(
    err.problems.map((p) => p.split(':')[0]),
    ['TLS_CERT_FILE'],
  );
  t.match(err.message, /set together/);
});

t.test('out-of-range and malformed values are refused', async (t) => {
  const cases: Record<string, string> = {
    PORT: '70000',
    BODY_LIMIT_BYTES: '10',
    DB_POOL_MAX: '0',
    LOG_LEVEL: 'loud',
    LOG_PRETTY: 'maybe',
    MIGRATE_ON_START: 'sometimes',
    NODE_ENV: 'staging',
    PUBLIC_BASE_URL: 'not a url',
    RATE_LIMIT_MAX: '-1',
  };
  for (const [variable, value] of Object.entries(cases)) {
    const err = configError({ [variable]: value });
    t.same(
      err.problems.map((p) => p.split(':')[0]),
      [variable],
      `${variable}=${value} is refused by name`,
    );
  }
});

t.test('errors do not echo secret values', async (t) => {
  const err = configError({ DATABASE_URL: 'mysql://admin:s3cr3t-pw@db.internal/app' });
  t.match(err.message, /DATABASE_URL/);
  t.notOk(err.message.includes('s3cr3t-pw'), 'the password in the URL is not repeated');
});

t.test('the configuration is frozen', async (t) => {
  const config = loadConfig({});
  t.ok(Object.isFrozen(config));
  t.throws(() => {
    (config as { PORT: number }).PORT = 1;
  }, TypeError);
  t.equal(config.PORT, 3000);
});

t.test('defaults are sensible', async (t) => {
  const config = loadConfig({});
  t.match(config, {
    NODE_ENV: 'development',
    HOST: '127.0.0.1', // not reachable from outside unless asked for
    PORT: 3000,
    LOG_LEVEL: 'info',
    LOG_PRETTY: false,
    DATA_DIR: './data',
    RATE_LIMIT_MAX: 600,
    RATE_LIMIT_WINDOW: '1 minute',
    HSTS_MAX_AGE_SECONDS: 31_536_000,
    BODY_LIMIT_BYTES: 1_048_576,
  });
  t.equal(config.DATABASE_URL, undefined, 'the embedded engine unless told otherwise');
  t.equal(config.MIGRATE_ON_START, undefined, 'the migration default depends on the engine');
  t.equal(config.TLS_CERT_FILE, undefined);
  t.equal(config.REDIS_URL, undefined);
  t.equal(config.DB_QUERY_TIMEOUT_MS, undefined, 'the pool derives it from the statement timeout');
  // Fastify and node-postgres wait forever by default: every timeout must be finite.
  // Receiving a request is bounded too, but long enough for a streamed bulk import (which is
  // written while its body arrives); a stalled connection is dropped by the idle timeout.
  t.ok(
    config.IMPORT_BODY_TIMEOUT_MS >= 600_000 && config.IMPORT_BODY_TIMEOUT_MS <= 3_600_000,
    `IMPORT_BODY_TIMEOUT_MS is finite and fits a long import (${config.IMPORT_BODY_TIMEOUT_MS} ms)`,
  );
  t.ok(config.MAX_CONNECTIONS > 0, `connections are capped (${config.MAX_CONNECTIONS})`);
  for (const key of [
    'BODY_TIMEOUT_MS',
    'CONNECTION_TIMEOUT_MS',
    'KEEP_ALIVE_TIMEOUT_MS',
    'SHUTDOWN_GRACE_MS',
    'DB_CONNECTION_TIMEOUT_MS',
    'DB_STATEMENT_TIMEOUT_MS',
  ] as const) {
    t.ok(config[key] > 0 && config[key] <= 120_000, `${key} is finite (${config[key]} ms)`);
  }
  t.ok(config.DB_POOL_MAX >= 1 && config.DB_POOL_MAX <= 100, 'a bounded pool');
});

t.test('values are parsed into their types', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    LOG_PRETTY: 'yes',
    MIGRATE_ON_START: 'off',
    DATABASE_URL: '  postgresql://app@db:5432/custodian  ',
    REDIS_URL: '   ',
    TLS_CERT_FILE: '/c.pem',
    TLS_KEY_FILE: '/k.pem',
  });
  t.equal(config.PORT, 8080);
  t.equal(config.LOG_PRETTY, true);
  t.equal(config.MIGRATE_ON_START, false);
  t.equal(config.DATABASE_URL, 'postgresql://app@db:5432/custodian', 'trimmed');
  t.equal(config.REDIS_URL, undefined, 'blank means unset');
  t.equal(config.TLS_CERT_FILE, '/c.pem');
  t.equal(config.TLS_KEY_FILE, '/k.pem');
});

t.test('loadConfig reads only the environment it is given', async (t) => {
  const saved = process.env.PORT;
  process.env.PORT = 'not-a-port';
  t.teardown(() => {
    if (saved === undefined) delete process.env.PORT;
    else process.env.PORT = saved;
  });
  t.equal(loadConfig({ PORT: '4000' }).PORT, 4000);
  t.throws(() => loadConfig(), ConfigError, 'and process.env by default');
});

t.test('TRUST_PROXY is parsed into what it means', async (t) => {
  const parsed = (value?: string) => loadConfig({ TRUST_PROXY: value }).TRUST_PROXY;
  t.equal(parsed(undefined), false);
  t.equal(parsed(''), false, 'blank means unset');
  t.equal(parsed('false'), false);
  t.equal(parsed('0'), false, 'zero hops: no proxy');
  t.equal(parsed('true'), true);
  t.equal(parsed('1'), 1, 'a hop count is a number, not the address "1"');
  t.equal(parsed(' 2 '), 2);
  t.same(parsed('10.0.0.0/8'), ['10.0.0.0/8'], 'a CIDR');
  t.same(
    parsed('10.0.0.1, 192.168.0.0/16,fd00::/8 , loopback'),
    ['10.0.0.1', '192.168.0.0/16', 'fd00::/8', 'loopback'],
    'a comma-separated list of addresses, CIDRs and range names',
  );
  for (const bad of [
    'yes',
    'banana',
    '10.0.0.0/33',
    '10.0.0.1/',
    '-1',
    '1.5',
    '101',
    '10.0.0.1,,',
  ]) {
    const err = configError({ TRUST_PROXY: bad });
    t.same(
      err.problems.map((p) => p.split(':')[0]),
      ['TRUST_PROXY'],
      `${JSON.stringify(bad)} stops the start`,
    );
    t.match(err.message, /hop count/);
  }
});

t.test('an ordinary body may not take longer than an import', async (t) => {
  const err = configError({ BODY_TIMEOUT_MS: '60000', IMPORT_BODY_TIMEOUT_MS: '30000' });
  t.same(
    err.problems.map((p) => p.split(':')[0]),
    ['BODY_TIMEOUT_MS'],
  );
  t.equal(
    loadConfig({ BODY_TIMEOUT_MS: '60000', IMPORT_BODY_TIMEOUT_MS: '0' }).BODY_TIMEOUT_MS,
    60_000,
  );
  t.equal(loadConfig({ MAX_CONNECTIONS: '0' }).MAX_CONNECTIONS, 0, '0: no cap');
});

t.test('DATABASE_SCHEMA must be a plain SQL identifier (it goes into search_path)', async (t) => {
  t.equal(loadConfig({}).DATABASE_SCHEMA, 'public');
  t.equal(loadConfig({ DATABASE_SCHEMA: 'custodian_eu' }).DATABASE_SCHEMA, 'custodian_eu');
  for (const bad of ['public; drop table contacts', 'Custodian', '1st', 'a-b']) {
    const err = configError({ DATABASE_SCHEMA: bad });
    t.same(
      err.problems.map((p) => p.split(':')[0]),
      ['DATABASE_SCHEMA'],
      `refused: ${bad}`,
    );
  }
});

t.test('a variable set under its old name stops the start, naming the new one', async (t) => {
  const err = configError({ REQUEST_TIMEOUT_MS: '7200000' });
  t.match(err.problems, [
    'REQUEST_TIMEOUT_MS: was renamed IMPORT_BODY_TIMEOUT_MS; set that instead',
  ]);
  t.equal(
    loadConfig({ REQUEST_TIMEOUT_MS: '' }).IMPORT_BODY_TIMEOUT_MS,
    3_600_000,
    'empty is unset',
  );
});

t.test('AUDIT_SIGNING_KEY: an Ed25519 PKCS#8 PEM, required in production', async (t) => {
  const production = {
    NODE_ENV: 'production',
    JWT_SECRET: 'production-jwt-secret-0123456789abcdef',
    HASH_SECRET: 'production-hash-secret-0123456789abcdef',
    WEBHOOK_SECRET_KEY: 'cHJvZHVjdGlvbi13ZWJob29rLXNlY3JldC1rZXktMDE=',
  };
  const err = configError(production);
  t.same(
    err.problems,
    ['AUDIT_SIGNING_KEY: is required in production'],
    'production without a key does not start',
  );

  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  for (const [form, value] of Object.entries({
    PEM: pem,
    'base64 of the PEM': Buffer.from(pem).toString('base64'),
    'PEM with \\n for line breaks': pem.replaceAll('\n', '\\n'),
  })) {
    const key = loadConfig({ ...production, AUDIT_SIGNING_KEY: value }).AUDIT_SIGNING_KEY;
    t.equal(key?.asymmetricKeyType, 'ed25519', `${form} is read`);
    t.ok(key?.equals(privateKey), `${form}: the same key`);
  }
  t.equal(loadConfig({}).AUDIT_SIGNING_KEY, undefined, 'optional outside production');

  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  for (const [what, value] of Object.entries({
    'an RSA key': rsa,
    'the public half': createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }),
    'a word': 'not-a-key-s3cr3t',
  })) {
    const bad = configError({ ...production, AUDIT_SIGNING_KEY: value.toString() });
    t.same(
      bad.problems.map((p) => p.split(':')[0]),
      ['AUDIT_SIGNING_KEY'],
      `${what} is refused`,
    );
    t.match(bad.message, /Ed25519/);
    const body = value.toString().split('\n')[1] ?? value.toString();
    t.notOk(bad.message.includes(body.slice(0, 24)), 'the value is not echoed');
  }
});

t.test('audit checkpoint cadence: defaults, and 0 turns each off', async (t) => {
  const config = loadConfig({});
  t.equal(config.AUDIT_CHECKPOINT_EVERY, 100);
  t.equal(config.AUDIT_CHECKPOINT_INTERVAL_MS, 3_600_000);
  const off = loadConfig({ AUDIT_CHECKPOINT_EVERY: '0', AUDIT_CHECKPOINT_INTERVAL_MS: '0' });
  t.equal(off.AUDIT_CHECKPOINT_EVERY, 0);
  t.equal(off.AUDIT_CHECKPOINT_INTERVAL_MS, 0);
  const err = configError({ AUDIT_CHECKPOINT_EVERY: '-1', AUDIT_CHECKPOINT_INTERVAL_MS: 'hourly' });
  t.same(err.problems.map((p) => p.split(':')[0]).sort(), [
    'AUDIT_CHECKPOINT_EVERY',
    'AUDIT_CHECKPOINT_INTERVAL_MS',
  ]);
});

t.test('webhooks: the secret key, private targets, and the retry settings', async (t) => {
  const production = {
    NODE_ENV: 'production',
    JWT_SECRET: 'production-jwt-secret-0123456789abcdef',
    HASH_SECRET: 'production-hash-secret-0123456789abcdef',
    AUDIT_SIGNING_KEY: generateKeyPairSync('ed25519')
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString(),
  };
  t.same(
    configError(production).problems,
    ['WEBHOOK_SECRET_KEY: is required in production'],
    'production without a webhook key does not start',
  );
  const key = Buffer.alloc(32, 7);
  for (const form of ['base64', 'base64url'] as const) {
    const config = loadConfig({ ...production, WEBHOOK_SECRET_KEY: key.toString(form) });
    t.ok(config.WEBHOOK_SECRET_KEY?.equals(key), `${form} is read`);
  }
  t.equal(loadConfig({}).WEBHOOK_SECRET_KEY, undefined, 'optional outside production');
  for (const bad of ['short', Buffer.alloc(31).toString('base64'), 'not base64 at all!!']) {
    const err = configError({ WEBHOOK_SECRET_KEY: bad });
    t.same(
      err.problems.map((p) => p.split(':')[0]),
      ['WEBHOOK_SECRET_KEY'],
    );
    t.notOk(err.message.includes(bad), 'the value is not echoed');
  }

  const allowed = { ...production, WEBHOOK_SECRET_KEY: key.toString('base64') };
  t.same(
    configError({ ...allowed, WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' }).problems.map(
      (p) => p.split(':')[0],
    ),
    ['WEBHOOK_ALLOW_PRIVATE_TARGETS'],
    'private targets are refused in production',
  );
  t.equal(
    loadConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true' }).WEBHOOK_ALLOW_PRIVATE_TARGETS,
    true,
  );

  const defaults = loadConfig({});
  t.match(defaults, {
    WORKER: undefined,
    WEBHOOK_TIMEOUT_MS: 10_000,
    WEBHOOK_BACKOFF_BASE_MS: 30_000,
    WEBHOOK_BACKOFF_MAX_MS: 43_200_000,
    WEBHOOK_RETRY_FOR_MS: 259_200_000,
    WEBHOOK_LEASE_SECONDS: 60,
  });
  t.equal(loadConfig({ WORKER: 'off' }).WORKER, 'off');
  const err = configError({
    WORKER: 'sometimes',
    WEBHOOK_LEASE_SECONDS: '5',
    WEBHOOK_BACKOFF_BASE_MS: '1000',
    WEBHOOK_BACKOFF_MAX_MS: '10',
  });
  t.same(err.problems.map((p) => p.split(':')[0]).sort(), [
    'WEBHOOK_BACKOFF_MAX_MS',
    'WEBHOOK_LEASE_SECONDS',
    'WORKER',
  ]);
});
