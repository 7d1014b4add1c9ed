import { z } from 'zod';
import type { BreachAuthorityNotificationRow, BreachIncidentRow } from '../../db/schema.js';
import { Email, Id, IdempotencyKey, Instant, PageQuery, toIso } from '../../http/schemas.js';
import { csvRow } from '../../lib/csv.js';
import { hoursRemaining, isOverdue } from './deadline.js';
import { ExemptionSchema } from './subject-notices.schemas.js';

export const BREACH_KINDS = ['confidentiality', 'integrity', 'availability'] as const;
export const BREACH_RISKS = ['unassessed', 'none', 'risk', 'high'] as const;
export const ASSESSED_RISKS = ['none', 'risk', 'high'] as const;
export const BREACH_STATUSES = ['open', 'assessed', 'notified', 'closed'] as const;

/** A reason an authority will read: not blank, a paragraph or so. */
const Reason = z
  .string()
  .max(4000)
  .refine((value) => value.trim().length > 0, { message: 'must not be blank' })
  .transform((value) => value.trim());

const ShortText = z.string().trim().min(1).max(200);
const LongText = z.string().trim().min(1).max(4000);
const Count = z.number().int().min(0).max(2_147_483_647);
const Categories = z.array(ShortText).min(1).max(50);
const Moment = z.iso.datetime({ offset: true });

const KINDS_DESCRIPTION =
  'One or more of `confidentiality` (disclosure or access), `integrity` (alteration), ' +
  '`availability` (loss of access or destruction).';

export const ContactPointInput = z
  .strictObject({
    name: ShortText.nullable().optional(),
    email: Email.nullable().optional(),
    phone: z.string().trim().min(3).max(40).nullable().optional(),
  })
  .refine((value) => !!(value.name || value.email || value.phone), {
    message: 'must give a name, an email or a phone',
  })
  .describe(
    'Art. 33(3)(b): the DPO or other contact point. Default: the account’s DPO fields, copied.',
  );

/** The Art. 33(3) content, as a creation or a change gives it. */
const contentFields = {
  dataCategories: Categories.optional().describe(
    'Art. 33(3)(a): the categories of personal data concerned (email addresses, names…).',
  ),
  subjectCategories: Categories.optional().describe(
    'Art. 33(3)(a): the categories of people concerned (subscribers, customers…).',
  ),
  approximateSubjects: Count.optional().describe('Art. 33(3)(a): about how many people.'),
  approximateRecords: Count.optional().describe('Art. 33(3)(a): about how many records.'),
  likelyConsequences: LongText.optional().describe('Art. 33(3)(c).'),
  measuresTaken: LongText.optional().describe(
    'Art. 33(3)(d): measures taken or proposed, including to mitigate the effects.',
  ),
};

export const CreateBreachIncidentBody = z
  .strictObject({
    title: ShortText,
    description: LongText.describe('Art. 33(3)(a): the nature of the breach.'),
    kinds: z.array(z.enum(BREACH_KINDS)).min(1).max(3).describe(KINDS_DESCRIPTION),
    occurredAt: Moment.optional().describe('When the breach happened, when known.'),
    awareAt: Moment.optional().describe(
      'When the controller became aware (default: now); not in the future, not before ' +
        '`occurredAt`. The 72-hour deadline runs from it.',
    ),
    risk: z
      .enum(BREACH_RISKS)
      .default('unassessed')
      .describe(
        'The risk to people’s rights and freedoms. Anything but `unassessed` records the ' +
          'first assessment (with `riskReason`).',
      ),
    riskReason: Reason.optional().describe('Why this risk: required with a risk given.'),
    ...contentFields,
    contactPoint: ContactPointInput.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.risk !== 'unassessed' && body.riskReason === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['riskReason'],
        message: 'an assessed risk needs its reason',
      });
    }
  })
  .meta({
    example: {
      title: 'Newsletter export left on a public file share',
      description: 'A CSV export of the newsletter list was reachable by link for two days.',
      kinds: ['confidentiality'],
      occurredAt: '2026-12-01T08:00:00Z',
      awareAt: '2026-12-02T09:30:00Z',
      risk: 'risk',
      riskReason: 'Addresses and names only; no passwords or payment data.',
      dataCategories: ['email addresses', 'names'],
      subjectCategories: ['newsletter subscribers'],
      approximateSubjects: 1200,
      approximateRecords: 1200,
      likelyConsequences: 'Phishing aimed at the subscribers.',
      measuresTaken: 'The link was revoked and the share audited.',
    },
  });
export type CreateBreachIncidentInput = z.output<typeof CreateBreachIncidentBody>;

export const PatchBreachIncidentBody = z
  .strictObject({
    title: ShortText.optional(),
    description: LongText.optional(),
    kinds: z.array(z.enum(BREACH_KINDS)).min(1).max(3).optional().describe(KINDS_DESCRIPTION),
    occurredAt: Moment.nullable().optional(),
    awareAt: Moment.optional().describe(
      'A correction of when the controller became aware: needs `awareAtCorrectionReason`, ' +
        'and moves `authorityDeadlineAt` with it.',
    ),
    awareAtCorrectionReason: Reason.optional(),
    dataCategories: Categories.nullable().optional(),
    subjectCategories: Categories.nullable().optional(),
    approximateSubjects: Count.nullable().optional(),
    approximateRecords: Count.nullable().optional(),
    likelyConsequences: LongText.nullable().optional(),
    measuresTaken: LongText.nullable().optional(),
    contactPoint: ContactPointInput.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.awareAtCorrectionReason !== undefined && body.awareAt === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['awareAtCorrectionReason'],
        message: 'only with a corrected awareAt',
      });
    }
  })
  .meta({
    example: {
      approximateSubjects: 1350,
      measuresTaken: 'The link was revoked, the share audited and its access log kept.',
    },
  });
export type PatchBreachIncidentInput = z.output<typeof PatchBreachIncidentBody>;

export const AssessmentBody = z
  .strictObject({
    risk: z
      .enum(ASSESSED_RISKS)
      .describe(
        '`none`: unlikely to result in a risk (no notification needed, Art. 33(1)); `risk`: ' +
          'notify the authority; `high`: tell the people too (Art. 34).',
      ),
    reason: Reason.describe('Why: the register keeps it (Art. 33(5)).'),
  })
  .meta({ example: { risk: 'risk', reason: 'Names and addresses; phishing is likely.' } });

export const NotificationBody = z
  .strictObject({
    notifiedAt: Moment.optional().describe(
      'When this phase reached the authority (default: now); not in the future, not before ' +
        'the previous phase or `awareAt`.',
    ),
    authority: ShortText.optional().describe('Default: the account’s `supervisoryAuthority`.'),
    reference: ShortText.optional().describe('The authority’s case number, when it gave one.'),
    channel: ShortText.optional().describe('How it was sent: web form, email, letter…'),
    summary: LongText.optional().describe('What this phase added, in a few words.'),
    delayReason: Reason.optional().describe(
      'Art. 33(1): required on a first phase after `authorityDeadlineAt`.',
    ),
  })
  .meta({
    example: {
      authority: 'Information Commissioner of the Republic of Slovenia',
      reference: 'IP-2026-0815',
      channel: 'web form',
      summary: 'Initial notification; numbers to follow.',
    },
  });
export type NotificationInput = z.output<typeof NotificationBody>;

export const CloseBody = z
  .strictObject({
    noNotificationReason: Reason.optional().describe(
      'Closing with no authority notification: only at risk `none`, and then required.',
    ),
    summary: LongText.optional().describe('How the incident ended: for the register.'),
  })
  .meta({ example: { summary: 'Share removed; no misuse seen in 30 days.' } });
export type CloseInput = z.output<typeof CloseBody>;

export const IfMatchOnly = z.looseObject({
  'if-match': z.string().max(100).optional().describe('The ETag from the last read.'),
});

export const CreateHeaders = z.looseObject({
  'idempotency-key': IdempotencyKey.optional().describe('Makes a retry of this POST safe.'),
});

export const ListIncidentsQuery = PageQuery.extend({
  status: z.enum(BREACH_STATUSES).optional(),
  overdue: z
    .enum(['true', 'false'])
    .optional()
    .describe('Unnotified, risk not `none`, past `authorityDeadlineAt`.'),
});

export const RegisterQuery = PageQuery.extend({
  format: z
    .enum(['json', 'csv'])
    .default('json')
    .describe('`json`: one page (keyset); `csv`: every incident, streamed (no paging).'),
});

const ContactPointSchema = z.object({
  name: z.string().nullable(),
  email: z.string().nullable(),
  phone: z.string().nullable(),
});

export const BreachIncidentSchema = z
  .object({
    id: Id,
    source: z.enum(['account', 'processor']),
    processorIncidentId: z.string().nullable(),
    status: z.enum(BREACH_STATUSES),
    title: z.string(),
    description: z.string(),
    kinds: z.array(z.enum(BREACH_KINDS)),
    occurredAt: Instant.nullable(),
    awareAt: Instant,
    authorityDeadlineAt: Instant.describe('awareAt + 72 hours, on the instant (Art. 33(1)).'),
    hoursRemaining: z
      .number()
      .int()
      .describe(
        'Whole hours to authorityDeadlineAt (at the first notification once notified); ' +
          'negative when past.',
      ),
    overdue: z.boolean().describe('Not notified, risk not `none`, not closed, past the deadline.'),
    awareAtCorrections: z
      .array(
        z.object({
          previousAwareAt: Instant,
          awareAt: Instant,
          reason: z.string(),
          correctedAt: Instant,
        }),
      )
      .describe('Each correction of awareAt, oldest first.'),
    risk: z.enum(BREACH_RISKS),
    riskReason: z.string().nullable(),
    assessedAt: Instant.nullable(),
    dataCategories: z.array(z.string()).nullable(),
    subjectCategories: z.array(z.string()).nullable(),
    approximateSubjects: z.number().int().nullable(),
    approximateRecords: z.number().int().nullable(),
    likelyConsequences: z.string().nullable(),
    measuresTaken: z.string().nullable(),
    contactPoint: ContactPointSchema,
    authorityNotification: z.object({
      phases: z.number().int(),
      firstNotifiedAt: Instant.nullable(),
      late: z.boolean().nullable().describe('The first phase came after the deadline.'),
    }),
    noNotificationReason: z.string().nullable(),
    subjectNoticeExemption: ExemptionSchema,
    acknowledgedAt: Instant.nullable().describe(
      'When the account acknowledged a breach its processor reported (`source: processor`).',
    ),
    closingSummary: z.string().nullable(),
    closedAt: Instant.nullable(),
    createdAt: Instant,
    updatedAt: Instant,
    version: z.number().int().describe('The ETag is `"v<version>"`.'),
  })
  .meta({ id: 'BreachIncident' });

export const AuthorityNotificationSchema = z
  .object({
    id: Id,
    incidentId: Id,
    phase: z.number().int().describe('1 for the first notification, then 2, 3… (Art. 33(4)).'),
    notifiedAt: Instant,
    authority: z.string(),
    reference: z.string().nullable(),
    channel: z.string().nullable(),
    content: z
      .record(z.string(), z.unknown())
      .describe('The Art. 33(3) content as it stood when this phase was sent.'),
    delayReason: z.string().nullable(),
    late: z.boolean().describe('A first phase after authorityDeadlineAt.'),
    createdAt: Instant,
  })
  .meta({ id: 'BreachAuthorityNotification' });

export const BreachRegisterEntrySchema = BreachIncidentSchema.extend({
  authorityNotifications: z.array(AuthorityNotificationSchema),
}).meta({
  id: 'BreachRegisterEntry',
  description:
    'Art. 33(5): an incident with its facts, effects, remedial action, decisions and every ' +
    'phase of its notification.',
});

export function toBreachIncident(row: BreachIncidentRow, now: Date) {
  return {
    id: row.id,
    source: row.source,
    processorIncidentId: row.processor_incident_id,
    status: row.status,
    title: row.title,
    description: row.description,
    kinds: row.kinds,
    occurredAt: toIso(row.occurred_at),
    awareAt: toIso(row.aware_at),
    authorityDeadlineAt: toIso(row.authority_deadline_at),
    hoursRemaining: hoursRemaining(row, now),
    overdue: isOverdue(row, now),
    awareAtCorrections: row.aware_at_corrections ?? [],
    risk: row.risk,
    riskReason: row.risk_reason,
    assessedAt: toIso(row.assessed_at),
    dataCategories: row.data_categories,
    subjectCategories: row.subject_categories,
    approximateSubjects: row.approximate_subjects,
    approximateRecords: row.approximate_records,
    likelyConsequences: row.likely_consequences,
    measuresTaken: row.measures_taken,
    contactPoint: row.contact_point,
    authorityNotification: {
      phases: row.notification_count,
      firstNotifiedAt: toIso(row.first_notified_at),
      late: row.notified_late,
    },
    noNotificationReason: row.no_notification_reason,
    subjectNoticeExemption: row.subject_notice_exemption,
    acknowledgedAt: toIso(row.acknowledged_at),
    closingSummary: row.closing_summary,
    closedAt: toIso(row.closed_at),
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}

export function toAuthorityNotification(row: BreachAuthorityNotificationRow) {
  return {
    id: row.id,
    incidentId: row.incident_id,
    phase: row.phase,
    notifiedAt: toIso(row.notified_at),
    authority: row.authority,
    reference: row.reference,
    channel: row.channel,
    content: row.content,
    delayReason: row.delay_reason,
    late: row.late,
    createdAt: toIso(row.created_at),
  };
}

/** The register's CSV columns, one record per incident; phases are joined into one cell. */
export const REGISTER_CSV_HEADER = csvRow([
  'id',
  'source',
  'status',
  'title',
  'description',
  'kinds',
  'occurredAt',
  'awareAt',
  'authorityDeadlineAt',
  'overdue',
  'risk',
  'riskReason',
  'assessedAt',
  'dataCategories',
  'subjectCategories',
  'approximateSubjects',
  'approximateRecords',
  'likelyConsequences',
  'measuresTaken',
  'contactPoint',
  'awareAtCorrections',
  'notificationPhases',
  'firstNotifiedAt',
  'notifiedLate',
  'delayReason',
  'phases',
  'noNotificationReason',
  'closingSummary',
  'closedAt',
  'createdAt',
]);

export function registerCsvRow(
  row: BreachIncidentRow,
  phases: readonly BreachAuthorityNotificationRow[],
  now: Date,
): string {
  const contact = row.contact_point;
  return csvRow([
    row.id,
    row.source,
    row.status,
    row.title,
    row.description,
    row.kinds.join('; '),
    toIso(row.occurred_at),
    toIso(row.aware_at),
    toIso(row.authority_deadline_at),
    isOverdue(row, now),
    row.risk,
    row.risk_reason,
    toIso(row.assessed_at),
    row.data_categories?.join('; '),
    row.subject_categories?.join('; '),
    row.approximate_subjects,
    row.approximate_records,
    row.likely_consequences,
    row.measures_taken,
    [contact.name, contact.email, contact.phone].filter(Boolean).join(', '),
    (row.aware_at_corrections ?? [])
      .map((c) => `${c.previousAwareAt} -> ${c.awareAt} (${c.reason})`)
      .join('; '),
    row.notification_count,
    toIso(row.first_notified_at),
    row.notified_late,
    phases[0]?.delay_reason,
    phases
      .map(
        (p) =>
          `${p.phase}: ${toIso(p.notified_at)} ${p.authority}` +
          (p.reference ? ` ref ${p.reference}` : '') +
          (p.late ? ' (late)' : ''),
      )
      .join('; '),
    row.no_notification_reason,
    row.closing_summary,
    toIso(row.closed_at),
    toIso(row.created_at),
  ]);
}
