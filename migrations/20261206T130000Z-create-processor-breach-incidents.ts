import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Art. 33(2): a breach at the provider, as processor, that its customers (the controllers)
  // must be told of. A provider-level record, no account's: the operators' alone. Which
  // accounts: `target_account_ids`, or every account when null. The fan-out walks the targets
  // in id order; `fan_out_after` is the last account it finished, so a restarted worker resumes
  // there, and the unique (account_id, processor_incident_id) of breach_incidents makes telling
  // an account twice impossible even for the batch that was cut short.
  await db.schema
    .createTable('processor_breach_incidents')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`uuid_v7()`))
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('kinds', 'jsonb', (c) => c.notNull())
    .addColumn('occurred_at', sql`timestamptz(3)`)
    .addColumn('aware_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('contact_point', 'jsonb', (c) => c.notNull())
    .addColumn('target_account_ids', 'jsonb')
    .addColumn('fan_out_after', 'uuid')
    .addColumn('fan_out_done_at', sql`timestamptz(3)`)
    .addColumn('public_communication', 'jsonb')
    .addColumn('created_by', 'uuid', (c) => c.notNull())
    .addColumn('created_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('updated_at', sql`timestamptz(3)`, (c) => c.notNull())
    .execute();
  await sql`
    create index processor_breach_incidents_fan_out_idx
    on processor_breach_incidents (created_at) where fan_out_done_at is null`.execute(db);

  // When the account acknowledged a breach its processor reported.
  await db.schema
    .alterTable('breach_incidents')
    .addColumn('acknowledged_at', sql`timestamptz(3)`)
    .execute();

  // The operators' view across accounts, answered for one processor incident: each account's
  // copy, when it was told (its awareAt), when a webhook first delivered the news, and when it
  // acknowledged. Ids and times only.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  await sql`create function processor_breach_accounts(p_incident uuid)
    returns table (account_id uuid, incident_id uuid, told_at timestamptz,
      webhook_delivered_at timestamptz, acknowledged_at timestamptz)
    language sql stable security definer set search_path = ${schema}, pg_temp as $$
    select b.account_id, b.id, b.aware_at,
      (select min(d.delivered_at) from webhook_deliveries d
        join events e on e.account_id = d.account_id and e.id = d.event_id
        where d.account_id = b.account_id and d.status = 'delivered'
          and e.type = 'breach_incident.reported_by_processor'
          and e.data->>'incidentId' = b.id::text),
      b.acknowledged_at
    from breach_incidents b
    where b.processor_incident_id = p_incident
    order by b.account_id
    $$`.execute(db);
  await sql`revoke execute on function processor_breach_accounts(uuid) from public`.execute(db);
  await sql`
    create index breach_incidents_processor_incident_idx
    on breach_incidents (processor_incident_id) where processor_incident_id is not null`.execute(
    db,
  );
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists processor_breach_accounts(uuid)`.execute(db);
  await sql`drop index if exists breach_incidents_processor_incident_idx`.execute(db);
  await db.schema.alterTable('breach_incidents').dropColumn('acknowledged_at').execute();
  await db.schema.dropTable('processor_breach_incidents').execute();
}
