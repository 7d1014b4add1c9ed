import { z } from 'zod';
import { canonicalizeEmail, EMAIL_MAX_LENGTH } from '../lib/email.js';

/** Shared wire primitives: ids, emails, timestamps, pagination. One definition each. */

/**
 * The longest path segment the router accepts (414 `uri_too_long` past it, before routing).
 * Every path parameter's schema stays within it, so the contract promises nothing the router
 * refuses: ids are 36 characters, link tokens 43.
 */
export const MAX_PATH_SEGMENT_LENGTH = 200;

export const Id = z.uuid().describe('A UUID.');
export const IdParams = z.object({ id: Id });

/**
 * A person's sign-in address (users, operators, DPO contact): zod's plain email check, then the
 * one spelling rule every address in the system follows (`canonicalizeEmail` in lib/email.ts),
 * so a user is found whatever case they type. Contacts use the stricter `ContactEmail`, which
 * normalises through the same function.
 */
export const Email = z
  .email()
  .max(EMAIL_MAX_LENGTH)
  .transform(canonicalizeEmail)
  .describe('An email address (stored lower-cased).');

/** ISO-8601 in UTC with an offset, as every timestamp on the wire. */
export const Timestamp = z.iso.datetime({ offset: true }).describe('ISO-8601 timestamp.');

/**
 * A timestamp in a response. We produce these ourselves (always `toISOString()`), so the
 * serializer need not re-validate the format on every response; the contract still says
 * `date-time`.
 */
export const Instant = z
  .string()
  .meta({ format: 'date-time', description: 'ISO-8601 timestamp in UTC.' });

export function toIso(value: Date | string): string;
export function toIso(value: Date | string | null): string | null;
export function toIso(value: Date | string | null): string | null {
  if (value === null) return null;
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

/** The `Idempotency-Key` header's value: what the idempotency store keys a replay by. */
export const IdempotencyKey = z.string().min(1).max(255);

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Page size (1–200).'),
  cursor: z
    .string()
    .max(512)
    .optional()
    .describe('Opaque cursor from the previous page’s `nextCursor`.'),
});

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({
    data: z.array(item),
    nextCursor: z
      .string()
      .nullable()
      .describe('Pass as `cursor` to get the next page; null on the last page.'),
  });
}
