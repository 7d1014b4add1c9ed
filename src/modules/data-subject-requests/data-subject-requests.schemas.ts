import { z } from 'zod';
import type { DataSubjectRequestRow } from '../../db/schema.js';
import { Id, IdempotencyKey, Instant, PageQuery, toIso } from '../../http/schemas.js';
import { ContactEmail } from '../contacts/contacts.schemas.js';
import type { RequestSummaryRow } from './data-subject-requests.repository.js';
import { daysRemaining, isOverdue } from './deadlines.js';

export const REQUEST_TYPES = [
  'access',
  'portability',
  'rectification',
  'erasure',
  'restriction',
  'objection',
] as const;
export const REQUEST_STATUSES = [
  'received',
  'identity_verified',
  'completed',
  'rejected',
  'cancelled',
] as const;
export const OPEN_STATUSES = ['received', 'identity_verified'] as const;
export const REJECTION_BASES = [
  'identity_not_verified',
  'manifestly_unfounded_or_excessive',
  'erasure_exception',
  'other',
] as const;

/** A reason the subject or a supervisory authority will read: not blank, one paragraph or so. */
const Reason = z
  .string()
  .max(2000)
  .refine((value) => value.trim().length > 0, { message: 'must not be blank' })
  .transform((value) => value.trim());

const ShortText = z.string().trim().min(1).max(200);

/**
 * What a rectification asks to change (Art. 16): who the person is, nothing else. Exactly the
 * contact fields rectification may touch on a restricted contact (see contacts.service).
 */
export const Corrections = z
  .strictObject({
    email: ContactEmail.optional(),
    firstName: z.string().trim().min(1).max(200).nullable().optional(),
    lastName: z.string().trim().min(1).max(200).nullable().optional(),
    language: z
      .string()
      .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/, 'must be a BCP 47 language tag')
      .max(35)
      .nullable()
      .optional(),
  })
  .refine((value) => Object.keys(value).length > 0, { message: 'must name at least one field' })
  .describe('Rectification only: the corrected values (email, firstName, lastName, language).');

export const CreateRequestBody = z
  .object({
    type: z
      .enum(REQUEST_TYPES)
      .describe(
        'Art. 15 access, 20 portability, 16 rectification, 17 erasure, 18 restriction, 21 objection.',
      ),
    subject: z.strictObject({
      email: ContactEmail,
      customerId: ShortText.optional().describe('The controller’s own id for the person.'),
    }),
    contactId: Id.optional().describe(
      'The contact, when the caller knows it; else found by address.',
    ),
    externalId: ShortText.optional().describe('The controller’s id for the request; unique.'),
    channel: ShortText.optional().describe('How the request arrived: email, form, letter…'),
    receivedAt: z.iso
      .datetime({ offset: true })
      .optional()
      .describe('When the request reached the controller (default: now); not in the future.'),
    notes: z.string().trim().max(4000).optional(),
    purposeIds: z
      .array(Id)
      .min(1)
      .max(100)
      .optional()
      .describe('Objection only: the purposes objected to (default: all).'),
    corrections: Corrections.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.type === 'rectification' && !body.corrections) {
      ctx.addIssue({
        code: 'custom',
        path: ['corrections'],
        message: 'a rectification needs corrections',
      });
    }
    if (body.type !== 'rectification' && body.corrections) {
      ctx.addIssue({
        code: 'custom',
        path: ['corrections'],
        message: 'only a rectification carries corrections',
      });
    }
    if (body.type !== 'objection' && body.purposeIds) {
      ctx.addIssue({
        code: 'custom',
        path: ['purposeIds'],
        message: 'only an objection names purposes',
      });
    }
  })
  .meta({
    example: {
      type: 'erasure',
      subject: { email: 'jane.doe@example.com', customerId: 'crm-4711' },
      externalId: 'DSR-2026-0042',
      channel: 'email',
      receivedAt: '2026-12-01T09:30:00Z',
    },
  });
export type CreateRequestInput = z.output<typeof CreateRequestBody>;

export const VerifyIdentityBody = z
  .discriminatedUnion('method', [
    z.strictObject({
      method: z.literal('manual'),
      evidence: z.string().trim().min(1).max(2000).describe('How the identity was checked.'),
    }),
    z.strictObject({
      method: z.literal('link'),
    }),
  ])
  .meta({ example: { method: 'manual', evidence: 'Replied from the address on file' } });
export type VerifyIdentityInput = z.output<typeof VerifyIdentityBody>;

export const ExtendBody = z
  .strictObject({
    months: z.union([z.literal(1), z.literal(2)]).describe('1 or 2 (Art. 12(3)).'),
    reason: Reason.describe('Why, as the subject will be told.'),
    subjectInformedAt: z.iso
      .datetime({ offset: true })
      .optional()
      .describe('When the subject was told of the extension and its reasons.'),
  })
  .meta({
    example: { months: 2, reason: 'Many systems hold the data; collecting it takes longer.' },
  });

export const RejectBody = z
  .strictObject({
    reason: Reason.describe('Why the request is refused (Art. 12(4)).'),
    basis: z.enum(REJECTION_BASES),
    complaintInformationGiven: z
      .literal(true)
      .describe('The subject was told of the right to complain and to a judicial remedy.'),
  })
  .meta({
    example: {
      reason: 'The identity could not be confirmed.',
      basis: 'identity_not_verified',
      complaintInformationGiven: true,
    },
  });

export const CancelBody = z
  .strictObject({ reason: Reason.describe('Why: usually, the subject withdrew the request.') })
  .meta({ example: { reason: 'The subject withdrew the request by email.' } });

export const CompleteBody = z
  .strictObject({
    recipientsInformed: z
      .array(z.strictObject({ name: ShortText, informedAt: z.iso.datetime({ offset: true }) }))
      .max(100)
      .optional()
      .describe('Art. 19: the recipients told of the rectification, erasure or restriction.'),
    recipientsNotInformedReason: Reason.optional().describe(
      'Art. 19: why no recipient was told (none, impossible, disproportionate effort).',
    ),
  })
  .meta({
    example: {
      recipientsInformed: [{ name: 'Acme CRM', informedAt: '2026-12-02T10:00:00Z' }],
    },
  });
export type CompleteInput = z.output<typeof CompleteBody>;

export const CompleteHeaders = z.looseObject({
  'x-export-passphrase': z
    .string()
    .max(4096)
    .optional()
    .describe('Access/portability: encrypt the export with this passphrase (age scrypt).'),
  'x-export-recipient': z
    .string()
    .max(200)
    .optional()
    .describe('Access/portability: encrypt the export to this age X25519 public key.'),
  'if-match': z.string().max(100).optional(),
});

export const IfMatchOnly = z.looseObject({
  'if-match': z.string().max(100).optional().describe('The ETag from the last read.'),
});

export const CreateHeaders = z.looseObject({
  'idempotency-key': IdempotencyKey.optional().describe('Makes a retry of this POST safe.'),
});

export const ListRequestsQuery = PageQuery.extend({
  sort: z
    .enum(['createdAt', 'dueAt'])
    .default('createdAt')
    .describe('`createdAt` (oldest first) or `dueAt` (soonest deadline first).'),
  status: z.enum(REQUEST_STATUSES).optional(),
  type: z.enum(REQUEST_TYPES).optional(),
  overdue: z.enum(['true', 'false']).optional().describe('Open requests past their due time.'),
  dueBefore: z.iso.datetime({ offset: true }).optional(),
  contactId: Id.optional(),
});

export const TokenParams = z.object({
  token: z.string().min(1).max(200).describe('The token from the link.'),
});

/**
 * The verification link's POST body: nothing is needed (the token is the authority), so JSON
 * clients send `{}` (or nothing) and the link page's form sends an empty form.
 */
export const VerificationLinkBody = z
  .object({})
  .describe('Empty: the token in the path is all the link needs.');

const Decision = z
  .object({
    outcome: z.enum(['completed', 'rejected', 'cancelled']),
    decidedAt: Instant,
    late: z.boolean().describe('Decided after the due time.'),
    reason: z.string().nullable(),
    basis: z.enum(REJECTION_BASES).nullable(),
    complaintInformationGiven: z.boolean().nullable(),
  })
  .nullable();

/** What every view of a request starts with: which request, and where its deadline stands. */
const RequestFacts = {
  id: Id,
  type: z.enum(REQUEST_TYPES),
  status: z.enum(REQUEST_STATUSES),
  externalId: z.string().nullable(),
  channel: z.string().nullable(),
  contactId: z.string().nullable(),
  receivedAt: Instant,
  timeZone: z.string(),
  calendar: z.string().describe('Which days postpone the due date: weekends, public holidays.'),
  dueDate: z.string().describe('The last day to answer (YYYY-MM-DD, in timeZone).'),
  dueAt: Instant.describe('The last millisecond of dueDate in timeZone.'),
  daysRemaining: z
    .number()
    .int()
    .describe('Calendar days to dueDate (at the decision once decided); negative when late.'),
  overdue: z.boolean().describe('Open and past dueAt.'),
};

export const DataSubjectRequestSchema = z
  .object({
    ...RequestFacts,
    subject: z.object({
      email: z.string().nullable().describe('Cleared once not needed, and after an erasure.'),
      customerId: z.string().nullable(),
    }),
    notes: z.string().nullable(),
    purposeIds: z.array(z.string()).nullable(),
    corrections: z.record(z.string(), z.string().nullable()).nullable(),
    extension: z
      .object({
        months: z.number().int(),
        reason: z.string(),
        extendedAt: Instant,
        subjectMustBeInformedBy: Instant,
        subjectInformedAt: Instant.nullable(),
      })
      .nullable(),
    identity: z.object({
      verifiedAt: Instant.nullable(),
      method: z.enum(['manual', 'link']).nullable(),
      evidence: z.string().nullable(),
      verificationRequestedAt: Instant.nullable(),
    }),
    decision: Decision,
    recipientsInformed: z.array(z.object({ name: z.string(), informedAt: z.string() })).nullable(),
    recipientsNotInformedReason: z.string().nullable(),
    result: z
      .record(z.string(), z.unknown())
      .nullable()
      .describe('What completion did: noDataHeld, the export digest, the changed fields.'),
    createdAt: Instant,
    updatedAt: Instant,
    version: z.number().int().describe('The ETag is `"v<version>"`.'),
  })
  .meta({ id: 'DataSubjectRequest' });

export const DataSubjectRequestSummarySchema = z
  .object({
    ...RequestFacts,
    extendedMonths: z.number().int().nullable().describe('1 or 2 once extended.'),
    decidedAt: Instant.nullable(),
    late: z.boolean().nullable().describe('Decided after the due time; null while open.'),
    createdAt: Instant,
    updatedAt: Instant,
    version: z.number().int(),
  })
  .meta({
    id: 'DataSubjectRequestSummary',
    description:
      'A request as lists show it: its deadline and state. The subject, notes, evidence and ' +
      'decision details are in `GET /v1/data-subject-requests/{id}`.',
  });

function isOpen(status: RequestSummaryRow['status']): boolean {
  return status === 'received' || status === 'identity_verified';
}

/**
 * Each mapper writes every member of {@link RequestFacts} out in its own object literal, on
 * purpose: `{ ...facts(row), more }` makes V8 (Node 20) give every object it returns a hidden
 * class of its own. That costs microseconds and garbage per row, and the serializer then meets
 * a new shape on every row of a page.
 */
export function toDataSubjectRequestSummary(row: RequestSummaryRow, now: Date) {
  const open = isOpen(row.status);
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    externalId: row.external_id,
    channel: row.channel,
    contactId: row.contact_id,
    receivedAt: toIso(row.received_at),
    timeZone: row.time_zone,
    calendar: row.calendar,
    dueDate: row.due_date,
    dueAt: toIso(row.due_at),
    daysRemaining: daysRemaining(row.due_date, row.time_zone, open ? now : row.decided_at!),
    overdue: open && isOverdue(row.due_at, now),
    extendedMonths: row.extension_months,
    decidedAt: row.decided_at ? row.decided_at.toISOString() : null,
    late: open ? null : (row.decided_late ?? false),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    version: row.version,
  };
}

export function toDataSubjectRequest(row: DataSubjectRequestRow, now: Date) {
  const open = isOpen(row.status);
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    externalId: row.external_id,
    channel: row.channel,
    contactId: row.contact_id,
    receivedAt: toIso(row.received_at),
    timeZone: row.time_zone,
    calendar: row.calendar,
    dueDate: row.due_date,
    dueAt: toIso(row.due_at),
    daysRemaining: daysRemaining(row.due_date, row.time_zone, open ? now : row.decided_at!),
    overdue: open && isOverdue(row.due_at, now),
    subject: { email: row.subject_email, customerId: row.subject_customer_id },
    notes: row.notes,
    purposeIds: row.purpose_ids,
    corrections: row.corrections,
    extension:
      row.extension_months !== null
        ? {
            months: row.extension_months,
            reason: row.extension_reason ?? '',
            extendedAt: toIso(row.extended_at!),
            subjectMustBeInformedBy: toIso(row.original_due_at),
            subjectInformedAt: toIso(row.subject_informed_at),
          }
        : null,
    identity: {
      verifiedAt: toIso(row.identity_verified_at),
      method: row.identity_method,
      evidence: row.identity_evidence,
      verificationRequestedAt: toIso(row.verification_requested_at),
    },
    decision: !open
      ? {
          outcome: row.status as 'completed' | 'rejected' | 'cancelled',
          decidedAt: toIso(row.decided_at!),
          late: row.decided_late ?? false,
          reason: row.decision_reason,
          basis: row.rejection_basis,
          complaintInformationGiven: row.complaint_information_given,
        }
      : null,
    recipientsInformed: row.recipients_informed,
    recipientsNotInformedReason: row.recipients_not_informed_reason,
    result: row.outcome,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}

export const VerificationOutcomeSchema = z.object({
  status: z.literal('identity_verified'),
  verifiedAt: Instant,
});
