import { z } from 'zod';
import type { NoticeVersionRow, PurposeRow } from '../../db/schema.js';
import { Id, Timestamp, toIso } from '../../http/schemas.js';

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a string shaped like a UUID: in a path, a purpose's id rather than its key. */
export function looksLikeUuid(value: string): boolean {
  return UUID_SHAPE.test(value);
}

/** A purpose's stable handle, chosen by the customer: lower-case words joined by `-` or `_`. */
export const PurposeKey = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9]+(?:[-_][a-z0-9]+)*$/, 'must be a slug such as newsletter or product-news')
  .describe('Slug, unique within the account; cannot be changed.');

/**
 * A new purpose's key: also not shaped like a UUID, since a path names a purpose by its id or
 * its key (`/v1/purposes/newsletter`) and must not have to guess which.
 */
const NewPurposeKey = PurposeKey.refine((key) => !looksLikeUuid(key), {
  message: 'must not look like a UUID (paths name a purpose by its id or its key)',
});

/** A purpose in a path: its id, or its key as imports and consent evidence name it. */
export const PurposeRef = z
  .union([Id, PurposeKey])
  .describe('The purpose’s id, or its key (`newsletter`).');

export const PurposeParams = z.object({ id: PurposeRef });

/** A BCP 47 language tag (`en`, `sl`, `de-AT`). */
export const LanguageTag = z
  .string()
  .min(2)
  .max(35)
  .regex(/^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$/, 'must be a language tag such as en or de-AT')
  .describe('BCP 47 language tag.');

/** A notice version number: 1, 2, 3, … per purpose. */
export const NoticeVersionNumber = z.number().int().min(1).max(2_147_483_647);

export const PurposeSchema = z
  .object({
    id: Id,
    key: PurposeKey,
    name: z.string(),
    description: z.string().nullable(),
    category: z.string().describe('Purpose category stated on consent receipts.'),
    latestNoticeVersion: NoticeVersionNumber.nullable().describe(
      'The newest notice version, or null before the first notice is written.',
    ),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .meta({
    id: 'Purpose',
    example: {
      id: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
      key: 'newsletter',
      name: 'Monthly newsletter',
      description: 'News about our products, once a month.',
      category: 'Marketing',
      latestNoticeVersion: 2,
      createdAt: '2026-11-20T15:00:00.000Z',
      updatedAt: '2026-11-20T15:00:00.000Z',
    },
  });

export const CreatePurposeBody = z
  .object({
    key: NewPurposeKey,
    name: z.string().trim().min(1).max(200),
    description: z.string().trim().max(2000).nullable().optional(),
    category: z.string().trim().min(1).max(100).optional(),
  })
  .strict()
  .meta({
    example: {
      key: 'newsletter',
      name: 'Monthly newsletter',
      description: 'News about our products, once a month.',
      category: 'Marketing',
    },
  });

export const UpdatePurposeBody = z
  .object({
    name: z.string().trim().min(1).max(200).optional(),
    description: z.string().trim().max(2000).nullable().optional(),
    category: z.string().trim().min(1).max(100).optional(),
  })
  .strict()
  .refine((body) => Object.values(body).some((v) => v !== undefined), {
    message: 'name one field to change',
  })
  // The refinement, as the contract can say it.
  .meta({
    minProperties: 1,
    example: { name: 'Weekly newsletter', description: 'News, once a week.' },
  });

const NOTICE_EXAMPLE = {
  purposeId: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
  version: 2,
  language: 'en',
  textSha256: '5ed6c08b8fe71c7a0f8e699b8dfd0f6b0a335b5f209d478d059c939fffba09fa',
  createdAt: '2026-11-20T15:05:00.000Z',
  firstUsedAt: '2026-11-20T16:00:00.000Z',
};

export const NoticeVersionSummarySchema = z
  .object({
    purposeId: Id,
    version: NoticeVersionNumber,
    language: z.string().nullable(),
    textSha256: z.string().describe('SHA-256 of the UTF-8 text, lower-case hex.'),
    createdAt: Timestamp,
    firstUsedAt: Timestamp.nullable().describe(
      'When a consent event first referred to this version; from then on it cannot be removed.',
    ),
  })
  .meta({ id: 'NoticeVersionSummary', example: NOTICE_EXAMPLE });

export const NoticeVersionSchema = NoticeVersionSummarySchema.extend({
  text: z.string().describe('The notice exactly as shown to the person.'),
}).meta({
  id: 'NoticeVersion',
  description: 'One version of a purpose’s notice text. Versions are never edited.',
  example: {
    ...NOTICE_EXAMPLE,
    text: 'We send you our newsletter once a month. You can unsubscribe at any time.',
  },
});

export const CreateNoticeBody = z
  .object({
    text: z.string().min(1).max(50_000).describe('The notice exactly as it will be shown.'),
    language: LanguageTag,
  })
  .strict()
  .meta({
    example: {
      text: 'We send you our newsletter once a month. You can unsubscribe at any time.',
      language: 'en',
    },
  });

export const NoticeParams = z.object({
  id: PurposeRef,
  version: z.coerce.number().int().min(1).max(2_147_483_647).describe('The notice version number.'),
});

export function toPurpose(
  row: PurposeRow & { latest_notice_version: number | null },
): z.infer<typeof PurposeSchema> {
  return {
    id: row.id,
    key: row.key,
    name: row.name,
    description: row.description,
    category: row.category,
    latestNoticeVersion: row.latest_notice_version,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
  };
}

export function toNoticeVersionSummary(
  row: Omit<NoticeVersionRow, 'text'>,
): z.infer<typeof NoticeVersionSummarySchema> {
  return {
    purposeId: row.purpose_id,
    version: row.version,
    language: row.language,
    textSha256: row.text_sha256,
    createdAt: toIso(row.created_at),
    firstUsedAt: toIso(row.first_used_at),
  };
}

export function toNoticeVersion(row: NoticeVersionRow): z.infer<typeof NoticeVersionSchema> {
  return { ...toNoticeVersionSummary(row), text: row.text };
}
