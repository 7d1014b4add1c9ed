import { DateTime } from 'luxon';
import { isPublicHoliday } from '../../lib/public-holidays.js';

/**
 * When a data-subject request must be answered. Art. 12(3) GDPR gives one month from receipt,
 * extendable by up to two further months; the GDPR does not say how to count a month, so
 * Regulation (EEC, Euratom) No 1182/71 (time limits in Union law) does. Pure: no clock, no I/O.
 */

/** Art. 12(3) GDPR: one month, plus at most two more after an extension. */
export const RESPONSE_MONTHS = 1;
export const MAX_EXTENSION_MONTHS = 2;

export interface DeadlineInput {
  /** When the request reached the controller. */
  receivedAt: Date;
  /** The account's IANA time zone: the receipt's calendar day and the end of the due day. */
  timeZone: string;
  /** ISO 3166-1 alpha-2 code whose public holidays postpone the deadline; unset: weekends only. */
  holidayCountry?: string | null | undefined;
  /** Months added by an extension (0, 1 or 2). */
  extensionMonths?: number | undefined;
}

export interface Deadline {
  timeZone: string;
  holidayCountry: string | null;
  /** Which days were skipped, to store with the request: `weekends+public holidays SI`. */
  calendar: string;
  /** The last day for the answer, a local date (YYYY-MM-DD) in `timeZone`. */
  dueDate: string;
  /** The last millisecond of `dueDate` in `timeZone`. */
  dueAt: Date;
}

/** The due date of a request received at `receivedAt`, and the instant it ends. */
export function computeDeadline(input: DeadlineInput): Deadline {
  const { receivedAt, timeZone } = input;
  const holidayCountry = input.holidayCountry ?? null;
  const extensionMonths = input.extensionMonths ?? 0;
  if (
    !Number.isInteger(extensionMonths) ||
    extensionMonths < 0 ||
    extensionMonths > MAX_EXTENSION_MONTHS
  ) {
    throw new RangeError(`extensionMonths must be 0..${MAX_EXTENSION_MONTHS}`);
  }
  const received = DateTime.fromJSDate(receivedAt, { zone: timeZone });
  if (!received.isValid) {
    throw new RangeError(
      `cannot place ${String(receivedAt)} in ${timeZone}: ${received.invalidReason}`,
    );
  }
  // The period runs from the day of receipt as the controller's calendar shows it (Reg.
  // 1182/71 Art. 3(1)), so a request that arrives after local midnight belongs to the next day.
  // From here on only calendar dates matter; UTC keeps that arithmetic free of DST.
  const receiptDay = DateTime.fromISO(received.toISODate() as string, { zone: 'utc' });
  // Art. 3(2)(c): the same day-number in the last month, or that month's last day when it
  // has none (31 Jan + 1 month = 28/29 Feb); luxon clamps the day the same way. An extension
  // counts again from the receipt, never from a due date that Art. 3(4) already moved.
  let due = receiptDay.plus({ months: RESPONSE_MONTHS + extensionMonths });
  // Art. 3(4): a period that would end on a Saturday, Sunday or public holiday ends with the
  // following working day.
  while (!isWorkingDay(due, holidayCountry)) due = due.plus({ days: 1 });
  const dueDate = due.toISODate() as string;
  const dueAt = DateTime.fromISO(dueDate, { zone: timeZone }).endOf('day').toJSDate();
  return {
    timeZone,
    holidayCountry,
    calendar: holidayCountry ? `weekends+public holidays ${holidayCountry}` : 'weekends',
    dueDate,
    dueAt,
  };
}

function isWorkingDay(day: DateTime, holidayCountry: string | null): boolean {
  if (day.weekday === 6 || day.weekday === 7) return false;
  return !holidayCountry || !isPublicHoliday(holidayCountry, day.toISODate() as string);
}

const DAY_MS = 86_400_000;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Days since 1970-01-01 of a calendar date (no zone: a date, not an instant). */
function dayNumber(year: number, month: number, day: number): number {
  return Date.UTC(year, month - 1, day) / DAY_MS;
}

/**
 * Today's day number in `timeZone` at `now`. A page of requests asks this once per row with
 * the same zone and instant, and placing an instant in a zone is the expensive part, so the
 * last answer is kept.
 */
let lastToday: { timeZone: string; nowMs: number; day: number } | undefined;
function todayIn(timeZone: string, now: Date): number {
  const nowMs = now.getTime();
  if (lastToday && lastToday.nowMs === nowMs && lastToday.timeZone === timeZone) {
    return lastToday.day;
  }
  const today = DateTime.fromJSDate(now, { zone: timeZone });
  if (!today.isValid) throw new RangeError(`cannot place ${String(now)} in ${timeZone}`);
  const day = dayNumber(today.year, today.month, today.day);
  lastToday = { timeZone, nowMs, day };
  return day;
}

/**
 * Whole days from today's local date in `timeZone` to `dueDate`: 0 on the due day, negative
 * once it has passed. A day count, not a duration, as the deadline is a calendar day.
 */
export function daysRemaining(dueDate: string, timeZone: string, now: Date): number {
  const match = ISO_DATE.exec(dueDate);
  if (!match) throw new RangeError(`not a date: ${dueDate}`);
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const due = dayNumber(year, month, day);
  // Date.UTC rolls 30 February over into March: a date that does not exist is refused.
  if (new Date(due * DAY_MS).getUTCDate() !== day || month < 1 || month > 12) {
    throw new RangeError(`not a date: ${dueDate}`);
  }
  return due - todayIn(timeZone, now);
}

/** Whether the due day has ended. */
export function isOverdue(dueAt: Date, now: Date): boolean {
  return now.getTime() > dueAt.getTime();
}

/**
 * Art. 12(3) GDPR: the data subject must hear of an extension within the first month, so it
 * can be taken up to and including the last millisecond of the original due day.
 */
export function extensionAllowed(originalDueAt: Date, now: Date): boolean {
  return now.getTime() <= originalDueAt.getTime();
}
