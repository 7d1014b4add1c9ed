import { DateTime } from 'luxon';
import t from 'tap';
import { daysRemaining } from '../../src/modules/data-subject-requests/deadlines.js';

/**
 * daysRemaining places an instant in the account's zone with Intl directly, not through luxon,
 * which the deadlines themselves use. These tests hold the two to the same local date: in every
 * zone the runtime knows, around every offset change of the zones whose clocks jump at or
 * across midnight, and in early centuries.
 */

const DAY_MS = 86_400_000;
const DUE_DATE = '2027-03-01';

/** What luxon makes of it: days from the local date of `at` in `zone` to `dueDate`. */
function luxonDays(dueDate: string, zone: string, at: number): number {
  const local = DateTime.fromMillis(at, { zone });
  const localDay = DateTime.fromObject(
    { year: local.year, month: local.month, day: local.day },
    { zone: 'utc' },
  );
  const due = DateTime.fromISO(dueDate, { zone: 'utc' });
  return Math.round((due.toMillis() - localDay.toMillis()) / DAY_MS);
}

/** A repeatable spread of instants (a linear congruential generator, fixed seed). */
function* instants(count: number, fromMs: number, toMs: number): Generator<number> {
  let seed = 12_345;
  for (let i = 0; i < count; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    yield fromMs + Math.floor((seed / 2_147_483_648) * (toMs - fromMs));
  }
}

t.test('every zone, instants from 1900 to 2100', async (t) => {
  const zones = Intl.supportedValuesOf('timeZone');
  t.ok(zones.length > 300, 'the runtime knows the IANA zones');
  let mismatches = 0;
  for (const zone of zones) {
    for (const at of instants(40, Date.UTC(1900, 0, 1), Date.UTC(2100, 0, 1))) {
      const expected = luxonDays(DUE_DATE, zone, at);
      const actual = daysRemaining(DUE_DATE, zone, new Date(at));
      if (actual !== expected) {
        mismatches++;
        t.equal(actual, expected, `${new Date(at).toISOString()} in ${zone}`);
      }
    }
  }
  t.equal(mismatches, 0, 'no instant lands on another local date than luxon shows');
});

t.test('around offset changes, midnight jumps included', async (t) => {
  // Clocks that jump at or across local midnight, a day skipped (Apia, December 2011), odd
  // offsets (Kathmandu +05:45, Lord Howe's half-hour summer time), and the extremes (+14, -11).
  const zones = [
    'America/Santiago',
    'America/Havana',
    'America/Asuncion',
    'America/Sao_Paulo',
    'Asia/Beirut',
    'Africa/Cairo',
    'Pacific/Apia',
    'Australia/Lord_Howe',
    'Asia/Kathmandu',
    'Pacific/Kiritimati',
    'Pacific/Pago_Pago',
    'Europe/Ljubljana',
    'America/New_York',
  ];
  let checked = 0;
  let mismatches = 0;
  for (const zone of zones) {
    // Days whose offset differs from the next day's hold a change; look at them closely.
    for (let dayMs = Date.UTC(2010, 0, 1); dayMs < Date.UTC(2028, 0, 1); dayMs += DAY_MS) {
      const before = DateTime.fromMillis(dayMs, { zone }).offset;
      const after = DateTime.fromMillis(dayMs + DAY_MS, { zone }).offset;
      if (before === after) continue;
      for (let at = dayMs - DAY_MS; at <= dayMs + 2 * DAY_MS; at += 15 * 60_000) {
        for (const probe of [at - 1, at, at + 1]) {
          checked++;
          const expected = luxonDays(DUE_DATE, zone, probe);
          const actual = daysRemaining(DUE_DATE, zone, new Date(probe));
          if (actual !== expected) {
            mismatches++;
            t.equal(actual, expected, `${new Date(probe).toISOString()} in ${zone}`);
          }
        }
      }
    }
  }
  t.ok(checked > 10_000, `${checked} instants around offset changes`);
  t.equal(mismatches, 0, 'no instant lands on another local date than luxon shows');
});

t.test('early centuries: years below 1000, and BC', async (t) => {
  for (const zone of ['UTC', 'Europe/Ljubljana', 'Asia/Tokyo', 'America/Los_Angeles']) {
    for (const year of [-500, 0, 1, 50, 99, 100, 999, 1000]) {
      for (const [month, day, hour] of [
        [0, 1, 0],
        [0, 1, 23],
        [5, 15, 12],
        [11, 31, 23],
      ] as const) {
        const date = new Date(0);
        date.setUTCFullYear(year, month, day);
        date.setUTCHours(hour, 30);
        const at = date.getTime();
        t.equal(
          daysRemaining(DUE_DATE, zone, date),
          luxonDays(DUE_DATE, zone, at),
          `${date.toISOString()} in ${zone}`,
        );
      }
    }
  }
});

t.test('an unknown zone or an invalid instant is refused', async (t) => {
  t.throws(() => daysRemaining(DUE_DATE, 'Mars/Olympus_Mons', new Date()), RangeError);
  t.throws(() => daysRemaining(DUE_DATE, 'Europe/Ljubljana', new Date(Number.NaN)), RangeError);
});
