import type { BreachIncidentRow } from '../../db/schema.js';

export const HOUR_MS = 3_600_000;

/**
 * Art. 33(1): "not later than 72 hours after having become aware of it". Counted on the
 * instant, never as three calendar days in a local zone: across a change to or from summer
 * time, three local days are 71 or 73 hours.
 */
export const AUTHORITY_DEADLINE_MS = 72 * HOUR_MS;

export function authorityDeadline(awareAt: Date): Date {
  return new Date(awareAt.getTime() + AUTHORITY_DEADLINE_MS);
}

type DeadlineFacts = Pick<
  BreachIncidentRow,
  'authority_deadline_at' | 'first_notified_at' | 'risk' | 'status' | 'closed_at'
>;

/** Not notified, a risk that needs notifying (not `none`), still open, and past the deadline. */
export function isOverdue(row: DeadlineFacts, now: Date): boolean {
  return (
    row.first_notified_at === null &&
    row.risk !== 'none' &&
    row.status !== 'closed' &&
    now.getTime() > row.authority_deadline_at.getTime()
  );
}

/**
 * Whole hours left to the deadline (rounded down; negative once past), counted to the first
 * notification once there is one, to the closing when closed without one, else to now.
 */
export function hoursRemaining(row: DeadlineFacts, now: Date): number {
  const at = row.first_notified_at ?? row.closed_at ?? now;
  return Math.floor((row.authority_deadline_at.getTime() - at.getTime()) / HOUR_MS);
}
