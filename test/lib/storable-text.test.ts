import { Readable } from 'node:stream';
import t from 'tap';
import { findUnstorableText, textProblem } from '../../src/lib/storable-text.js';

t.test('NUL and lone surrogates are found; real text, emoji included, is not', async (t) => {
  t.equal(textProblem('Ana Novak, Ljubljana ☕ 😀'), null);
  t.equal(textProblem('a\u0000b')?.code, 'invalid_characters');
  t.equal(textProblem('a\ud800b')?.code, 'invalid_encoding', 'a high surrogate alone');
  t.equal(textProblem('a\udc00b')?.code, 'invalid_encoding', 'a low surrogate alone');
  t.equal(textProblem('\ud83d')?.code, 'invalid_encoding', 'half an emoji at the end');
  t.equal(textProblem('\ud83d\ude00'), null, 'a whole pair');
});

t.test('the path names where the problem is, never the value', async (t) => {
  t.same(findUnstorableText({ a: 'ok', evidence: { userAgent: 'x\u0000' } })?.path, [
    'evidence',
    'userAgent',
  ]);
  t.same(findUnstorableText({ items: ['ok', { name: '\ud800' }] })?.path, ['items', '1', 'name']);
  // A key is data as well: the object holding it is named.
  t.same(findUnstorableText({ attributes: { 'k\u0000': 1 } })?.path, ['attributes']);
  t.same(findUnstorableText('top\u0000')?.path, []);
  const found = findUnstorableText({ secret: 'hunter2\u0000' });
  t.notMatch(JSON.stringify(found), /hunter2/);
});

t.test('clean input, numbers and non-JSON objects pass', async (t) => {
  t.equal(findUnstorableText({ a: 1, b: [true, null, 'x'], c: { d: 'é' } }), null);
  t.equal(findUnstorableText(undefined), null);
  t.equal(findUnstorableText(42), null);
  t.equal(findUnstorableText(Readable.from(['a\u0000'])), null, 'a streamed body is left alone');
});

t.test('no nesting depth overflows the stack', async (t) => {
  let deep: unknown = 'end\u0000';
  for (let i = 0; i < 200_000; i += 1) deep = [deep];
  const found = findUnstorableText(deep);
  t.equal(found?.code, 'invalid_characters');
  t.equal(found?.path.length, 200_000);
});

t.test('objects of the query parser (a prototype without a prototype) are searched', async (t) => {
  const query: Record<string, unknown> = Object.create(Object.create(null));
  query.email = 'a\u0000b';
  t.same(findUnstorableText(query)?.path, ['email']);
});
