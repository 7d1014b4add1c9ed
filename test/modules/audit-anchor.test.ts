import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { type Kysely, sql } from 'kysely';
import t from 'tap';
import type { DB } from '../../src/db/schema.js';
import { recordAudit, verifyAuditChain } from '../../src/modules/audit/audit.service.js';
import { bearer, createApiKey, type SignedUp, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';

async function verifyChain(app: FastifyInstance, owner: SignedUp) {
  const res = await app.inject({
    method: 'GET',
    url: '/v1/audit-events/verify',
    headers: bearer(owner.accessToken),
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
  return res.json();
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

t.test('new entries are hashed with their id, so an id cannot be swapped', async (t) => {
  const app = await build(t);
  const owner = await signup(app);
  await createApiKey(app, owner, ['audit:read']);
  const db = app.database.db;
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
  const db = app.database.db;
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
