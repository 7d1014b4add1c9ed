import t from 'tap';
import type { Database } from '../../src/db/database.js';
import { createConsentsService } from '../../src/modules/consents/consents.service.js';
import type { RequestContext } from '../../src/modules/identity/actor.js';
import { createPurposesService } from '../../src/modules/purposes/purposes.service.js';
import { build } from '../helper.js';
import { consentWorld, insertContact } from './consents-fixtures.js';

/**
 * A data-subject request must record its consent change, close itself and audit it in one
 * transaction: the transaction-bound service functions (`recordIn`, `createIn`, …) write
 * nothing of their own and commit or roll back with the caller's transaction.
 */

async function counts(database: Database, accountId: string, contactId: string) {
  const { owner: db } = database;
  const one = async (table: 'consent_events' | 'consent_tokens' | 'events') =>
    Number(
      (
        await db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .where('account_id', '=', accountId)
          .where('contact_id', '=', contactId)
          .executeTakeFirstOrThrow()
      ).n,
    );
  const audit = await db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('account_id', '=', accountId)
    .where('entity_id', '=', contactId)
    .executeTakeFirstOrThrow();
  return {
    ledger: await one('consent_events'),
    links: await one('consent_tokens'),
    feed: await one('events'),
    audit: Number(audit.n),
  };
}

t.test('recordIn writes in the caller’s transaction, and only there', async (t) => {
  const app = await build(t);
  const { owner, purposeId } = await consentWorld(app);
  const contactId = await insertContact(app, owner.accountId);
  const { owner: db } = app.database;
  const consents = createConsentsService({
    db,
    hashSecret: 'a-test-hash-secret-of-some-length',
    confirmationTtlHours: 72,
  });
  const ctx: RequestContext = {
    actor: {
      type: 'user',
      id: owner.userId,
      accountId: owner.accountId,
      role: 'owner',
      sessionId: '00000000-0000-4000-8000-000000000000',
    },
    requestId: 'req-consents-transaction',
    ip: '127.0.0.1',
  };
  const grant = {
    purposeId,
    noticeVersion: 1,
    event: 'granted' as const,
    method: 'double_opt_in' as const,
    legalBasis: 'consent' as const,
    evidence: {},
  };

  await t.rejects(
    db.transaction().execute(async (trx) => {
      const recorded = await consents.recordIn(trx, ctx, owner.accountId, contactId, grant);
      t.equal(recorded.state, 'pending');
      t.ok(recorded.confirmation?.url, 'a confirmation link is issued');
      throw new Error('the caller fails after recording');
    }),
    { message: /^the caller fails/ },
  );
  t.same(
    await counts(app.database, owner.accountId, contactId),
    { ledger: 0, links: 0, feed: 0, audit: 0 },
    'the caller’s rollback takes the event, its links, its feed event and its audit entry',
  );

  await db.transaction().execute(async (trx) => {
    await consents.recordIn(trx, ctx, owner.accountId, contactId, grant);
    await consents.recordIn(trx, ctx, owner.accountId, contactId, {
      ...grant,
      event: 'withdrawn',
      method: 'api',
    });
  });
  t.same(
    await counts(app.database, owner.accountId, contactId),
    { ledger: 2, links: 2, feed: 2, audit: 2 },
    'two recordings in one transaction commit together',
  );
  const ledger = await consents.ledger(owner.accountId, contactId, { limit: 10 });
  t.equal(ledger.current[0]?.state, 'withdrawn', 'the later event of the transaction is newest');
});

t.test('purposes: createIn and createNoticeIn roll back with the caller', async (t) => {
  const app = await build(t);
  const { owner } = await consentWorld(app);
  const { owner: db } = app.database;
  const purposes = createPurposesService({ db });
  const ctx: RequestContext = {
    actor: {
      type: 'user',
      id: owner.userId,
      accountId: owner.accountId,
      role: 'owner',
      sessionId: '00000000-0000-4000-8000-000000000000',
    },
    requestId: 'req-purposes-transaction',
    ip: '127.0.0.1',
  };
  await t.rejects(
    db.transaction().execute(async (trx) => {
      const purpose = await purposes.createIn(trx, ctx, owner.accountId, {
        key: 'rolled-back',
        name: 'Rolled back',
      });
      await purposes.createNoticeIn(trx, ctx, owner.accountId, purpose.id, {
        text: 'A notice that never was.',
        language: 'en',
      });
      throw new Error('the caller fails');
    }),
    { message: /^the caller fails/ },
  );
  const page = await purposes.list(owner.accountId, { limit: 10 });
  t.same(
    page.rows.map((row) => row.key),
    ['newsletter'],
    'only the purpose committed before is there',
  );
  const audited = await db
    .selectFrom('audit_events')
    .select('action')
    .where('account_id', '=', owner.accountId)
    .where('action', 'in', ['purpose.created', 'notice_version.created'])
    .execute();
  t.equal(audited.length, 2, 'only the committed purpose and its notice are audited');
});
