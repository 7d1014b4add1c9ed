import t from 'tap';
import { isHolidayCountry, isPublicHoliday } from '../../src/lib/public-holidays.js';
import {
  computeDeadline,
  daysRemaining,
  extensionAllowed,
  isOverdue,
} from '../../src/modules/data-subject-requests/deadlines.js';
import { DEADLINE_CASES, LJ } from '../fixtures/deadline-cases.js';

const ROWS = DEADLINE_CASES;

t.test('due dates', async (t) => {
  for (const row of ROWS) {
    const deadline = computeDeadline({
      receivedAt: new Date(row.receivedAt),
      timeZone: row.timeZone ?? LJ,
      holidayCountry: row.holidayCountry,
      extensionMonths: row.extensionMonths,
    });
    t.equal(deadline.dueDate, row.dueDate, `${row.name}: dueDate`);
    t.equal(deadline.dueAt.toISOString(), row.dueAt, `${row.name}: dueAt`);
  }
});

t.test('the result names the zone and the calendar used', async (t) => {
  const receivedAt = new Date('2027-01-08T10:00:00Z');
  t.same(computeDeadline({ receivedAt, timeZone: LJ, holidayCountry: 'SI' }), {
    timeZone: LJ,
    holidayCountry: 'SI',
    calendar: 'weekends+public holidays SI',
    dueDate: '2027-02-09',
    dueAt: new Date('2027-02-09T22:59:59.999Z'),
  });
  const plain = computeDeadline({ receivedAt, timeZone: 'Asia/Tokyo' });
  t.equal(plain.holidayCountry, null);
  t.equal(plain.calendar, 'weekends');
  t.equal(plain.timeZone, 'Asia/Tokyo');
});

t.test('refuses what it cannot count', async (t) => {
  const receivedAt = new Date('2027-01-08T10:00:00Z');
  for (const extensionMonths of [-1, 3, 1.5]) {
    t.throws(
      () => computeDeadline({ receivedAt, timeZone: LJ, extensionMonths }),
      RangeError,
      `extension of ${extensionMonths} months`,
    );
  }
  t.throws(() => computeDeadline({ receivedAt, timeZone: 'Mars/Olympus_Mons' }), RangeError);
  t.throws(() => computeDeadline({ receivedAt: new Date('nope'), timeZone: LJ }), RangeError);
  t.throws(
    () => computeDeadline({ receivedAt, timeZone: LJ, holidayCountry: 'QQ' }),
    RangeError,
    'a country without a holiday calendar',
  );
});

t.test('days remaining count local calendar days', async (t) => {
  const cases: [string, string, string, number, string][] = [
    ['2027-03-01', LJ, '2027-01-31T10:00:00Z', 29, 'February 2027 has 28 days'],
    ['2027-03-01', LJ, '2027-02-28T22:59:59.999Z', 1, '28 Feb 23:59:59.999 CET'],
    ['2027-03-01', LJ, '2027-02-28T23:00:00Z', 0, 'local midnight: the due day'],
    ['2027-03-01', LJ, '2027-03-01T22:59:59.999Z', 0, 'the due day’s last millisecond'],
    ['2027-03-01', LJ, '2027-03-01T23:00:00Z', -1, 'one day late'],
    ['2027-03-01', LJ, '2027-03-11T12:00:00Z', -10, 'ten days late'],
    // Local midnights of 27 and 29 March are 47 hours apart (28 March has 23 hours).
    ['2027-03-29', 'Europe/Berlin', '2027-03-27T12:00:00Z', 2, 'across spring-forward'],
    ['2027-06-30', 'America/New_York', '2027-07-01T03:00:00Z', 0, '30 Jun 23:00 EDT'],
    ['2027-04-15', 'Asia/Tokyo', '2027-04-14T15:00:00Z', 0, '15 Apr 00:00 JST'],
  ];
  for (const [dueDate, zone, now, expected, why] of cases) {
    t.equal(daysRemaining(dueDate, zone, new Date(now)), expected, `${now} in ${zone}: ${why}`);
  }
  // The same instant asked twice in a row, in two zones (the page cache must key by zone).
  const at = new Date('2027-04-14T15:30:00Z');
  t.equal(daysRemaining('2027-04-15', 'Asia/Tokyo', at), 0, '15 Apr 00:30 in Tokyo');
  t.equal(daysRemaining('2027-04-15', 'Europe/Berlin', at), 1, '14 Apr 17:30 in Berlin');
  for (const bad of ['2027-02-30', '2027-13-01', '27-01-01', '2027-1-1']) {
    t.throws(() => daysRemaining(bad, LJ, at), RangeError, `${bad} is not a date`);
  }
});

t.test('overdue after the due day’s last millisecond', async (t) => {
  const dueAt = new Date('2027-03-01T22:59:59.999Z');
  t.equal(isOverdue(dueAt, new Date('2027-03-01T22:59:59.999Z')), false);
  t.equal(isOverdue(dueAt, new Date('2027-03-01T23:00:00.000Z')), true);
  t.equal(isOverdue(dueAt, new Date('2027-01-31T10:00:00Z')), false);
});

t.test('an extension is allowed up to the original due day’s last millisecond', async (t) => {
  const originalDueAt = new Date('2027-03-01T22:59:59.999Z');
  t.equal(extensionAllowed(originalDueAt, new Date('2027-02-15T09:00:00Z')), true);
  t.equal(extensionAllowed(originalDueAt, new Date('2027-03-01T22:59:59.999Z')), true);
  t.equal(extensionAllowed(originalDueAt, new Date('2027-03-01T23:00:00.000Z')), false);
});

// The rows above rely on date-holidays classifying these days so; if its data changes, this
// says which assumption broke.
t.test('the holiday data the rows rely on', async (t) => {
  const holidays: [string, string, boolean, string][] = [
    ['SI', '2027-02-08', true, 'Prešeren Day'],
    ['SI', '2027-06-25', true, 'Statehood Day'],
    ['SI', '2027-03-29', true, 'Easter Monday'],
    ['SI', '2027-01-02', true, 'the second day of New Year'],
    ['SI', '2027-11-11', false, 'St Martin’s Day, an observance'],
    ['SI', '2028-10-03', false, 'German Unity Day'],
    ['DE', '2028-10-03', true, 'German Unity Day'],
    ['DE', '2027-02-08', false, 'Rosenmontag, an observance'],
    ['DE', '2027-11-01', false, 'All Saints, a holiday in some Länder only'],
    ['AT', '2027-06-25', false, 'Slovenian Statehood Day'],
    // A day counts when a public holiday is in force at its start.
    ['IS', '2027-12-24', false, 'Christmas Eve, a holiday from 13:00 only'],
    ['IS', '2027-12-25', true, 'Christmas Day'],
    ['TR', '2027-03-08', false, 'the eve of Ramazan Bayramı (it starts that evening)'],
    ['TR', '2027-03-09', true, 'Ramazan Bayramı, first day'],
    ['TR', '2027-03-11', true, 'Ramazan Bayramı, third day'],
  ];
  for (const [country, date, expected, what] of holidays) {
    t.equal(isPublicHoliday(country, date), expected, `${country} ${date}: ${what}`);
  }
  t.ok(isHolidayCountry('SI'));
  t.notOk(isHolidayCountry('si'), 'upper case only');
  t.notOk(isHolidayCountry('QQ'));
  t.notOk(isHolidayCountry('SVN'));
});
