/**
 * Request input that the service cannot store or safely process, found before it gets there.
 *
 * A JSON body can carry things that pass a schema but break further in:
 * - NUL, as the escape `\u0000`: Postgres's `text` and `jsonb` refuse it ("invalid byte
 *   sequence", "unsupported Unicode escape sequence"), so the statement fails and the caller
 *   would get a 500 for what is a bad request;
 * - a lone UTF-16 surrogate, as an escape such as `\ud800`: not a character at all. Sent as a
 *   parameter it would be stored silently as U+FFFD (the data changed behind the caller's back);
 *   inside a JSON parameter Postgres refuses it;
 * - nesting thousands of levels deep (`{"a":{"a":…}}` fits in a small body): serialising it
 *   again, to measure or store a free-form field, overflows the stack;
 * - a number too large for a double (`1e400`), which `JSON.parse` turns into Infinity and
 *   serialising turns into null: the value would change silently.
 * All are refused as bad input instead, with the field named and the value never echoed.
 */

const NUL = '\u0000';
/** A UTF-16 surrogate without its other half. */
export const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Deepest nesting accepted in any request part; no field of this API comes near it. */
export const MAX_INPUT_DEPTH = 32;

export interface InputProblem {
  /** Keys and array indexes from the root to the value (or to the object whose key it is). */
  path: string[];
  code: 'invalid_characters' | 'invalid_encoding' | 'too_deep' | 'not_finite';
  message: string;
}

/** Why `text` cannot be stored, or null when it can. */
export function textProblem(text: string): Omit<InputProblem, 'path'> | null {
  if (text.includes(NUL)) {
    return { code: 'invalid_characters', message: 'contains a NUL character (\\u0000)' };
  }
  if (LONE_SURROGATE.test(text)) {
    return {
      code: 'invalid_encoding',
      message: 'contains a lone UTF-16 surrogate, which is not valid Unicode',
    };
  }
  return null;
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  // The query parser's objects descend from a prototype that has none itself (fast-querystring).
  return proto === Object.prototype || proto === null || Object.getPrototypeOf(proto) === null;
}

/**
 * A problem in `value` (a parsed JSON body, a query or path parameters): a string or object key
 * Postgres cannot store, nesting deeper than {@link MAX_INPUT_DEPTH}, or a number that is not
 * finite; null when there is none. Only arrays and plain objects are entered (a streamed body is
 * left alone), iteratively, so the search itself never overflows the stack.
 */
export function findInputProblem(value: unknown): InputProblem | null {
  if (typeof value === 'string') {
    const problem = textProblem(value);
    return problem ? { path: [], ...problem } : null;
  }
  if (!isContainer(value)) return null;
  // Each entry knows its parent and key; the path is spelled out only for a problem found.
  interface Entry {
    node: Record<string, unknown> | unknown[];
    parent: Entry | null;
    key: string;
    depth: number;
  }
  const pathOf = (entry: Entry, key?: string) => {
    const path = key === undefined ? [] : [key];
    for (let at: Entry | null = entry; at?.parent; at = at.parent) path.push(at.key);
    return path.reverse();
  };
  const pending: Entry[] = [{ node: value, parent: null, key: '', depth: 1 }];
  for (let entry = pending.pop(); entry; entry = pending.pop()) {
    for (const [key, child] of Object.entries(entry.node)) {
      const keyProblem = textProblem(key);
      // A key is data too: name the object that holds it, never the key itself.
      if (keyProblem) return { path: pathOf(entry), ...keyProblem };
      if (typeof child === 'string') {
        const problem = textProblem(child);
        if (problem) return { path: pathOf(entry, key), ...problem };
      } else if (typeof child === 'number') {
        if (!Number.isFinite(child)) {
          return {
            path: pathOf(entry, key),
            code: 'not_finite',
            message: 'is a number too large to represent',
          };
        }
      } else if (isContainer(child)) {
        if (entry.depth >= MAX_INPUT_DEPTH) {
          return {
            path: pathOf(entry, key),
            code: 'too_deep',
            message: `is nested more than ${MAX_INPUT_DEPTH} levels deep`,
          };
        }
        pending.push({ node: child, parent: entry, key, depth: entry.depth + 1 });
      }
    }
  }
  return null;
}
