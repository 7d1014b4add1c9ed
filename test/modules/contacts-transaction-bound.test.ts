import t from 'tap';
import { createContactsService } from '../../src/modules/contacts/contacts.service.js';
import type { RequestContext } from '../../src/modules/identity/actor.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build, testConfig } from '../helper.js';

/**
 * A data-subject request must erase, restrict or export a contact inside its own transaction:
 * the *InTrx functions run in the caller's transaction, so a rollback there undoes them.
 */
t.test('erase, restrict, update and export run in the caller transaction', async (t) => {
  const app = await build(t);
  const db = app.database.owner;
  const owner = await signup(app);
  const created = await app.inject({
    method: 'POST',
    url: '/v1/contacts',
    headers: bearer(owner.accessToken),
    payload: { email: 'bound@example.com' },
  });
  t.equal(created.statusCode, 201, created.body);
  const id: string = created.json().id;
  let erasedCalls = 0;
  const contacts = createContactsService({
    db,
    hashSecret: testConfig().HASH_SECRET!,
    onErased: () => erasedCalls++,
  });
  const ctx: RequestContext = {
    actor: {
      type: 'user',
      id: owner.userId,
      accountId: owner.accountId,
      role: 'owner',
      sessionId: 'test',
    },
    requestId: 'req-transaction-bound',
    ip: '203.0.113.9',
  };
  const rollback = new Error('rollback');
  const audited = async () =>
    (
      await db.selectFrom('audit_events').select('action').where('entity_id', '=', id).execute()
    ).map((row) => row.action);
  const before = await audited();

  await t.rejects(
    db.transaction().execute(async (trx) => {
      const restricted = await contacts.restrictInTrx(trx, ctx, owner.accountId, id, 'asked');
      t.ok(restricted.restricted_at, 'restricted inside the transaction');
      const exported = await contacts.exportDataInTrx(trx, ctx, owner.accountId, id, false);
      t.equal(exported.contact.email, 'bound@example.com');
      await contacts.updateInTrx(trx, ctx, owner.accountId, id, { firstName: 'Bound' });
      await contacts.eraseInTrx(trx, ctx, owner.accountId, id);
      const gone = await trx.selectFrom('contacts').select('id').where('id', '=', id).execute();
      t.same(gone, [], 'erased inside the transaction');
      throw rollback;
    }),
    rollback,
  );
  const row = await db.selectFrom('contacts').selectAll().where('id', '=', id).executeTakeFirst();
  t.ok(row, 'the rollback brought the contact back');
  t.equal(row?.restricted_at, null, 'and undid the restriction');
  t.equal(row?.first_name, null, 'and the update');
  t.same(await audited(), before, 'and every audit entry');
  const suppressed = await db.selectFrom('suppressions').select('email_hash').execute();
  t.same(suppressed, [], 'nothing was suppressed');
  t.equal(erasedCalls, 0, 'no vacuum was requested for a rolled-back erasure');

  await contacts.erase(ctx, owner.accountId, id);
  t.equal(erasedCalls, 1, 'the public erase requests the vacuum after its commit');
  const after = await db.selectFrom('contacts').select('id').where('id', '=', id).execute();
  t.same(after, [], 'the public erase commits');
});
