import { z } from 'zod';
import type { ConsentEventRow } from '../../db/schema.js';
import { Id, MAX_PATH_SEGMENT_LENGTH, PageQuery, Timestamp, toIso } from '../../http/schemas.js';
import { NoticeVersionNumber } from '../purposes/purposes.schemas.js';
import type { ConsentState, CurrentConsentRow } from './consents.repository.js';

/** How consent was collected; `withdrawal_link` is only ever written by the public link. */
export const RECORDABLE_METHODS = ['form', 'import', 'api', 'double_opt_in'] as const;
/**
 * Every method the ledger holds: the recordable ones, a withdrawal link the subject followed,
 * and an objection carried out through a data-subject request (Art. 21).
 */
export const CONSENT_METHODS = [
  ...RECORDABLE_METHODS,
  'withdrawal_link',
  'data_subject_request',
] as const;
export type ConsentMethod = (typeof CONSENT_METHODS)[number];

/** Art. 6(1)(a)–(f). A consent ledger mostly holds `consent`; the others are for completeness. */
export const LEGAL_BASES = [
  'consent',
  'contract',
  'legal_obligation',
  'vital_interests',
  'public_task',
  'legitimate_interests',
] as const;

export const ConsentStateSchema = z
  .enum(['pending', 'granted', 'withdrawn'])
  .describe(
    '`pending`: granted through double opt-in, not yet confirmed; `granted`: verified; ' +
      '`withdrawn`.',
  );

/** Clocks disagree a little; an event from the future beyond that is a mistake. */
const CLOCK_SKEW_MS = 5 * 60_000;

const ConsentEventBodyFields = {
  purposeId: Id,
  legalBasis: z.enum(LEGAL_BASES).default('consent'),
  occurredAt: Timestamp.optional().describe('When the person acted; defaults to now.'),
  evidence: z
    .object({
      ip: z.union([z.ipv4(), z.ipv6()]).optional().describe('The person’s IP address.'),
      userAgent: z.string().max(1024).optional(),
      sourceUrl: z
        .url({ protocol: /^https?$/ })
        .max(2048)
        .optional()
        .describe('The page where the person acted.'),
    })
    .strict()
    .default({}),
};

/** Art. 7(1): a grant is demonstrable only with the notice text the person saw. */
const GrantBody = z
  .object({
    ...ConsentEventBodyFields,
    event: z.literal('granted'),
    noticeVersion: z
      .number({
        error: (issue) =>
          issue.input === undefined
            ? 'a grant must name the notice version the person saw'
            : undefined,
      })
      .int()
      .min(1)
      .max(2_147_483_647)
      .describe('The notice version the person saw.'),
    method: z.enum(RECORDABLE_METHODS),
  })
  .strict();

const WITHDRAWAL_METHODS = RECORDABLE_METHODS.filter((method) => method !== 'double_opt_in');

const WithdrawalBody = z
  .object({
    ...ConsentEventBodyFields,
    event: z.literal('withdrawn'),
    noticeVersion: NoticeVersionNumber.optional().describe(
      'The notice version the withdrawal refers to, if known.',
    ),
    method: z.enum(WITHDRAWAL_METHODS as ['form', 'import', 'api'], {
      error: (issue) =>
        issue.input === 'double_opt_in'
          ? 'double_opt_in is a way to give consent, not to withdraw it'
          : undefined,
    }),
  })
  .strict();

/**
 * A grant or a withdrawal, told apart by `event`: the contract then states what each needs (a
 * grant names its notice version), and generated clients type each variant.
 */
export const RecordConsentBody = z
  .discriminatedUnion('event', [GrantBody, WithdrawalBody])
  .superRefine((body, ctx) => {
    if (body.occurredAt && new Date(body.occurredAt).getTime() > Date.now() + CLOCK_SKEW_MS) {
      ctx.addIssue({ code: 'custom', path: ['occurredAt'], message: 'must not be in the future' });
    }
  })
  .meta({
    example: {
      purposeId: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
      noticeVersion: 2,
      event: 'granted',
      method: 'double_opt_in',
      legalBasis: 'consent',
      occurredAt: '2026-11-20T16:00:00.000Z',
      evidence: {
        ip: '203.0.113.7',
        userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
        sourceUrl: 'https://shop.example.com/newsletter',
      },
    },
  });

export type RecordConsentInput = z.output<typeof RecordConsentBody>;
/** What the ledger accepts from this system's own modules: any method it holds. */
export type LedgerEntryInput = Omit<RecordConsentInput, 'method'> & { method: ConsentMethod };

const EVENT_EXAMPLE = {
  id: '8e7d6c5b-4a39-4281-9706-f5e4d3c2b1a0',
  contactId: '3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4',
  purposeId: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
  noticeVersion: 2,
  event: 'granted',
  method: 'double_opt_in',
  legalBasis: 'consent',
  occurredAt: '2026-11-20T16:00:00.000Z',
  recordedAt: '2026-11-20T16:00:01.000Z',
  evidence: {
    ip: '203.0.113.7',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
    sourceUrl: 'https://shop.example.com/newsletter',
  },
  recordedBy: { type: 'api_key', id: '2f1e0d9c-8b7a-4654-9321-0fedcba98765' },
} as const;

export const ConsentEventSchema = z
  .object({
    id: Id,
    contactId: Id,
    purposeId: Id,
    noticeVersion: NoticeVersionNumber.nullable(),
    event: z
      .enum(['granted', 'withdrawn', 'confirmed'])
      .describe('`confirmed`: the person followed the double opt-in link.'),
    method: z.enum(CONSENT_METHODS),
    legalBasis: z.enum(LEGAL_BASES),
    occurredAt: Timestamp,
    recordedAt: Timestamp.describe('When the ledger recorded it; orders the events.'),
    evidence: z.object({
      ip: z.string().nullable(),
      userAgent: z.string().nullable(),
      sourceUrl: z.string().nullable(),
    }),
    recordedBy: z
      .object({
        type: z.string().describe('`user`, `api_key` or `data_subject` (a public link).'),
        id: z.string().nullable(),
      })
      .describe('Who wrote the event.'),
  })
  .meta({ id: 'ConsentEvent', example: EVENT_EXAMPLE });

export const ConsentLinkSchema = z
  .object({
    token: z.string().describe('Shown only in this response; only its hash is stored.'),
    expiresAt: Timestamp,
    url: z
      .string()
      .describe(
        'The link’s path (prefix it with the service’s public base URL): opening it shows the ' +
          'person a page whose button acts; programs may POST to it.',
      ),
  })
  .meta({
    id: 'ConsentLink',
    description: 'A single-use link for the person, to be sent by your mail system.',
  });

export const RecordedConsentSchema = ConsentEventSchema.extend({
  state: ConsentStateSchema.describe('The state of this consent after the event.'),
  confirmation: ConsentLinkSchema.optional().describe(
    'Double opt-in only: the confirmation link (expires after CONSENT_TOKEN_TTL_HOURS).',
  ),
  withdrawal: ConsentLinkSchema.optional().describe(
    'Every grant: a withdrawal link (Art. 7(3)), valid 365 days, single-use.',
  ),
}).meta({
  id: 'RecordedConsentEvent',
  example: {
    ...EVENT_EXAMPLE,
    state: 'pending',
    confirmation: {
      token: 'q3Jx9VZ2c7lM0kq8Tn1yRr4pW6sAaBbCcDdEeFfGgHh',
      expiresAt: '2026-11-23T16:00:01.000Z',
      url: '/v1/public/consent-confirmations/q3Jx9VZ2c7lM0kq8Tn1yRr4pW6sAaBbCcDdEeFfGgHh',
    },
    withdrawal: {
      token: 'Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Jh0GfEdCbA_-zyxwvu',
      expiresAt: '2027-11-20T16:00:01.000Z',
      url: '/v1/public/consent-withdrawals/Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Jh0GfEdCbA_-zyxwvu',
    },
  },
});

export const CurrentConsentSchema = z
  .object({
    purposeId: Id,
    purposeKey: z.string(),
    state: ConsentStateSchema,
    since: Timestamp.describe('When the deciding (newest) event occurred.'),
    noticeVersion: NoticeVersionNumber.nullable(),
    method: z.enum(CONSENT_METHODS),
  })
  .meta({
    id: 'CurrentConsent',
    description: 'Derived from the ledger: the newest event of the purpose decides.',
  });

export const ContactConsentsSchema = z
  .object({
    current: z.array(CurrentConsentSchema).describe('One entry per purpose with events.'),
    events: z.array(ConsentEventSchema).describe('The ledger, newest first, one page.'),
    nextCursor: z
      .string()
      .nullable()
      .describe('Pass as `cursor` for older events; null on the last page.'),
  })
  .meta({
    id: 'ContactConsents',
    example: {
      current: [
        {
          purposeId: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
          purposeKey: 'newsletter',
          state: 'pending',
          since: '2026-11-20T16:00:00.000Z',
          noticeVersion: 2,
          method: 'double_opt_in',
        },
      ],
      events: [EVENT_EXAMPLE],
      nextCursor: null,
    },
  });

export const ConsentsQuery = PageQuery.extend({
  purposeId: Id.optional().describe('Only the events of this purpose.'),
});

export const AudienceQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size (1–1000).'),
  cursor: PageQuery.shape.cursor,
});

export const AudienceMemberSchema = z
  .object({ contactId: Id, email: z.string(), language: z.string().nullable() })
  .meta({
    id: 'AudienceMember',
    example: {
      contactId: '3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4',
      email: 'jane@example.com',
      language: 'en',
    },
  });

export const TokenParams = z.object({
  token: z.string().min(1).max(MAX_PATH_SEGMENT_LENGTH).describe('The token from the link.'),
});

/**
 * A link's POST body: nothing is needed (the token is the authority), so JSON clients send `{}`
 * (or nothing) and the link page's form sends an empty form.
 */
export const ConfirmLinkBody = z
  .object({})
  .describe('Empty: the token in the path is all the link needs.');

/** The withdrawal link's POST body, which RFC 8058 one-click unsubscribe fills. */
export const WithdrawLinkBody = z
  .object({
    'List-Unsubscribe': z
      .literal('One-Click')
      .optional()
      .describe(
        'What a mail client sends for RFC 8058 one-click unsubscribe, as ' +
          '`application/x-www-form-urlencoded`; optional otherwise.',
      ),
  })
  .describe('Empty, or the RFC 8058 one-click field.');

export const ConsentLinkOutcomeSchema = z
  .object({
    state: z.enum(['granted', 'withdrawn']),
    recordedAt: Timestamp,
  })
  .meta({
    id: 'ConsentLinkOutcome',
    description: 'What the link did. Says nothing about who the person or the sender is.',
    example: { state: 'granted', recordedAt: '2026-11-20T16:10:00.000Z' },
  });

export function toConsentEvent(row: ConsentEventRow): z.infer<typeof ConsentEventSchema> {
  return {
    id: row.id,
    contactId: row.contact_id,
    purposeId: row.purpose_id,
    noticeVersion: row.notice_version,
    event: row.event,
    method: row.method as ConsentMethod,
    legalBasis: row.legal_basis as (typeof LEGAL_BASES)[number],
    occurredAt: toIso(row.occurred_at),
    recordedAt: toIso(row.recorded_at),
    evidence: { ip: row.ip, userAgent: row.user_agent, sourceUrl: row.source_url },
    recordedBy: { type: row.actor_type ?? 'unknown', id: row.actor_id },
  };
}

export function toCurrentConsent(
  row: CurrentConsentRow,
  state: ConsentState,
): z.infer<typeof CurrentConsentSchema> {
  return {
    purposeId: row.purpose_id,
    purposeKey: row.purpose_key,
    state,
    since: toIso(row.occurred_at),
    noticeVersion: row.notice_version,
    method: row.method as ConsentMethod,
  };
}
