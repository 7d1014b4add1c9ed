export interface LineDifference {
  /** 1-based line number of the first line that differs. */
  line: number;
  /** That line in the expected text, or `undefined` past its end. */
  expected: string | undefined;
  /** That line in the actual text, or `undefined` past its end. */
  actual: string | undefined;
}

/**
 * The first line where two texts differ, to point a person at a stale generated file without
 * dumping it whole. Returns `undefined` when the texts are equal.
 */
export function firstDifference(expected: string, actual: string): LineDifference | undefined {
  if (expected === actual) return undefined;
  const a = expected.split('\n');
  const b = actual.split('\n');
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return { line: i + 1, expected: a[i], actual: b[i] };
  }
  return { line: length, expected: a.at(-1), actual: b.at(-1) };
}
