import { z } from 'zod';
import type { ContactRow } from '../../db/schema.js';
import { Id, PageQuery, Timestamp, toIso } from '../../http/schemas.js';
import { EMAIL_MAX_LENGTH, normalizeEmail } from '../../lib/email.js';
import { ConsentStateSchema } from '../consents/consents.schemas.js';

/** Custom attributes are a JSON object of at most this many bytes, serialised. */
export const ATTRIBUTES_MAX_BYTES = 8 * 1024;

export const CONTACT_STATUSES = ['active', 'unsubscribed', 'bounced'] as const;

/**
 * A contact's address, normalised by `normalizeEmail` (trim, NFC, lower case, IDNA domain), so
 * uniqueness per account and the suppression list see one spelling per address.
 */
export const ContactEmail = z
  .string()
  .max(EMAIL_MAX_LENGTH * 4)
  .transform((value, ctx) => {
    const normalized = normalizeEmail(value);
    if (normalized === null) {
      ctx.addIssue({ code: 'custom', message: 'Invalid email address' });
      return z.NEVER;
    }
    return normalized;
  })
  .meta({
    // What to send: an address whose domain may be internationalised (`ana@žabe.si`); the
    // local part must be ASCII. Stored normalised.
    format: 'idn-email',
    description:
      'An email address (an internationalised domain is accepted, the local part is ASCII); ' +
      'stored normalised (trimmed, lower-cased, ASCII domain).',
  });

const Name = z.string().trim().min(1).max(200);

/** A BCP 47 language tag such as `en` or `sl-SI`. */
const Language = z
  .string()
  .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/, 'must be a BCP 47 language tag such as en or sl-SI')
  .max(35);

const Attributes = z
  .record(z.string().max(100), z.unknown())
  .refine((value) => Buffer.byteLength(JSON.stringify(value), 'utf8') <= ATTRIBUTES_MAX_BYTES, {
    message: `must be at most ${ATTRIBUTES_MAX_BYTES} bytes when serialised as JSON`,
  })
  .describe(`Custom fields, a JSON object of at most ${ATTRIBUTES_MAX_BYTES} bytes serialised.`);

const Status = z
  .enum(CONTACT_STATUSES)
  .describe('`active`, `unsubscribed` (opted out of all mail) or `bounced`.');

export const ContactSchema = z
  .object({
    id: Id,
    email: z.string(),
    firstName: z.string().nullable(),
    lastName: z.string().nullable(),
    language: z.string().nullable(),
    attributes: z.record(z.string(), z.unknown()),
    status: Status,
    restriction: z
      .object({ restrictedAt: Timestamp, reason: z.string() })
      .nullable()
      .describe('Art. 18: while set, the data is only stored (not mailed, not edited).'),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    version: z.number().int().describe('Increases with every change; the ETag is `"v<version>"`.'),
  })
  .meta({
    id: 'Contact',
    example: {
      id: '3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4',
      email: 'jane.doe@example.com',
      firstName: 'Jane',
      lastName: 'Doe',
      language: 'en',
      attributes: { plan: 'gold' },
      status: 'active',
      restriction: null,
      createdAt: '2026-11-25T16:00:00.000Z',
      updatedAt: '2026-11-25T16:00:00.000Z',
      version: 1,
    },
  });

export type Contact = z.infer<typeof ContactSchema>;

export const CreateContactBody = z
  .object({
    email: ContactEmail,
    firstName: Name.nullable().optional(),
    lastName: Name.nullable().optional(),
    language: Language.nullable().optional(),
    attributes: Attributes.optional(),
    status: Status.default('active'),
    doubleOptIn: z
      .boolean()
      .default(false)
      .describe(
        'Set when the contact arrives with a fresh consent to be confirmed by double opt-in: ' +
          'a suppressed (erased) address may then be created again. Record the double opt-in ' +
          'grant right after (`POST /v1/contacts/{id}/consents`, method `double_opt_in`); ' +
          'until it is confirmed the contact is in no audience.',
      ),
  })
  .strict()
  .meta({
    example: {
      email: 'Jane.Doe@Example.com',
      firstName: 'Jane',
      lastName: 'Doe',
      language: 'en',
      attributes: { plan: 'gold' },
    },
  });

export type CreateContactInput = z.output<typeof CreateContactBody>;

export const UpdateContactBody = z
  .object({
    email: ContactEmail.optional().describe('Rectification (Art. 16) of the address.'),
    firstName: Name.nullable().optional(),
    lastName: Name.nullable().optional(),
    language: Language.nullable().optional(),
    attributes: Attributes.optional().describe('Replaces all custom attributes.'),
    status: Status.optional(),
  })
  .strict()
  .meta({ example: { firstName: 'Janet', language: 'sl' } });

export type ContactPatch = z.output<typeof UpdateContactBody>;

export const RestrictionBody = z
  .object({
    reason: z
      .string()
      .trim()
      .min(1)
      .max(500)
      .describe('Why processing is restricted (Art. 18(1)(a)–(d)), e.g. accuracy contested.'),
  })
  .strict()
  .meta({ example: { reason: 'Accuracy contested by the data subject (Art. 18(1)(a)).' } });

const Bool = z.enum(['true', 'false']).transform((v) => v === 'true');

/** The contact list's filters, shared by the list and by whatever selects contacts by them. */
const contactFilterFields = {
  email: ContactEmail.optional().describe('Exact address (normalised before matching).'),
  status: Status.optional(),
  restricted: Bool.optional().describe('`true`: only restricted contacts; `false`: none.'),
  updatedSince: Timestamp.optional().describe('Only contacts changed at or after this time.'),
  consentPurposeId: Id.optional().describe('With `consentState`: the purpose to look at.'),
  consentState: ConsentStateSchema.optional().describe(
    'With `consentPurposeId`: the current state (newest ledger event) for that purpose.',
  ),
  importId: Id.optional().describe(
    'Only the contacts this import (`POST /v1/contact-imports`) created, updated or found ' +
      'unchanged: the people its file held. Rows it rejected made no contact.',
  ),
};

function consentPair(
  query: { consentPurposeId?: string | undefined; consentState?: string | undefined },
  ctx: z.RefinementCtx,
) {
  if ((query.consentPurposeId === undefined) !== (query.consentState === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [query.consentState === undefined ? 'consentState' : 'consentPurposeId'],
      message: 'consentPurposeId and consentState go together',
    });
  }
}

export const ListContactsQuery = PageQuery.extend(contactFilterFields).superRefine(consentPair);

/** The list's filters as a JSON object (the same names and values as its query parameters). */
export const ContactFilter = z.strictObject(contactFilterFields).superRefine(consentPair);
export type ContactFilterInput = z.output<typeof ContactFilter>;

export type ListContactsFilter = z.output<typeof ListContactsQuery>;

export const SuppressionCheckBody = z
  .object({ email: ContactEmail })
  .strict()
  .meta({ example: { email: 'jane.doe@example.com' } });

export const SuppressionCheckSchema = z
  .object({
    suppressed: z
      .boolean()
      .describe('True when the address was erased (Art. 17) and may not be added again.'),
  })
  .meta({ id: 'SuppressionCheck', example: { suppressed: false } });

/** Headers of requests that change a contact: `If-Match` for optimistic concurrency. */
export const IfMatchHeaders = z.looseObject({
  'if-match': z.string().max(100).optional().describe('ETag from a previous read; 412 if stale.'),
});

/** The one place where a contact row becomes an API object. */
export function toContact(row: ContactRow): Contact {
  return {
    id: row.id,
    email: row.email,
    firstName: row.first_name,
    lastName: row.last_name,
    language: row.language,
    attributes: row.attributes,
    status: row.status,
    restriction: row.restricted_at
      ? { restrictedAt: toIso(row.restricted_at), reason: row.restriction_reason ?? '' }
      : null,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}
