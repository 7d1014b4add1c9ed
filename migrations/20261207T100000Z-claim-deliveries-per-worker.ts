import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Which worker holds a delivery's lease (a random id per worker, not a secret). A worker may
  // now claim more of an endpoint while its own earlier claims are still being sent, so its
  // lanes never wait for a round's queries; another worker's unexpired lease still keeps the
  // endpoint away from it (one worker at a time serves an endpoint). Not indexed.
  await sql`alter table webhook_deliveries add column lease_owner uuid`.execute(db);

  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  await sql`drop function claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer)`.execute(
    db,
  );
  // The claim, written so that its plan does not depend on the table's statistics: a queue
  // table filled by a fan-out a moment ago has none, and the planner then walked the endpoint's
  // whole delivery log (through its index) three times per claim. Here the due candidates come
  // from the due index alone in its order (the endpoint's state is a sub-select per candidate,
  // which the planner cannot turn into a join that drives the scan), the endpoints' held
  // leases from the lease index alone, and the rows are locked by their keys.
  await sql`create function claim_due_webhook_deliveries(
      p_now timestamptz, p_lease_until timestamptz, p_limit integer, p_per_endpoint integer,
      p_owner uuid)
    returns setof webhook_deliveries
    language sql volatile security definer set search_path = ${schema}, pg_temp as $$
    with due as materialized (
      (select d.account_id, d.id, d.endpoint_id, d.next_attempt_at
        from webhook_deliveries d
        where d.status = 'pending' and d.next_attempt_at <= p_now
          and (select e.status from webhook_endpoints e
            where e.account_id = d.account_id and e.id = d.endpoint_id) = 'active'
        order by d.next_attempt_at, d.id
        limit p_limit)
      union all
      (select d.account_id, d.id, d.endpoint_id, d.next_attempt_at
        from webhook_deliveries d
        where d.status = 'sending' and d.lease_expires_at <= p_now
          and (select e.status from webhook_endpoints e
            where e.account_id = d.account_id and e.id = d.endpoint_id) = 'active'
        order by d.lease_expires_at
        limit p_limit)
    ),
    -- Unexpired leases per endpoint: another worker's keep the endpoint from this one; this
    -- worker's own count against its share.
    held as materialized (
      select f.account_id, f.endpoint_id,
        count(*) filter (where f.lease_owner is distinct from p_owner) as others,
        count(*) filter (where f.lease_owner = p_owner) as mine
      from webhook_deliveries f
      where f.status = 'sending' and f.lease_expires_at > p_now
      group by f.account_id, f.endpoint_id
    ),
    ranked as materialized (
      select due.account_id, due.id,
        row_number() over (
          partition by due.account_id, due.endpoint_id order by due.next_attempt_at, due.id
        ) + coalesce(h.mine, 0) as rank,
        coalesce(h.others, 0) as others
      from due
      left join held h on h.account_id = due.account_id and h.endpoint_id = due.endpoint_id
    ),
    wanted as materialized (
      select r.account_id, r.id, r.rank from ranked r
      where r.others = 0 and r.rank <= p_per_endpoint
      order by r.rank
      limit p_limit
    ),
    chosen as (
      select d.account_id, d.id
      from webhook_deliveries d
      where (d.account_id, d.id) in (select w.account_id, w.id from wanted w)
        and ((d.status = 'pending' and d.next_attempt_at <= p_now)
          or (d.status = 'sending' and d.lease_expires_at <= p_now))
      for update of d skip locked
    )
    update webhook_deliveries w
    set status = 'sending', attempts = w.attempts + 1, lease_expires_at = p_lease_until,
      lease_owner = p_owner, updated_at = p_now
    from chosen
    where w.account_id = chosen.account_id and w.id = chosen.id
    returning w.*
    $$`.execute(db);
  await sql`revoke execute on function claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer, uuid) from public`.execute(
    db,
  );
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer, uuid)`.execute(
    db,
  );
  await sql`alter table webhook_deliveries drop column lease_owner`.execute(db);
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  // The previous claim, as the row-level security migration made it.
  await sql`create function claim_due_webhook_deliveries(
      p_now timestamptz, p_lease_until timestamptz, p_limit integer, p_per_endpoint integer)
    returns setof webhook_deliveries
    language sql volatile security definer set search_path = ${schema}, pg_temp as $$
    with due as (
      (select d.account_id, d.id, d.endpoint_id, d.next_attempt_at
        from webhook_deliveries d
        join webhook_endpoints e
          on e.account_id = d.account_id and e.id = d.endpoint_id and e.status = 'active'
        where d.status = 'pending' and d.next_attempt_at <= p_now
        order by d.next_attempt_at, d.id
        limit p_limit)
      union all
      (select d.account_id, d.id, d.endpoint_id, d.next_attempt_at
        from webhook_deliveries d
        join webhook_endpoints e
          on e.account_id = d.account_id and e.id = d.endpoint_id and e.status = 'active'
        where d.status = 'sending' and d.lease_expires_at <= p_now
        order by d.lease_expires_at
        limit p_limit)
    ),
    ranked as (
      select due.account_id, due.id, due.endpoint_id,
        row_number() over (
          partition by due.account_id, due.endpoint_id order by due.next_attempt_at, due.id
        ) as rank
      from due
    ),
    busy as (
      select f.account_id, f.endpoint_id, count(*) as in_flight
      from webhook_deliveries f
      where f.status = 'sending' and f.lease_expires_at > p_now
        and (f.account_id, f.endpoint_id) in (select account_id, endpoint_id from due)
      group by f.account_id, f.endpoint_id
    ),
    chosen as (
      select d.account_id, d.id
      from webhook_deliveries d
      join ranked r on r.account_id = d.account_id and r.id = d.id
      left join busy b on b.account_id = r.account_id and b.endpoint_id = r.endpoint_id
      where b.in_flight is null and r.rank <= p_per_endpoint
        and ((d.status = 'pending' and d.next_attempt_at <= p_now)
          or (d.status = 'sending' and d.lease_expires_at <= p_now))
      order by r.rank
      limit p_limit
      for update of d skip locked
    )
    update webhook_deliveries w
    set status = 'sending', attempts = w.attempts + 1, lease_expires_at = p_lease_until,
      updated_at = p_now
    from chosen
    where w.account_id = chosen.account_id and w.id = chosen.id
    returning w.*
    $$`.execute(db);
  await sql`revoke execute on function claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer) from public`.execute(
    db,
  );
}
