import { type Kysely, sql } from 'kysely';
import type { DB, EventRow } from '../../db/schema.js';
import { lockAccountJournal } from '../audit/audit.repository.js';

/** What the customer's systems are told about (the outbox feed at `GET /v1/events`). */
export const EVENT_TYPES = [
  'consent.granted',
  'consent.confirmation_requested',
  'consent.confirmed',
  'consent.withdrawn',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface NewEvent {
  type: EventType;
  /** The contact the event is about; its events are deleted when it is erased. */
  contactId: string | null;
  /** Ids, codes and links only: never an address or a name. */
  data: Record<string, unknown>;
}

/**
 * Appends events in the caller's transaction, so they exist exactly when the change does. The
 * account's journal lock makes `seq` follow commit order within the account: a reader that
 * saw `seq` N never later finds a newly committed event below N.
 */
export async function appendEvents(
  trx: Kysely<DB>,
  accountId: string,
  events: NewEvent[],
): Promise<void> {
  if (events.length === 0) return;
  await lockAccountJournal(trx, accountId);
  await trx
    .insertInto('events')
    .values(
      events.map((event) => ({
        account_id: accountId,
        type: event.type,
        contact_id: event.contactId,
        data: JSON.stringify(event.data),
      })),
    )
    .execute();
}

export async function listEvents(
  db: Kysely<DB>,
  accountId: string,
  query: { afterSeq: number; limit: number; types?: EventType[] | undefined },
): Promise<EventRow[]> {
  let q = db
    .selectFrom('events')
    .selectAll()
    .where('account_id', '=', accountId)
    .where('seq', '>', sql<string>`${query.afterSeq}::bigint`);
  if (query.types?.length) q = q.where('type', 'in', query.types);
  return q.orderBy('seq').limit(query.limit).execute();
}

/** Erasure (Art. 17): the contact's events go with it. */
export async function deleteContactEvents(trx: Kysely<DB>, accountId: string, contactId: string) {
  await trx
    .deleteFrom('events')
    .where('account_id', '=', accountId)
    .where('contact_id', '=', contactId)
    .execute();
}
