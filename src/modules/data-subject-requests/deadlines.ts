import { DateTime } from 'luxon';
import { setBounded } from '../../lib/bounded-map.js';
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
  if (year >= 100) return Date.UTC(year, month - 1, day) / DAY_MS;
  // Date.UTC reads years 0 to 99 as 1900 to 1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getTime() / DAY_MS;
}

/**
 * Formatters of local calendar dates, one per zone and kept: a page of requests places an
 * instant in its zone for every row (the decision of a decided request, `now` for an open one),
 * and building a formatter is the costly part. Account zones are checked against this same Intl
 * support (accounts.schemas.ts, TimeZone).
 */
const MAX_ZONE_FORMATS = 1_000;
const zoneFormats = new Map<string, Intl.DateTimeFormat>();

function dateFormat(timeZone: string, era: boolean): Intl.DateTimeFormat {
  // Throws a RangeError for an unknown zone.
  return new Intl.DateTimeFormat('en-US', {
    timeZone,
    calendar: 'gregory',
    numberingSystem: 'latn',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    ...(era ? { era: 'short' } : {}),
  });
}

/** From 2 January 1000 UTC on, every local date is AD with a four-digit year. */
const FOUR_DIGIT_YEARS_FROM_MS = Date.UTC(1000, 0, 2);
/** en-US numeric dates: `6/4/2026`. */
const US_DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/;

/**
 * The day number of the local calendar date in `timeZone` at `instant`: the year, month and day
 * that luxon's `DateTime.fromJSDate(instant, { zone })` shows (it reads the same Intl time zone
 * data) at a fraction of its cost. The same instant and zone asked again in a row (`now`, for
 * every open request of a page) are answered from the last answer.
 */
let lastLocalDay: { timeZone: string; ms: number; day: number } | undefined;
function localDayNumber(timeZone: string, instant: Date): number {
  const ms = instant.getTime();
  if (lastLocalDay && lastLocalDay.ms === ms && lastLocalDay.timeZone === timeZone) {
    return lastLocalDay.day;
  }
  if (Number.isNaN(ms)) throw new RangeError(`cannot place ${String(instant)} in ${timeZone}`);
  let format = zoneFormats.get(timeZone);
  if (!format) {
    format = dateFormat(timeZone, false);
    setBounded(zoneFormats, timeZone, format, MAX_ZONE_FORMATS);
  }
  const match = ms >= FOUR_DIGIT_YEARS_FROM_MS ? US_DATE.exec(format.format(ms)) : null;
  const day = match
    ? dayNumber(Number(match[3]), Number(match[1]), Number(match[2]))
    : localDayNumberByParts(timeZone, ms);
  lastLocalDay = { timeZone, ms, day };
  return day;
}

/** The same from the formatted parts, era included: early dates, or an unexpected format. */
function localDayNumberByParts(timeZone: string, ms: number): number {
  let year = Number.NaN;
  let month = Number.NaN;
  let day = Number.NaN;
  let bc = false;
  for (const part of dateFormat(timeZone, true).formatToParts(ms)) {
    if (part.type === 'year') year = Number(part.value);
    else if (part.type === 'month') month = Number(part.value);
    else if (part.type === 'day') day = Number(part.value);
    else if (part.type === 'era') bc = part.value === 'BC';
  }
  if (!(year > 0 && month > 0 && day > 0)) {
    throw new RangeError(`cannot place ${new Date(ms).toISOString()} in ${timeZone}`);
  }
  // Date.UTC counts years astronomically: 1 BC is year 0.
  return dayNumber(bc ? 1 - year : year, month, day);
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
  return due - localDayNumber(timeZone, now);
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
