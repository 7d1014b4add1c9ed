import t from 'tap';
import { afterInTurns } from '../../src/modules/contact-imports/contact-imports.service.js';

/** Results that are all available at once, as from a body already buffered: no I/O between. */
async function* buffered(count: number) {
  for (let rowNumber = 1; rowNumber <= count; rowNumber += 1) yield { rowNumber };
}

t.test('the parse-ahead lets the event loop turn every few rows', async (t) => {
  let consumed = 0;
  const seenByCallbacks: number[] = [];
  // An I/O-like callback queued before parsing starts: without turns it would only run once
  // all 500 rows were through, holding back (for example) the database's answer that long.
  const ticker = setInterval(() => seenByCallbacks.push(consumed), 0);
  setImmediate(() => seenByCallbacks.push(consumed));
  for await (const _ of afterInTurns(buffered(500), 0, 64)) consumed += 1;
  clearInterval(ticker);

  t.equal(consumed, 500);
  t.ok(seenByCallbacks.length > 0, 'callbacks ran while parsing');
  t.ok(
    seenByCallbacks[0]! <= 64,
    `first callback after ${seenByCallbacks[0]} rows, not at the end`,
  );
  t.ok(
    seenByCallbacks.some((n) => n > 0 && n < 500),
    'callbacks ran in the middle of the rows, not only before and after',
  );
});

t.test('rows an earlier attempt committed are skipped, the rest kept in order', async (t) => {
  const kept: number[] = [];
  for await (const result of afterInTurns(buffered(10), 6, 3)) kept.push(result.rowNumber);
  t.same(kept, [7, 8, 9, 10]);
});
