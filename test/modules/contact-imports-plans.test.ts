import { CompiledQuery, type KyselyPlugin } from 'kysely';
import t from 'tap';
import {
  appendConsentsStatement,
  type ConsentAppend,
} from '../../src/modules/consents/consents.repository.js';
import { tuneBatchTransaction } from '../../src/modules/contact-imports/batch-writer.js';
import { build, testDatabase } from '../helper.js';
import {
  CONSENT,
  contactsOf,
  eventsOf,
  ndjson,
  upload,
  world,
} from './contact-imports-fixtures.js';

/**
 * How the bulk paths meet large tables: ids in creation order, and the consent append planned
 * as one index probe per row whatever the statistics say. Timing is for `npm run bench:data`;
 * these check the shapes that make the timing.
 */

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Join Type'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The creation time a UUIDv7 carries in its first 48 bits, in ms since the epoch. */
function millisOf(id: string): number {
  return Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}

t.test('contacts and consent events get UUIDv7 ids that follow creation order', async (t) => {
  const w = await world(t);
  const before = Date.now();
  const rows = (n: number, from: number) =>
    Array.from({ length: n }, (_, i) => ({
      email: `ordered${from + i}@example.com`,
      consent: CONSENT,
    }));
  const first = await upload(w, ndjson(rows(20, 0)));
  t.equal(first.statusCode, 201, first.body);
  await new Promise((resolve) => setTimeout(resolve, 5));
  const second = await upload(w, ndjson(rows(20, 20)));
  t.equal(second.statusCode, 201, second.body);
  const after = Date.now();

  const contacts = await contactsOf(w);
  const events = await eventsOf(w);
  t.equal(contacts.length, 40);
  t.equal(events.length, 40);
  for (const row of [...contacts, ...events]) {
    if (!UUID_V7.test(row.id)) t.fail(`not a UUIDv7: ${row.id}`);
    const ms = millisOf(row.id);
    // The database clock and this process's clock are the same machine's.
    if (ms < before - 1_000 || ms > after + 1_000) t.fail(`id time ${ms} outside the run`);
  }
  // Every contact of the second file sorts after every contact of the first one.
  const firstIds = contacts.filter((c) => Number(c.email.slice(7, -12)) < 20).map((c) => c.id);
  const secondIds = contacts.filter((c) => Number(c.email.slice(7, -12)) >= 20).map((c) => c.id);
  t.equal(firstIds.length, 20);
  t.ok(
    firstIds.every((a) => secondIds.every((b) => a < b)),
    'ids of the later import sort after the earlier ones',
  );
});

t.test(
  'the consent append probes the ledger per row and never joins the whole account',
  async (t) => {
    const w = await world(t);
    // Enough of a ledger that a plan comparing every pair would be chosen on stale statistics.
    const res = await upload(
      w,
      ndjson(
        Array.from({ length: 1_500 }, (_, i) => ({
          email: `plan${i}@example.com`,
          consent: CONSENT,
        })),
      ),
    );
    t.equal(res.statusCode, 201, res.body);
    const contacts = await contactsOf(w);
    const batch: ConsentAppend[] = contacts.slice(0, 1_000).map((c) => ({
      contact_id: c.id,
      purpose_id: w.purposeId,
      notice_version: 1,
      method: 'form',
      occurred_at: '2025-04-01T00:00:00Z',
      ip: null,
      user_agent: null,
      source_url: null,
      pending_only_if_none: false,
    }));
    const statement = appendConsentsStatement(w.owner.accountId, { type: 'user', id: null }, batch);

    const plan = await w.app.database.owner.transaction().execute(async (trx) => {
      await tuneBatchTransaction(trx, true);
      const compiled = statement.compile(trx);
      const explained = await trx.executeQuery<{ 'QUERY PLAN': unknown }>(
        CompiledQuery.raw(`explain (format json) ${compiled.sql}`, [...compiled.parameters]),
      );
      const raw = explained.rows[0]!['QUERY PLAN'];
      const parsed = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { Plan: PlanNode }[];
      return parsed[0]!.Plan;
    });
    const nodes = nodesOf(plan);
    t.notOk(
      nodes.some((n) => n['Join Type'] === 'Anti'),
      'no anti join over the account’s events',
    );
    const probes = nodes
      .filter((n) => n['Subplan Name'] !== undefined)
      .flatMap(nodesOf)
      .filter((n) => n['Node Type'].startsWith('Index'));
    t.ok(probes.length > 0, 'the NOT EXISTS is a subplan that reads an index');
    t.notOk(
      nodes.some((n) => n['Node Type'] === 'Materialize' || n['Node Type'] === 'Seq Scan'),
      'nothing materialises or scans the ledger',
    );
    // Nothing was written by explaining it.
    t.equal((await eventsOf(w)).length, 1_500);
  },
);

/** Records the `synchronous_commit` value each import batch asks for. */
function commitModeRecorder(seen: string[]): KyselyPlugin {
  return {
    transformQuery({ node }) {
      if (node.kind === 'RawNode' && node.sqlFragments.join('?').includes("'synchronous_commit'")) {
        const values = node.parameters.map((p) => (p as { value?: unknown }).value);
        seen.push(String(values.find((v) => v === 'on' || v === 'off')));
      }
      return node;
    },
    async transformResult({ result }) {
      return result;
    },
  };
}

t.test('batches commit asynchronously only on a Postgres server', async (t) => {
  // On the embedded engine the database lives and dies with this process: a batch the job
  // counts as done must be on disk, so its commit waits for the WAL.
  const database = await testDatabase();
  const seen: string[] = [];
  const app = await build(t, {
    database: { ...database, db: database.owner.withPlugin(commitModeRecorder(seen)) },
  });
  const w = await world(t, app as never);
  const res = await upload(
    w,
    ndjson(
      Array.from({ length: 3 }, (_, i) => ({ email: `mode${i}@example.com`, consent: CONSENT })),
    ),
  );
  t.equal(res.statusCode, 201, res.body);
  t.same(seen, [database.engine === 'postgres' ? 'off' : 'on'], `one batch, ${database.engine}`);
});
