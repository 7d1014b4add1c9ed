import { Readable } from 'node:stream';
import t from 'tap';
import { findInputProblem, MAX_INPUT_DEPTH, textProblem } from '../../src/lib/storable-input.js';

t.test('NUL and lone surrogates are found; real text, emoji included, is not', async (t) => {
  t.equal(textProblem('Ana Novak, Ljubljana ☕ 😀'), null);
  t.equal(textProblem('a\u0000b')?.code, 'invalid_characters');
  t.equal(textProblem('a\ud800b')?.code, 'invalid_encoding', 'a high surrogate alone');
  t.equal(textProblem('a\udc00b')?.code, 'invalid_encoding', 'a low surrogate alone');
  t.equal(textProblem('\ud83d')?.code, 'invalid_encoding', 'half an emoji at the end');
  t.equal(textProblem('\ud83d\ude00'), null, 'a whole pair');
});

t.test('the path names where the problem is, never the value', async (t) => {
  t.same(findInputProblem({ a: 'ok', evidence: { userAgent: 'x\u0000' } })?.path, [
    'evidence',
    'userAgent',
  ]);
  t.same(findInputProblem({ items: ['ok', { name: '\ud800' }] })?.path, ['items', '1', 'name']);
  // A key is data as well: the object holding it is named.
  t.same(findInputProblem({ attributes: { 'k\u0000': 1 } })?.path, ['attributes']);
  t.same(findInputProblem('top\u0000')?.path, []);
  const found = findInputProblem({ secret: 'hunter2\u0000' });
  t.notMatch(JSON.stringify(found), /hunter2/);
});

t.test('clean input, numbers and non-JSON objects pass', async (t) => {
  t.equal(findInputProblem({ a: 1, b: [true, null, 'x'], c: { d: 'é' } }), null);
  t.equal(findInputProblem(undefined), null);
  t.equal(findInputProblem(42), null);
  t.equal(findInputProblem(Readable.from(['a\u0000'])), null, 'a streamed body is left alone');
});

t.test('nesting deeper than the limit is refused at the limit, never overflowing', async (t) => {
  let deep: unknown = 'end';
  for (let i = 0; i < 200_000; i += 1) deep = [deep];
  const found = findInputProblem({ attributes: deep });
  t.equal(found?.code, 'too_deep');
  t.equal(found?.path.length, MAX_INPUT_DEPTH);
  t.same(found?.path.slice(0, 2), ['attributes', '0']);

  let atLimit: unknown = 'ok';
  for (let i = 0; i < MAX_INPUT_DEPTH; i += 1) atLimit = { a: atLimit };
  t.equal(findInputProblem(atLimit), null, `${MAX_INPUT_DEPTH} levels are fine`);
  t.equal(findInputProblem({ a: atLimit })?.code, 'too_deep', 'one more is not');
});

t.test('numbers JSON.parse made infinite are refused; ordinary ones pass', async (t) => {
  t.same(findInputProblem(JSON.parse('{"attributes":{"x":1e400}}')), {
    path: ['attributes', 'x'],
    code: 'not_finite',
    message: 'is a number too large to represent',
  });
  t.equal(findInputProblem({ n: -1.5e300, m: 0, k: 2 ** 53 }), null);
});

t.test('objects of the query parser (a prototype without a prototype) are searched', async (t) => {
  const query: Record<string, unknown> = Object.create(Object.create(null));
  query.email = 'a\u0000b';
  t.same(findInputProblem(query)?.path, ['email']);
});
