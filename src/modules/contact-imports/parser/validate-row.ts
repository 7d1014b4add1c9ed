/** Validation shared by both formats: a decoded record in, an accepted row or row errors out. */

import type { z } from 'zod';
import {
  type ImportParseResult,
  type ImportRow,
  type ImportRowError,
  ImportRowSchema,
  isPlainObject,
  type RejectedImportRow,
} from './row-schema.js';

export interface Settings {
  missingConsent: 'reject' | 'pending_double_opt_in';
  maxRowBytes: number;
  csvDelimiter: ',' | ';' | '\t';
}

/** Field names that may appear in an error as they are; anything else might be data. */
const SAFE_FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function describeExpected(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'object':
      return 'an object';
    case 'number':
      return 'a number';
    default:
      return `a ${expected}`;
  }
}

function valueAt(candidate: Record<string, unknown>, path: PropertyKey[]): unknown {
  let value: unknown = candidate;
  for (const key of path) {
    if (!isPlainObject(value)) return undefined;
    value = value[String(key)];
  }
  return value;
}

/** Our own message per zod issue: zod's can quote input (unrecognised keys, for one). */
function toRowErrors(
  issue: z.core.$ZodIssue,
  candidate: Record<string, unknown>,
): ImportRowError[] {
  const field = issue.path.map(String).join('.') || null;
  if (
    (issue.code === 'invalid_type' || issue.code === 'invalid_value') &&
    valueAt(candidate, issue.path) === undefined
  ) {
    return [{ field, code: 'required', message: 'is required' }];
  }
  switch (issue.code) {
    case 'invalid_type':
      return [
        { field, code: 'invalid_type', message: `must be ${describeExpected(issue.expected)}` },
      ];
    case 'too_big':
      return [
        {
          field,
          code: issue.origin === 'string' ? 'too_long' : 'too_big',
          message:
            issue.origin === 'string'
              ? `must be at most ${issue.maximum} characters`
              : `must be at most ${issue.maximum}`,
        },
      ];
    case 'too_small':
      return [
        {
          field,
          code: 'too_small',
          message: issue.origin === 'string' ? 'must not be empty' : `must be at least 1`,
        },
      ];
    case 'invalid_format': {
      const expected: Record<string, string> = {
        datetime: 'must be an ISO 8601 timestamp with a time zone, e.g. 2025-05-01T09:30:00Z',
        url: 'must be an http or https URL',
        regex:
          field === 'consent.purpose'
            ? 'must be a purpose key: lower-case letters, digits, - and _'
            : 'has an invalid format',
      };
      return [{ field, code: 'invalid_format', message: expected[issue.format] ?? 'is invalid' }];
    }
    case 'invalid_value':
      return [
        { field, code: 'invalid_value', message: `must be one of: ${issue.values.join(', ')}` },
      ];
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        field: SAFE_FIELD_NAME.test(key) ? [...issue.path.map(String), key].join('.') : field,
        code: 'unknown_field',
        message: 'is not a recognised field',
      }));
    case 'custom': {
      const code = typeof issue.params?.code === 'string' ? issue.params.code : 'invalid';
      const message =
        code === 'invalid_ip' ? 'must be an IPv4 or IPv6 address' : issue.message || 'is invalid';
      return [{ field, code, message }];
    }
    default:
      return [{ field, code: 'invalid', message: 'is invalid' }];
  }
}

/** Validates one candidate row and applies the missing-consent policy. */
export function validateRow(
  rowNumber: number,
  candidate: Record<string, unknown>,
  settings: Settings,
  fieldName: (field: string | null) => string | null = (field) => field,
): ImportParseResult {
  const parsed = ImportRowSchema.safeParse(candidate);
  const errors = parsed.success
    ? []
    : parsed.error.issues.flatMap((issue) => toRowErrors(issue, candidate));
  const consentMissing = candidate.consent === undefined;
  if (consentMissing && settings.missingConsent === 'reject') {
    errors.push({
      field: 'consent',
      code: 'consent_missing',
      message: 'consent evidence is required (or import with pending double opt-in)',
    });
  }
  if (errors.length > 0 || !parsed.success) {
    return {
      rowNumber,
      errors: errors.map((error) => ({ ...error, field: fieldName(error.field) })),
    };
  }
  const { consent, ...profile } = parsed.data;
  const row: ImportRow =
    consent === undefined
      ? { ...profile, pendingDoubleOptIn: true }
      : { ...profile, consent, pendingDoubleOptIn: false };
  return { rowNumber, row };
}

export function rowError(rowNumber: number, code: string, message: string): RejectedImportRow {
  return { rowNumber, errors: [{ field: null, code, message }] };
}
