import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { type Kysely, sql } from 'kysely';
import { pino } from 'pino';
import t from 'tap';
import type { DB } from '../../src/db/schema.js';
import { entryHash } from '../../src/modules/audit/audit.repository.js';
import { recordAudit, verifyAuditChain } from '../../src/modules/audit/audit.service.js';
import { addUser, bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

interface Checkpoint {
  accountId: string;
  seq: number;
  hash: string;
  at: string;
  keyId: string;
  signature: string;
  publicKey: string;
}

async function checkpoints(app: FastifyInstance, owner: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/checkpoints?limit=200',
    headers: bearer(owner.accessToken),
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json() as { data: Checkpoint[]; nextCursor: string | null } & {
    keyId: string;
    publicKey: string;
  };
}

async function verifyChain(app: FastifyInstance, owner: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json();
}

async function checkpointNow(app: FastifyInstance, token: string) {
  return app.inject({
    method: 'POST',
    url: '/v1/audit-events/checkpoints',
    headers: bearer(token),
  });
}

async function entries(db: Kysely<DB>, accountId: string) {
  return db
    .selectFrom('audit_events')
    .selectAll()
    .where('account_id', '=', accountId)
    .orderBy('seq')
    .execute();
}

/** Runs `change` as someone with direct access to the database, past the append-only trigger. */
async function behindTheApi(db: Kysely<DB>, change: () => Promise<unknown>) {
  await sql`alter table audit_events disable trigger audit_events_no_update_delete`.execute(db);
  try {
    await change();
  } finally {
    await sql`alter table audit_events enable trigger audit_events_no_update_delete`.execute(db);
  }
}

/** The message a checkpoint signs, written out here, independently of the service's code. */
function signedMessage(c: { accountId: string; seq: number; hash: string; at: string }) {
  return Buffer.from(
    `{"accountId":"${c.accountId}","seq":${c.seq},"hash":"${c.hash}","at":"${c.at}"}`,
    'utf8',
  );
}

function keyIdOf(publicKeyPem: string) {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// First in the file: the generated key belongs to the process, so only the first app makes it.
t.test('without AUDIT_SIGNING_KEY a key is made once per process, with one warning', async (t) => {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const first = await build(t, { logger });
  const second = await build(t, { logger });
  const owner = await signup(first);
  const a = await checkpoints(first, owner);
  const b = await checkpoints(second, owner);
  t.equal(a.keyId, b.keyId, 'both apps of the process sign with one key');
  t.equal(a.keyId, keyIdOf(a.publicKey));
  t.equal(lines.filter((line) => line.includes('AUDIT_SIGNING_KEY')).length, 1, 'one warning');

  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const configured = await build(t, { env: { AUDIT_SIGNING_KEY: pem } });
  const c = await checkpoints(configured, owner);
  t.equal(c.publicKey, publicKey.export({ type: 'spki', format: 'pem' }).toString());
  t.not(c.keyId, a.keyId, 'a configured key replaces the generated one');
});

t.test('new entries are hashed with their id, so an id cannot be swapped', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  await createApiKey(app, owner, ['audit:read']);
  const db = app.database.owner;
  for (const row of await entries(db, owner.accountId)) {
    t.equal(row.hash_version, 2);
    const material = JSON.stringify([
      2,
      row.id,
      row.account_id,
      row.seq,
      row.occurred_at.toISOString(),
      row.actor_type,
      row.actor_id,
      row.action,
      row.entity_type,
      row.entity_id,
      row.request_id,
      row.ip,
      row.changed_fields,
      row.prev_hash,
    ]);
    t.equal(row.hash, createHash('sha256').update(material).digest('hex'), `seq ${row.seq}`);
  }
  t.equal((await verifyChain(app, owner)).valid, true);

  const swapped = randomUUID();
  await behindTheApi(db, () =>
    db
      .updateTable('audit_events')
      .set({ id: swapped })
      .where('account_id', '=', owner.accountId)
      .where('seq', '=', 2)
      .execute(),
  );
  const result = await verifyChain(app, owner);
  t.equal(result.valid, false);
  t.same(result.firstBroken, { seq: 2, id: swapped, reason: 'hash_mismatch' });
});

t.test('version-1 entries still verify; one after a version-2 entry is a break', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const accountId = randomUUID();
  // Entries as the previous release wrote them: no hash_version (the column default, 1), and
  // the version-1 hash, which leaves the id out.
  let prevHash = '0'.repeat(64);
  const legacy = async (seq: number) => {
    const fields = {
      account_id: accountId,
      seq,
      occurred_at: new Date(Date.UTC(2026, 10, 25, 12, 0, seq)),
      actor_type: 'user',
      actor_id: randomUUID(),
      action: 'contact.updated',
      entity_type: 'contact',
      entity_id: randomUUID(),
      request_id: `req-${seq}`,
      ip: '192.0.2.1',
      changed_fields: ['firstName'],
      prev_hash: prevHash,
    };
    const hash = createHash('sha256')
      .update(
        JSON.stringify([
          fields.account_id,
          fields.seq,
          fields.occurred_at.toISOString(),
          fields.actor_type,
          fields.actor_id,
          fields.action,
          fields.entity_type,
          fields.entity_id,
          fields.request_id,
          fields.ip,
          fields.changed_fields,
          fields.prev_hash,
        ]),
      )
      .digest('hex');
    await db
      .insertInto('audit_events')
      .values({ ...fields, hash })
      .execute();
    prevHash = hash;
  };
  await legacy(1);
  await legacy(2);
  const ctx = {
    actor: {
      type: 'user' as const,
      id: randomUUID(),
      accountId,
      role: 'owner' as const,
      sessionId: randomUUID(),
    },
    requestId: 'req-3',
    ip: '192.0.2.1',
  };
  const appended = await db
    .transaction()
    .execute((trx) =>
      recordAudit(trx, ctx, { action: 'contact.updated', entityType: 'contact', entityId: null }),
    );
  t.equal(appended.seq, 3);
  const versions = (await entries(db, accountId)).map((row) => row.hash_version);
  t.same(versions, [1, 1, 2], 'the old rows keep version 1; the new one is version 2');
  const intact = await verifyAuditChain(db, accountId);
  t.same(
    { valid: intact.valid, checked: intact.checked, firstBroken: intact.firstBroken },
    { valid: true, checked: 3, firstBroken: null },
  );

  prevHash = appended.hash;
  await legacy(4);
  const downgraded = await verifyAuditChain(db, accountId);
  t.equal(downgraded.valid, false);
  t.equal(downgraded.firstBroken?.seq, 4);
  t.equal(downgraded.firstBroken?.reason, 'hash_version_downgrade');
  t.equal(downgraded.lastSeq, 3);
});

t.test('every AUDIT_CHECKPOINT_EVERY entries, a checkpoint in the same transaction', async (t) => {
  const app = await build(t, { env: { AUDIT_CHECKPOINT_EVERY: '3' } });
  const owner = await signup(app);
  for (let i = 0; i < 5; i++) await createApiKey(app, owner, ['contacts:read']);
  const db = app.database.owner;
  const chain = await entries(db, owner.accountId);
  t.equal(chain.length, 7);
  const page = await checkpoints(app, owner);
  t.same(
    page.data.map((c) => c.seq),
    [6, 3],
    'at seq 3 and 6, newest first',
  );
  for (const c of page.data) {
    t.equal(c.hash, chain[c.seq - 1]!.hash, `checkpoint ${c.seq} holds that entry's hash`);
    t.equal(c.accountId, owner.accountId);
  }

  // Two more appends would reach seq 9; rolled back, they leave no checkpoint either.
  const ctx = {
    actor: {
      type: 'user' as const,
      id: owner.userId,
      accountId: owner.accountId,
      role: 'owner' as const,
      sessionId: randomUUID(),
    },
    requestId: 'req-rollback',
    ip: '192.0.2.1',
  };
  await t.rejects(
    db.transaction().execute(async (trx) => {
      for (let i = 0; i < 2; i++) {
        await recordAudit(trx, ctx, { action: 'test.noop', entityType: 'test', entityId: null });
      }
      const inside = await trx
        .selectFrom('audit_checkpoints')
        .select('seq')
        .where('account_id', '=', owner.accountId)
        .where('seq', '=', 9)
        .execute();
      t.equal(inside.length, 1, 'seq 9 is checkpointed inside the appending transaction');
      throw new Error('roll back');
    }),
    /roll back/,
  );
  t.same(
    (await checkpoints(app, owner)).data.map((c) => c.seq),
    [6, 3],
    'and rolled back with it',
  );
  t.equal((await verifyChain(app, owner)).checkpoint.seq, 6);
});

t.test('on demand: owners and admins sign the head now; members and keys may not', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const admin = await addUser(app, owner, 'admin');
  const member = await addUser(app, owner, 'member');
  const key = await createApiKey(app, owner, ['audit:read']);
  const head = (await verifyChain(app, owner)).lastSeq;

  const made = await checkpointNow(app, owner.accessToken);
  t.equal(made.statusCode, 201, 'a new checkpoint');
  t.match(made.json(), { accountId: owner.accountId, seq: head });
  const again = await checkpointNow(app, admin.accessToken);
  t.equal(again.statusCode, 200, 'the head has one already: that one');
  t.same(again.json(), made.json());

  const asMember = await checkpointNow(app, member.accessToken);
  t.equal(asMember.statusCode, 403);
  t.equal(asMember.json().code, 'role_forbidden');
  const asKey = await app.inject({
    method: 'POST',
    url: '/v1/audit-events/checkpoints',
    headers: { 'x-api-key': key.key },
  });
  t.equal(asKey.statusCode, 403);
  t.equal(asKey.json().code, 'missing_scope');
  const listedByKey = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/checkpoints',
    headers: { 'x-api-key': key.key },
  });
  t.equal(listedByKey.statusCode, 200, 'audit:read lists them');
  t.same(listedByKey.json().data, [made.json()]);

  const verified = await verifyChain(app, owner);
  t.equal(verified.valid, true);
  t.same(verified.checkpoint, {
    seq: head,
    hash: made.json().hash,
    at: made.json().at,
    keyId: made.json().keyId,
    signedWithCurrentKey: true,
  });
  t.equal(
    verified.lastSeq,
    head,
    'signing a checkpoint is not itself an entry (the head stays put)',
  );
});

t.test('the list pages newest first with a cursor', async (t) => {
  const app = await build(t, { env: { AUDIT_CHECKPOINT_EVERY: '1' } });
  const owner = await signup(app);
  for (let i = 0; i < 3; i++) await createApiKey(app, owner, ['contacts:read']);
  const first = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/checkpoints?limit=3',
    headers: bearer(owner.accessToken),
  });
  t.same(
    first.json().data.map((c: Checkpoint) => c.seq),
    [5, 4, 3],
  );
  const second = await app.inject({
    method: 'GET',
    url: `/v1/audit-events/checkpoints?limit=3&cursor=${first.json().nextCursor}`,
    headers: bearer(owner.accessToken),
  });
  t.same(
    second.json().data.map((c: Checkpoint) => c.seq),
    [2, 1],
  );
  t.equal(second.json().nextCursor, null);
});

t.test('the sweep checkpoints the chains that grew, and only those', async (t) => {
  const app = await build(t, {
    env: { AUDIT_CHECKPOINT_EVERY: '0', AUDIT_CHECKPOINT_INTERVAL_MS: '100' },
  });
  const quiet = await signup(app);
  const busy = await signup(app);
  const headOf = async (owner: SignedUp) => (await verifyChain(app, owner)).lastSeq as number;
  const reaches = (owner: SignedUp, seq: number) =>
    until(`a checkpoint at ${seq}`, async () => {
      const page = await checkpoints(app, owner);
      return page.data[0]?.seq === seq ? page.data : undefined;
    });
  await reaches(quiet, await headOf(quiet));
  await reaches(busy, await headOf(busy));

  await createApiKey(app, busy, ['contacts:read']);
  const grown = await reaches(busy, await headOf(busy));
  t.equal(grown.length, 2, 'the busy chain got a second checkpoint');
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal((await checkpoints(app, quiet)).data.length, 1, 'the quiet chain got no other');
});

t.test('a checkpoint verifies with node:crypto and the published key alone', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  // The one-line form for env files: the PEM, base64-encoded.
  const app = await build(t, { env: { AUDIT_SIGNING_KEY: Buffer.from(pem).toString('base64') } });
  const owner = await signup(app);
  t.equal((await checkpointNow(app, owner.accessToken)).statusCode, 201);
  const page = await checkpoints(app, owner);
  const [checkpoint] = page.data;
  if (!checkpoint) throw new Error('no checkpoint');
  const ours = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  t.equal(page.publicKey, ours, 'the published key is the configured key’s public half');
  t.equal(checkpoint.publicKey, ours);
  t.equal(page.keyId, keyIdOf(ours));
  t.equal(checkpoint.keyId, page.keyId);
  t.match(checkpoint.at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

  const signature = Buffer.from(checkpoint.signature, 'base64');
  t.equal(signature.length, 64);
  t.ok(verify(null, signedMessage(checkpoint), createPublicKey(page.publicKey), signature));
  t.notOk(
    verify(null, signedMessage({ ...checkpoint, seq: checkpoint.seq + 1 }), publicKey, signature),
    'another claim does not verify',
  );

  // The example in the API document is a real checkpoint too.
  const doc = app.swagger() as {
    components: { schemas: Record<string, { example?: Checkpoint }> };
  };
  const example = doc.components.schemas.AuditCheckpoint?.example;
  if (!example) throw new Error('no example');
  t.ok(
    verify(
      null,
      signedMessage(example),
      createPublicKey(example.publicKey),
      Buffer.from(example.signature, 'base64'),
    ),
    'the documented example verifies',
  );
  t.equal(example.keyId, keyIdOf(example.publicKey));
});

t.test('a cut-off tail is reported at its first missing entry', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  for (let i = 0; i < 3; i++) await createApiKey(app, owner, ['contacts:read']);
  t.equal((await checkpointNow(app, owner.accessToken)).json().seq, 5);
  const db = app.database.owner;
  await behindTheApi(db, () =>
    db
      .deleteFrom('audit_events')
      .where('account_id', '=', owner.accountId)
      .where('seq', '>=', 4)
      .execute(),
  );
  const result = await verifyChain(app, owner);
  t.equal(result.valid, false);
  t.same(result.firstBroken, { seq: 4, id: null, reason: 'truncated' });
  t.equal(result.checked, 3);
  t.equal(result.lastSeq, 3);
  t.equal(result.checkpoint.seq, 5, 'names the checkpoint it was held against');
});

t.test('an entry removed and the rest re-hashed breaks at the next checkpoint', async (t) => {
  const app = await build(t, { env: { AUDIT_CHECKPOINT_EVERY: '3' } });
  const owner = await signup(app);
  for (let i = 0; i < 5; i++) await createApiKey(app, owner, ['contacts:read']);
  const db = app.database.owner;
  t.same(
    (await checkpoints(app, owner)).data.map((c) => c.seq),
    [6, 3],
  );

  // The attacker removes entry 2, moves the later ones up, and re-hashes them all with the
  // service's own formula: the chain links up again.
  await behindTheApi(db, async () => {
    await db
      .deleteFrom('audit_events')
      .where('account_id', '=', owner.accountId)
      .where('seq', '=', 2)
      .execute();
    for (let seq = 3; seq <= 7; seq++) {
      await db
        .updateTable('audit_events')
        .set({ seq: seq - 1 })
        .where('account_id', '=', owner.accountId)
        .where('seq', '=', seq)
        .execute();
    }
    let prevHash = (await entries(db, owner.accountId))[0]!.hash;
    for (const row of (await entries(db, owner.accountId)).slice(1)) {
      const hash = entryHash({ ...row, prev_hash: prevHash }, row.hash_version)!;
      await db
        .updateTable('audit_events')
        .set({ prev_hash: prevHash, hash })
        .where('account_id', '=', owner.accountId)
        .where('seq', '=', row.seq)
        .execute();
      prevHash = hash;
    }
  });
  const rewritten = await entries(db, owner.accountId);
  t.equal(rewritten.length, 6);

  const result = await verifyChain(app, owner);
  t.equal(result.valid, false);
  t.same(
    result.firstBroken,
    { seq: 3, id: rewritten[2]!.id, reason: 'checkpoint_mismatch' },
    'the first checkpoint after the removal',
  );
  t.equal(result.lastSeq, 2);
  t.equal(result.checkpoint.seq, 6);
});

t.test('checkpoints that do not verify, or come from another key, are shown', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  const db = app.database.owner;
  const [head] = (await entries(db, owner.accountId)).slice(-1);
  if (!head) throw new Error('no entries');

  // Someone with the database but not the key signs the head with a key of their own: it
  // verifies, but not with the key the service publishes.
  const forger = generateKeyPairSync('ed25519');
  const forgerPem = forger.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const at = '2026-12-03T18:00:00.000Z';
  const claim = { accountId: owner.accountId, seq: head.seq, hash: head.hash, at };
  await db
    .insertInto('audit_checkpoints')
    .values({
      account_id: owner.accountId,
      seq: head.seq,
      hash: head.hash,
      signed_at: new Date(at),
      key_id: keyIdOf(forgerPem),
      public_key: forgerPem,
      signature: sign(null, signedMessage(claim), forger.privateKey).toString('base64'),
    })
    .execute();
  const forged = await verifyChain(app, owner);
  t.equal(forged.valid, true);
  t.equal(forged.checkpoint.signedWithCurrentKey, false, 'not signed with the published key');

  // A checkpoint whose signature does not match what it claims.
  await createApiKey(app, owner, ['contacts:read']);
  const [next] = (await entries(db, owner.accountId)).slice(-1);
  await db
    .insertInto('audit_checkpoints')
    .values({
      account_id: owner.accountId,
      seq: next!.seq,
      hash: next!.hash,
      signed_at: new Date(at),
      key_id: keyIdOf(forgerPem),
      public_key: forgerPem,
      signature: sign(null, signedMessage(claim), forger.privateKey).toString('base64'),
    })
    .execute();
  const bad = await verifyChain(app, owner);
  t.equal(bad.valid, false);
  t.same(bad.firstBroken, { seq: next!.seq, id: next!.id, reason: 'checkpoint_signature' });
});

t.test('checkpoints are append-only at the database level', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  t.equal((await checkpointNow(app, owner.accessToken)).statusCode, 201);
  const db = app.database.owner;
  await t.rejects(
    db
      .updateTable('audit_checkpoints')
      .set({ hash: 'forged' })
      .where('account_id', '=', owner.accountId)
      .execute(),
    /append-only/,
  );
  await t.rejects(
    db.deleteFrom('audit_checkpoints').where('account_id', '=', owner.accountId).execute(),
    /append-only/,
  );
});

t.test('an account sees and signs only its own checkpoints', async (t) => {
  const app = await build(t);
  const a = await signup(app);
  const b = await signup(app);
  t.equal((await checkpointNow(app, a.accessToken)).statusCode, 201);
  t.same((await checkpoints(app, b)).data, [], 'none of A’s in B’s list');
  t.equal((await verifyChain(app, b)).checkpoint, null, 'nor in B’s verification');
  t.equal((await checkpointNow(app, b.accessToken)).json().accountId, b.accountId);
  const listA = await checkpoints(app, a);
  t.same(
    listA.data.map((c) => c.accountId),
    [a.accountId],
    'B’s checkpoint is not in A’s list',
  );
});
