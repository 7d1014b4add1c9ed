import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  // The claim as the claim-deliveries-per-worker migration wrote it, but for how it locks and
  // updates what it chose. A queue table's statistics describe the moment they were taken: taken
  // while every delivery was delivered, they say nothing is due. Then the planner locked the
  // chosen rows by joining every due row against the wanted list in a nested loop (2,000 x 500
  // comparisons: half a second for a claim of 500 on the embedded engine, where the worker fell
  // from about 5,000 deliveries a second to 1,400). Now each wanted row is looked up by its key,
  // and the update finds it by the place of the row it locked: no plan depends on statistics.
  await sql`create or replace function claim_due_webhook_deliveries(
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
    -- Each wanted row by its key, one at a time (LIMIT 1 keeps the planner from joining the
    -- wanted rows against every due one: with statistics taken while nothing was due it did,
    -- and a claim of 500 took half a second), locked, and kept only if still claimable.
    chosen as materialized (
      select d.account_id, d.id, d.tid
      from wanted w
      cross join lateral (
        select d.account_id, d.id, d.ctid as tid, d.status, d.next_attempt_at, d.lease_expires_at
        from webhook_deliveries d
        where d.account_id = w.account_id and d.id = w.id
        limit 1
        for update of d skip locked
      ) d
      where (d.status = 'pending' and d.next_attempt_at <= p_now)
        or (d.status = 'sending' and d.lease_expires_at <= p_now)
    )
    update webhook_deliveries w
    set status = 'sending', attempts = w.attempts + 1, lease_expires_at = p_lease_until,
      lease_owner = p_owner, updated_at = p_now
    from chosen
    -- The locked row itself: its place (ctid) cannot change while this statement holds it.
    where w.ctid = chosen.tid and w.account_id = chosen.account_id and w.id = chosen.id
    returning w.*
    $$`.execute(db);
  await sql`revoke execute on function claim_due_webhook_deliveries(timestamptz, timestamptz, integer, integer, uuid) from public`.execute(
    db,
  );
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  // The claim as the claim-deliveries-per-worker migration made it.
  await sql`create or replace function claim_due_webhook_deliveries(
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
