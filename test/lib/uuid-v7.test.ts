import t from 'tap';
import { uuidV7 } from '../../src/lib/uuid-v7.js';

t.test('a version-7 UUID carries its millisecond in front', async (t) => {
  const at = new Date('2026-12-03T18:00:00.123Z');
  const id = uuidV7(at);
  t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16), at.getTime());
  t.not(uuidV7(at), id, 'random apart from the time');
  const later = uuidV7(new Date(at.getTime() + 1));
  t.ok(later > id, 'ids of later milliseconds sort after');
});
