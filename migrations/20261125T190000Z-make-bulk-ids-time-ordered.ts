import { type Kysely, sql } from 'kysely';

/** Tables written in bulk (imports, the ledger, the feeds) whose ids become time-ordered. */
const TABLES = ['contacts', 'consent_events', 'events', 'audit_events', 'contact_imports'];

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // UUID version 7 (RFC 9562, section 5.7): the first 48 bits are the Unix time in
  // milliseconds, the rest is random apart from the version and variant bits. Postgres 15 has
  // no built-in for it (18 does); this takes the 74 random bits and the variant of
  // gen_random_uuid() and puts the clock in front.
  //
  // Why: ids made in creation order keep the rows of a table and its primary-key index in the
  // same order. The audience walks contacts by id: with random ids, every 1,000-row page read
  // about 2,000 heap pages scattered over both tables (once those outgrow the buffer cache,
  // each is a read); in creation order they share a few dozen. Inserts land at the right edge
  // of the primary-key index instead of all over it. The id shows when the row was made,
  // which every API response already says in `createdAt`.
  await sql`
    create function uuid_v7() returns uuid
    language sql volatile parallel safe
    as $$
      select encode(
        substring(int8send(floor(extract(epoch from stamp) * 1000)::bigint) from 3)
          || set_byte(tail, 0, 112 | (get_byte(tail, 0) & 15)),
        'hex')::uuid
      from (
        select clock_timestamp() as stamp, substring(uuid_send(gen_random_uuid()) from 7) as tail
      ) as parts
    $$`.execute(db);
  for (const table of TABLES) {
    await db.schema
      .alterTable(table)
      .alterColumn('id', (column) => column.setDefault(sql`uuid_v7()`))
      .execute();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) {
    await db.schema
      .alterTable(table)
      .alterColumn('id', (column) => column.setDefault(sql`gen_random_uuid()`))
      .execute();
  }
  await sql`drop function uuid_v7()`.execute(db);
}
