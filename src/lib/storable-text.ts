/**
 * Text that Postgres cannot store, found before it gets there.
 *
 * JSON lets a client send two kinds of strings that are not text to Postgres:
 * - NUL, as the escape `\u0000`: `text` and `jsonb` refuse it ("invalid byte sequence",
 *   "unsupported Unicode escape sequence"), so the statement fails and the caller would get a
 *   500 for what is a bad request;
 * - a lone UTF-16 surrogate, as an escape such as `\ud800`: not a character at all. Sent as a
 *   parameter it would be stored silently as U+FFFD (the data changed behind the caller's back);
 *   inside a JSON parameter Postgres refuses it.
 * Both are refused as bad input instead, with the field named and the value never echoed.
 */

const NUL = '\u0000';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export interface UnstorableText {
  /** Keys and array indexes from the root to the string (or to the object whose key it is). */
  path: string[];
  code: 'invalid_characters' | 'invalid_encoding';
  message: string;
}

/** Why `text` cannot be stored, or null when it can. */
export function textProblem(text: string): Omit<UnstorableText, 'path'> | null {
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
 * A string in `value` (a parsed JSON body, a query or path parameters), or a key of one of its
 * objects, that Postgres cannot store; null when there is none. Only arrays and plain objects
 * are entered (a streamed body is left alone), iteratively, so no nesting depth can overflow
 * the stack.
 */
export function findUnstorableText(value: unknown): UnstorableText | null {
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
  }
  const pathOf = (entry: Entry, key?: string) => {
    const path = key === undefined ? [] : [key];
    for (let at: Entry | null = entry; at?.parent; at = at.parent) path.push(at.key);
    return path.reverse();
  };
  const pending: Entry[] = [{ node: value, parent: null, key: '' }];
  for (let entry = pending.pop(); entry; entry = pending.pop()) {
    for (const [key, child] of Object.entries(entry.node)) {
      const keyProblem = textProblem(key);
      // A key is data too: name the object that holds it, never the key itself.
      if (keyProblem) return { path: pathOf(entry), ...keyProblem };
      if (typeof child === 'string') {
        const problem = textProblem(child);
        if (problem) return { path: pathOf(entry, key), ...problem };
      } else if (isContainer(child)) {
        pending.push({ node: child, parent: entry, key });
      }
    }
  }
  return null;
}
