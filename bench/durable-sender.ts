import http from 'node:http';
import { type Kysely, sql } from 'kysely';

/**
 * The least a sender must do to deliver at least once from a database queue, and nothing
 * more: the baseline of `bench:webhooks` that does the same durable work as the worker.
 *
 * Per message: one row queued (the fan-out's insert, a thousand to a statement), claimed
 * (`pending` → `sending` with a lease, `FOR UPDATE SKIP LOCKED`, 500 to a statement),
 * POSTed by the bare client's code with a pre-signed body, and its outcome recorded
 * (`delivered`, status code, time; 100 to a statement). The lanes keep `inFlight` requests
 * going while the next claim and the outcomes are written, as the worker's do. What it leaves
 * out is everything the worker does beyond that: reading the feed, the event's body and its
 * schema check, signing per attempt, the endpoint's checks, caps and tenancy, back-off, fencing.
 *
 * Its table has the columns and indexes such a queue needs (the key, the due index on pending
 * rows, the lease index on rows being sent), made in the bench's throw-away database.
 */

const TABLE = 'bench_durable_queue';
const QUEUE_PER_STATEMENT = 1000;
const CLAIM = 500;
const RECORD = 100;

// biome-ignore lint/suspicious/noExplicitAny: a table of the bench's own, not in the app's DB type
type AnyDb = Kysely<any>;

export interface DurableMessage {
  body: Buffer;
  headers: Record<string, string>;
}

async function prepare(db: AnyDb): Promise<void> {
  await sql`drop table if exists ${sql.id(TABLE)}`.execute(db);
  await sql`create table ${sql.id(TABLE)} (
    id uuid primary key default uuid_v7(),
    status text not null default 'pending',
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_expires_at timestamptz,
    status_code integer,
    delivered_at timestamptz
  )`.execute(db);
  await sql`create index bench_durable_queue_due_idx on ${sql.id(TABLE)} (next_attempt_at, id)
    where status = 'pending'`.execute(db);
  await sql`create index bench_durable_queue_lease_idx on ${sql.id(TABLE)} (lease_expires_at)
    where status = 'sending'`.execute(db);
}

/**
 * Queues `n` messages and delivers them to `url`, `inFlight` at a time; resolves with the
 * rate from the first insert to the last response (as the worker's rate runs from its start
 * to the receiver's last receipt). The table is dropped afterwards.
 */
export async function durableSenderRate(
  db: AnyDb,
  url: string,
  message: DurableMessage,
  n: number,
  inFlight: number,
): Promise<{ perSecond: number; seconds: number }> {
  await prepare(db);
  const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight });
  const headers = { ...message.headers, 'content-length': String(message.body.length) };
  const post = () =>
    new Promise<number>((resolve, reject) => {
      const request = http.request(url, { method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      request.on('error', reject);
      request.end(message.body);
    });

  const queue: string[] = [];
  const outcomes: { id: string; code: number }[] = [];
  let claiming: Promise<void> | undefined;
  let recording: Promise<void> = Promise.resolve();
  let drained = false;
  let sent = 0;

  const claim = async () => {
    const { rows } = await sql<{ id: string }>`
      update ${sql.id(TABLE)} set status = 'sending', attempts = attempts + 1,
        lease_expires_at = now() + interval '60 seconds'
      where id in (
        select id from ${sql.id(TABLE)}
        where status = 'pending' and next_attempt_at <= now()
        order by next_attempt_at, id
        limit ${CLAIM}
        for update skip locked
      )
      returning id`.execute(db);
    for (const row of rows) queue.push(row.id);
    if (rows.length === 0) drained = true;
  };
  const record = () => {
    if (outcomes.length === 0) return;
    const batch = outcomes.splice(0, outcomes.length);
    recording = recording.then(async () => {
      await sql`
        update ${sql.id(TABLE)} q set status = 'delivered', status_code = u.code,
          delivered_at = now(), lease_expires_at = null
        from json_to_recordset(${JSON.stringify(batch)}::json) as u(id uuid, code integer)
        where q.id = u.id and q.status = 'sending'`.execute(db);
    });
  };
  const refill = () => {
    if (!claiming && !drained && queue.length < CLAIM / 2) {
      claiming = claim().finally(() => {
        claiming = undefined;
      });
    }
    return claiming;
  };

  const started = performance.now();
  for (let done = 0; done < n; done += QUEUE_PER_STATEMENT) {
    const size = Math.min(QUEUE_PER_STATEMENT, n - done);
    await sql`insert into ${sql.id(TABLE)} (next_attempt_at)
      select now() from generate_series(1, ${size})`.execute(db);
  }
  const lane = async () => {
    for (;;) {
      const id = queue.shift();
      if (id === undefined) {
        const pending = refill();
        if (!pending) return;
        await pending;
        continue;
      }
      void refill();
      const code = await post();
      sent += 1;
      outcomes.push({ id, code });
      if (outcomes.length >= RECORD) record();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = (performance.now() - started) / 1000;
  record();
  await recording;
  agent.destroy();
  const { rows } = await sql<{ delivered: string }>`
    select count(*) as delivered from ${sql.id(TABLE)} where status = 'delivered'`.execute(db);
  await sql`drop table ${sql.id(TABLE)}`.execute(db);
  if (Number(rows[0]!.delivered) !== n || sent !== n) {
    throw new Error(`durable sender: ${rows[0]!.delivered} of ${n} recorded, ${sent} sent`);
  }
  return { perSecond: n / seconds, seconds };
}
