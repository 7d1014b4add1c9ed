import { z } from 'zod';
import type { BreachSubjectNoticeBatchRow, BreachSubjectNoticeRow } from '../../db/schema.js';
import { Id, Instant, PageQuery, toIso } from '../../http/schemas.js';
import { ContactFilter } from '../contacts/contacts.schemas.js';

export const EXEMPTION_GROUNDS = [
  'unintelligible',
  'risk_removed',
  'disproportionate_effort',
] as const;
export const NOTICE_STATUSES = ['pending', 'delivered', 'failed'] as const;

/** The most contacts one selection may name by id. */
export const MAX_SELECTED_IDS = 1000;
/** The most delivery reports one request may carry. */
export const MAX_DELIVERY_REPORTS = 500;

const Paragraph = z.string().trim().min(1).max(4000);

export const ExemptionBody = z
  .strictObject({
    ground: z
      .enum(EXEMPTION_GROUNDS)
      .describe(
        'Art. 34(3): (a) `unintelligible` (e.g. encrypted, the key safe), (b) `risk_removed` ' +
          '(measures since make the high risk unlikely), (c) `disproportionate_effort` (then ' +
          '`publicCommunication` is required).',
      ),
    explanation: Paragraph.describe('Why the ground applies, for the register.'),
    publicCommunication: z
      .strictObject({
        url: z.url({ protocol: /^https?$/ }).max(2000),
        publishedAt: z.iso.datetime({ offset: true }),
      })
      .optional()
      .describe('Art. 34(3)(c): where and when the public was told, in the people’s place.'),
  })
  .meta({
    example: {
      ground: 'unintelligible',
      explanation: 'The exported file was encrypted with AES-256; the key was not exposed.',
    },
  });
export type ExemptionInput = z.output<typeof ExemptionBody>;

const ALL = z.strictObject({ type: z.literal('all') }).describe('Every contact of the account.');
const BY_IDS = z
  .strictObject({
    type: z.literal('contacts'),
    contactIds: z.array(Id).min(1).max(MAX_SELECTED_IDS),
  })
  .describe(`Contacts by id (at most ${MAX_SELECTED_IDS}); an unknown id is a 422.`);
const BY_IMPORT = z
  .strictObject({ type: z.literal('import'), importId: Id })
  .describe(
    'The people an import’s file held: every contact the import created, updated or found ' +
      'unchanged (what `GET /v1/contacts?importId=` lists), e.g. when that file leaked. An ' +
      'unknown import is a 422; one still running is a 409.',
  );
const BY_FILTER = z
  .strictObject({ type: z.literal('filter'), filter: ContactFilter })
  .describe(
    'The contacts `GET /v1/contacts` lists with the same filters (given here as a JSON object ' +
      'of its query parameters).',
  );

export const Selection = z
  .discriminatedUnion('type', [ALL, BY_IDS, BY_IMPORT, BY_FILTER])
  .describe(
    'Who is told. Unsubscribed contacts and those without consent are included: a breach ' +
      'notice is a legal duty, not marketing. Erased contacts are gone, so never included.',
  );
export type SelectionInput = z.output<typeof Selection>;

/** The notice's four parts (Art. 34(2) with 33(3)(b)–(d)); each is required (422 when missing). */
export const NOTICE_TEXT_FIELDS = ['nature', 'contactPoint', 'consequences', 'measures'] as const;

export const NoticeText = z
  .strictObject({
    nature: Paragraph.optional().describe('Required. The nature of the breach, in plain words.'),
    contactPoint: Paragraph.optional().describe(
      'Required. Art. 33(3)(b): the DPO or other contact point and how to reach them.',
    ),
    consequences: Paragraph.optional().describe('Required. Art. 33(3)(c): likely consequences.'),
    measures: Paragraph.optional().describe(
      'Required. Art. 33(3)(d): measures taken or proposed, and what the person can do.',
    ),
  })
  .describe('Stored once for the batch, with its SHA-256.');

export const SubjectNoticesBody = z.strictObject({ selection: Selection, text: NoticeText }).meta({
  example: {
    selection: { type: 'filter', filter: { status: 'unsubscribed' } },
    text: {
      nature: 'A copy of our mailing list was readable by anyone with its link for two days.',
      contactPoint: 'Our DPO, dpo@example.com, +386 1 234 5678.',
      consequences: 'Your email address may receive unwanted mail or phishing.',
      measures: 'The link is disabled. Be wary of mail asking for your password.',
    },
  },
});
export type SubjectNoticesInput = z.output<typeof SubjectNoticesBody>;

export const ListNoticesQuery = PageQuery.extend({
  status: z.enum(NOTICE_STATUSES).optional().describe('`pending`: what the sender still owes.'),
});

export const DeliveryReportsBody = z
  .strictObject({
    reports: z
      .array(
        z.strictObject({
          noticeId: Id,
          status: z.enum(['delivered', 'failed']),
          at: z.iso.datetime({ offset: true }).optional().describe('Default: now.'),
          reason: z.string().trim().min(1).max(500).optional().describe('Why it failed.'),
        }),
      )
      .min(1)
      .max(MAX_DELIVERY_REPORTS),
  })
  .meta({
    example: {
      reports: [{ noticeId: '0190f3a2-7c1d-7e8f-9a0b-1c2d3e4f5a6b', status: 'delivered' }],
    },
  });
export type DeliveryReportsInput = z.output<typeof DeliveryReportsBody>;

export const BatchParams = z.object({ id: Id, batchId: Id });

export const ExemptionSchema = z
  .object({
    ground: z.enum(EXEMPTION_GROUNDS),
    explanation: z.string(),
    publicCommunication: z.object({ url: z.string(), publishedAt: Instant }).nullable(),
    recordedAt: Instant,
  })
  .nullable()
  .describe('Art. 34(3): the recorded ground for not telling the people one by one.');

export const NoticeBatchSchema = z
  .object({
    id: Id,
    incidentId: Id,
    selection: z.record(z.string(), z.unknown()),
    text: z.object({
      nature: z.string(),
      contactPoint: z.string(),
      consequences: z.string(),
      measures: z.string(),
    }),
    textSha256: z
      .string()
      .describe('SHA-256 (hex) of the UTF-8 canonical JSON of `text` (keys sorted).'),
    noticeCount: z
      .number()
      .int()
      .describe('Notices in the batch (fewer later when a person is erased).'),
    createdAt: Instant,
  })
  .meta({ id: 'BreachSubjectNoticeBatch' });

export const SubjectNoticeSchema = z
  .object({
    id: Id,
    incidentId: Id,
    batchId: Id,
    kind: z.literal('breach_notice'),
    status: z.enum(NOTICE_STATUSES),
    contact: z.object({
      id: Id,
      email: z.string(),
      firstName: z.string().nullable(),
      lastName: z.string().nullable(),
      language: z.string().nullable(),
    }),
    reportedAt: Instant.nullable(),
    failureReason: z.string().nullable(),
    createdAt: Instant,
    updatedAt: Instant,
  })
  .meta({ id: 'BreachSubjectNotice' });

export const DeliveryReportsAnswer = z.object({
  updated: z.number().int().describe('Notices whose status changed.'),
  unchanged: z.number().int().describe('Reports that repeated a notice’s status.'),
});

export function toNoticeBatch({
  batch: row,
  noticeCount,
}: {
  batch: BreachSubjectNoticeBatchRow;
  noticeCount: number;
}) {
  return {
    id: row.id,
    incidentId: row.incident_id,
    selection: row.selection,
    text: {
      nature: row.nature,
      contactPoint: row.contact_point,
      consequences: row.consequences,
      measures: row.measures,
    },
    textSha256: row.text_sha256,
    noticeCount,
    createdAt: toIso(row.created_at),
  };
}

export function toSubjectNotice(
  row: BreachSubjectNoticeRow,
  contact: {
    email: string;
    first_name: string | null;
    last_name: string | null;
    language: string | null;
  },
) {
  return {
    id: row.id,
    incidentId: row.incident_id,
    batchId: row.batch_id,
    kind: row.kind,
    status: row.status,
    contact: {
      id: row.contact_id,
      email: contact.email,
      firstName: contact.first_name,
      lastName: contact.last_name,
      language: contact.language,
    },
    reportedAt: toIso(row.reported_at),
    failureReason: row.failure_reason,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
  };
}
