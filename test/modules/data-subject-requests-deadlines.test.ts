import t from 'tap';
import { isHolidayCountry, isPublicHoliday } from '../../src/lib/public-holidays.js';
import {
  computeDeadline,
  daysRemaining,
  extensionAllowed,
  isOverdue,
} from '../../src/modules/data-subject-requests/deadlines.js';

/**
 * Every expected value below is worked out by hand from a calendar, not computed: the
 * offsets are CET +01:00 / CEST +02:00 (EU summer time 2025-03-30..10-26, 2026-03-29..10-25,
 * 2027-03-28..10-31), EST -05:00 / EDT -04:00 (US 2027-03-14..11-07), JST +09:00, and
 * Israel +02:00 / +03:00 from Friday 2027-03-26. `dueAt` is the due day's 23:59:59.999 local.
 */

const LJ = 'Europe/Ljubljana';

interface Row {
  name: string;
  receivedAt: string;
  timeZone?: string;
  holidayCountry?: string | null;
  extensionMonths?: number;
  dueDate: string;
  dueAt: string;
}

const ROWS: Row[] = [
  // Month ends (Reg. 1182/71 Art. 3(2)(c)).
  {
    name: 'same day-number next month',
    receivedAt: '2027-03-15T10:00:00Z', // Mon 15 Mar
    dueDate: '2027-04-15', // Thu
    dueAt: '2027-04-15T21:59:59.999Z',
  },
  {
    name: '31st into a 30-day month ends on its last day',
    receivedAt: '2026-03-31T09:00:00Z', // Tue 31 Mar, CEST
    dueDate: '2026-04-30', // Thu; April has no 31st
    dueAt: '2026-04-30T21:59:59.999Z',
  },
  {
    name: '31 January into February of a common year',
    receivedAt: '2025-01-31T10:00:00Z',
    dueDate: '2025-02-28', // Fri
    dueAt: '2025-02-28T22:59:59.999Z',
  },
  {
    name: '29 January into February of a common year',
    receivedAt: '2025-01-29T10:00:00Z',
    dueDate: '2025-02-28', // no 29 Feb 2025
    dueAt: '2025-02-28T22:59:59.999Z',
  },
  {
    name: '31 January into February of a leap year',
    receivedAt: '2028-01-31T10:00:00Z',
    dueDate: '2028-02-29', // Tue
    dueAt: '2028-02-29T22:59:59.999Z',
  },
  {
    name: '30 January of a leap year',
    receivedAt: '2028-01-30T10:00:00Z',
    dueDate: '2028-02-29',
    dueAt: '2028-02-29T22:59:59.999Z',
  },
  {
    name: '28 February gives 28 March, not the month end',
    receivedAt: '2025-02-28T10:00:00Z',
    dueDate: '2025-03-28', // Fri, still CET (summer time from 30 Mar)
    dueAt: '2025-03-28T22:59:59.999Z',
  },
  // Weekends (Art. 3(4)).
  {
    name: 'due on a Saturday moves to Monday',
    receivedAt: '2027-05-12T08:00:00Z', // Wed 12 May
    dueDate: '2027-06-14', // 12 Jun is a Saturday
    dueAt: '2027-06-14T21:59:59.999Z',
  },
  {
    name: 'due on a Sunday moves to Monday',
    receivedAt: '2027-05-13T08:00:00Z',
    dueDate: '2027-06-14', // 13 Jun is a Sunday
    dueAt: '2027-06-14T21:59:59.999Z',
  },
  {
    name: 'month end on a Sunday moves into the next month',
    receivedAt: '2027-01-31T10:00:00Z',
    dueDate: '2027-03-01', // 28 Feb 2027 is a Sunday
    dueAt: '2027-03-01T22:59:59.999Z',
  },
  // The receipt's local date, not its UTC date.
  {
    name: '23:30Z in winter is already the next day in Ljubljana',
    receivedAt: '2027-02-10T23:30:00Z', // Thu 11 Feb 00:30 CET (the UTC date would give 10 Mar)
    dueDate: '2027-03-11', // Thu
    dueAt: '2027-03-11T22:59:59.999Z',
  },
  {
    name: 'the last millisecond before local midnight is still that day',
    receivedAt: '2027-04-13T21:59:59.999Z', // Tue 13 Apr 23:59:59.999 CEST
    dueDate: '2027-05-13', // Thu
    dueAt: '2027-05-13T21:59:59.999Z',
  },
  {
    name: 'local midnight starts the next day',
    receivedAt: '2027-04-13T22:00:00Z', // Wed 14 Apr 00:00 CEST
    dueDate: '2027-05-14', // Fri
    dueAt: '2027-05-14T21:59:59.999Z',
  },
  {
    name: 'New York: still the previous day, so 31 May into June',
    receivedAt: '2027-06-01T02:00:00Z', // Mon 31 May 22:00 EDT (the UTC date would give 1 Jul)
    timeZone: 'America/New_York',
    dueDate: '2027-06-30', // Wed
    dueAt: '2027-07-01T03:59:59.999Z', // 30 Jun 23:59:59.999 EDT
  },
  {
    name: 'Tokyo: already the next day',
    receivedAt: '2027-03-14T15:30:00Z', // Mon 15 Mar 00:30 JST (the UTC date would give 14 Apr)
    timeZone: 'Asia/Tokyo',
    dueDate: '2027-04-15', // Thu
    dueAt: '2027-04-15T14:59:59.999Z',
  },
  // DST transitions: the end of the due day in the offset in force that day.
  {
    name: 'Berlin: due on the spring-forward Sunday, moved to Monday in summer time',
    receivedAt: '2027-02-28T12:00:00Z', // Sun 28 Feb, CET
    timeZone: 'Europe/Berlin',
    dueDate: '2027-03-29', // 28 Mar is the Sunday clocks go forward
    dueAt: '2027-03-29T21:59:59.999Z', // CEST, not 22:59:59.999Z
  },
  {
    name: 'Berlin: received on the spring-forward Sunday just after local midnight',
    receivedAt: '2027-03-27T23:30:00Z', // Sun 28 Mar 00:30 CET
    timeZone: 'Europe/Berlin',
    dueDate: '2027-04-28', // Wed
    dueAt: '2027-04-28T21:59:59.999Z',
  },
  {
    name: 'Berlin: the Friday before the fall-back Sunday is still summer time',
    receivedAt: '2027-09-29T08:00:00Z', // Wed 29 Sep
    timeZone: 'Europe/Berlin',
    dueDate: '2027-10-29', // Fri
    dueAt: '2027-10-29T21:59:59.999Z',
  },
  {
    name: 'Berlin: received in summer time, due in winter time',
    receivedAt: '2027-09-30T08:00:00Z', // Thu 30 Sep
    timeZone: 'Europe/Berlin',
    dueDate: '2027-11-01', // 30 Oct is a Saturday; 1 Nov is only an observance in DE
    dueAt: '2027-11-01T22:59:59.999Z', // CET
  },
  {
    name: 'New York: fall-back Sunday moves to Monday in EST',
    receivedAt: '2027-10-07T14:00:00Z', // Thu 7 Oct, EDT
    timeZone: 'America/New_York',
    dueDate: '2027-11-08', // 7 Nov is the Sunday clocks go back
    dueAt: '2027-11-09T04:59:59.999Z', // 8 Nov 23:59:59.999 EST
  },
  {
    // Israel changes its clocks on a Friday, so a due day can be the 23-hour day itself.
    // Reg. 1182/71 knows Saturday and Sunday as the weekend, so Friday stays a working day.
    name: 'Jerusalem: due on the spring-forward Friday',
    receivedAt: '2027-02-26T09:00:00Z', // Fri 26 Feb, +02:00
    timeZone: 'Asia/Jerusalem',
    dueDate: '2027-03-26',
    dueAt: '2027-03-26T20:59:59.999Z', // +03:00 from 02:00 that morning
  },
  // Extensions (Art. 12(3)): counted again from the receipt.
  {
    name: 'one extra month from 31 January is 31 March',
    receivedAt: '2027-01-31T10:00:00Z',
    extensionMonths: 1,
    dueDate: '2027-03-31', // Wed; from the moved 1 Mar it would be 1 Apr
    dueAt: '2027-03-31T21:59:59.999Z',
  },
  {
    name: 'two extra months (three in all) from 31 January is 30 April',
    receivedAt: '2027-01-31T10:00:00Z',
    extensionMonths: 2,
    dueDate: '2027-04-30', // Fri; from the moved 1 Mar: 3 May, from 28 Feb: 28 Apr
    dueAt: '2027-04-30T21:59:59.999Z',
  },
  {
    name: 'three months in all, into a leap February',
    receivedAt: '2027-11-30T10:00:00Z', // Tue 30 Nov
    extensionMonths: 2,
    dueDate: '2028-02-29', // Tue
    dueAt: '2028-02-29T22:59:59.999Z',
  },
  // Public holidays of the account's country (Art. 3(4)).
  {
    name: 'SI: due on Prešeren Day moves to the next day',
    receivedAt: '2027-01-08T10:00:00Z', // Fri 8 Jan
    holidayCountry: 'SI',
    dueDate: '2027-02-09', // Mon 8 Feb is a public holiday in SI
    dueAt: '2027-02-09T22:59:59.999Z',
  },
  {
    name: 'Prešeren Day without a holiday country does not move',
    receivedAt: '2027-01-08T10:00:00Z',
    holidayCountry: null,
    dueDate: '2027-02-08',
    dueAt: '2027-02-08T22:59:59.999Z',
  },
  {
    name: 'Prešeren Day is not a holiday in DE (Rosenmontag is only an observance)',
    receivedAt: '2027-01-08T10:00:00Z',
    holidayCountry: 'DE',
    dueDate: '2027-02-08',
    dueAt: '2027-02-08T22:59:59.999Z',
  },
  {
    name: 'SI: Statehood Day on a Friday, then the weekend',
    receivedAt: '2027-05-25T10:00:00Z', // Tue 25 May
    holidayCountry: 'SI',
    dueDate: '2027-06-28', // Fri 25 Jun holiday, 26-27 weekend
    dueAt: '2027-06-28T21:59:59.999Z',
  },
  {
    name: 'Statehood Day of SI does not move an Austrian deadline',
    receivedAt: '2027-05-25T10:00:00Z',
    holidayCountry: 'AT',
    dueDate: '2027-06-25',
    dueAt: '2027-06-25T21:59:59.999Z',
  },
  {
    name: 'SI: Easter Sunday, then Easter Monday, across the DST change',
    receivedAt: '2027-02-28T12:00:00Z',
    holidayCountry: 'SI',
    dueDate: '2027-03-30', // 28 Mar Easter Sunday, 29 Mar Easter Monday
    dueAt: '2027-03-30T21:59:59.999Z', // CEST
  },
  {
    name: 'SI: New Year on Friday, 2 January (also a holiday) on Saturday',
    receivedAt: '2026-12-01T10:00:00Z', // Tue 1 Dec
    holidayCountry: 'SI',
    dueDate: '2027-01-04', // 1 Jan Fri, 2 Jan Sat, 3 Jan Sun
    dueAt: '2027-01-04T22:59:59.999Z',
  },
  {
    name: 'SI: an observance (St Martin’s Day) does not move it',
    receivedAt: '2027-10-11T10:00:00Z', // Mon 11 Oct
    holidayCountry: 'SI',
    dueDate: '2027-11-11', // Thu, Martinovanje is an observance
    dueAt: '2027-11-11T22:59:59.999Z',
  },
  {
    name: 'DE: German Unity Day moves it',
    receivedAt: '2028-09-03T10:00:00Z', // Sun 3 Sep
    timeZone: 'Europe/Berlin',
    holidayCountry: 'DE',
    dueDate: '2028-10-04', // Tue 3 Oct is a public holiday in DE
    dueAt: '2028-10-04T21:59:59.999Z',
  },
  {
    name: 'German Unity Day does not move a Slovenian deadline',
    receivedAt: '2028-09-03T10:00:00Z',
    holidayCountry: 'SI',
    dueDate: '2028-10-03',
    dueAt: '2028-10-03T21:59:59.999Z',
  },
];

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
