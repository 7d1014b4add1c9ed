import Holidays from 'date-holidays';

/**
 * Public holidays by country, from the date-holidays data set. Only type `public` counts:
 * bank, school and optional days and observances are working days for a deadline.
 */

let known: ReadonlySet<string> | undefined;

/** Whether `code` is an upper-case ISO 3166-1 alpha-2 code with a date-holidays calendar. */
export function isHolidayCountry(code: string): boolean {
  known ??= new Set(Object.keys(new Holidays().getCountries()));
  return /^[A-Z]{2}$/.test(code) && known.has(code);
}

const calendars = new Map<string, Holidays>();

function calendarOf(country: string): Holidays {
  let calendar = calendars.get(country);
  if (!calendar) {
    if (!isHolidayCountry(country)) {
      throw new RangeError(`no public holiday calendar for country ${JSON.stringify(country)}`);
    }
    // In UTC a holiday's start and end are its calendar dates, whatever the host's zone and
    // whichever of the country's zones date-holidays would pick.
    calendar = new Holidays(country, { timezone: 'UTC' });
    calendars.set(country, calendar);
  }
  return calendar;
}

/**
 * Whether the calendar date `isoDate` (YYYY-MM-DD) is a public holiday in `country`. A day
 * counts when a public holiday is in force at its beginning: that takes in the days of
 * multi-day holidays and of those that begin the evening before (e.g. Eid), and leaves out
 * afternoon-only ones (Iceland's Christmas Eve from 13:00), on which the day is partly worked.
 */
export function isPublicHoliday(country: string, isoDate: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(isoDate)) throw new RangeError(`not a date: ${isoDate}`);
  const found = calendarOf(country).isHoliday(new Date(`${isoDate}T00:00:00Z`));
  return Array.isArray(found) && found.some((holiday) => holiday.type === 'public');
}
