import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.js';
import { linkSealer } from '../../lib/link-sealing.js';
import { type EventType, listEvents } from './events.repository.js';
import { toEvent } from './events.schemas.js';

/**
 * The account's outbox as a feed. The cursor is the `seq` of the last event served (0 before
 * the first), so a reader that keeps `nextCursor` sees each event once and in order; with no
 * new events it gets its own cursor back and polls again later.
 */
export function createEventsService(deps: { db: Kysely<DB>; hashSecret: string }) {
  const { db } = deps;
  const sealer = linkSealer(deps.hashSecret);
  return {
    async feed(
      accountId: string,
      query: { limit: number; cursor?: string | undefined; type?: EventType | undefined },
    ) {
      const page = await listEvents(db, accountId, {
        cursor: query.cursor,
        limit: query.limit,
        types: query.type ? [query.type] : undefined,
      });
      return { data: page.rows.map((row) => toEvent(row, sealer)), nextCursor: page.nextCursor };
    },
  };
}

export type EventsService = ReturnType<typeof createEventsService>;

/**
 * The module's transaction-bound functions for other modules: they call these (inside their own
 * transaction where they take one), never the repository itself. Webhooks read the feed through
 * latestEventSeq and findEventsBySeqs, and serve it with `toEvent` (their fan-out reads event
 * references inside its own insert: see the architecture test's TABLE_READS_BY_JOIN).
 */
export {
  appendEvents,
  contactEventSeqs,
  contactEvents,
  EVENT_TYPES,
  type EventType,
  findEventBySeq,
  findEventsBySeqs,
  latestEventSeq,
  type NewEvent,
  type StoredLink,
  storedLink,
  storedRequestLink,
} from './events.repository.js';
export { eventJson, toEvent } from './events.schemas.js';
