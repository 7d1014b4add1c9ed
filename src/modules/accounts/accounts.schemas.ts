import { z } from 'zod';
import type { AccountRow } from '../../db/schema.js';
import { Email, Id, Instant, toIso } from '../../http/schemas.js';
import { isHolidayCountry } from '../../lib/public-holidays.js';

/** A valid IANA time zone name, checked against the runtime's tz database. */
export const TimeZone = z
  .string()
  .min(1)
  .max(64)
  .refine((zone) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: zone });
      return true;
    } catch {
      return false;
    }
  }, 'must be an IANA time zone such as Europe/Ljubljana')
  .describe('IANA time zone; deadlines (e.g. Art. 12(3)) are computed in it.');

const HOLIDAY_COUNTRY_DESCRIPTION =
  'ISO 3166-1 alpha-2 country whose public holidays, like weekends, postpone the last day ' +
  'of a deadline (Reg. 1182/71 Art. 3(4)); null: weekends only.';

/** A country code that the public holiday calendar knows. */
export const HolidayCountry = z
  .string()
  .regex(/^[A-Z]{2}$/, { message: 'must be an upper-case ISO 3166-1 alpha-2 code', abort: true })
  .refine(isHolidayCountry, 'no public holiday calendar for this country')
  .describe(HOLIDAY_COUNTRY_DESCRIPTION);

const SUPERVISORY_AUTHORITY_DESCRIPTION =
  'The supervisory authority breach notifications go to unless one names another (Art. 33(1)).';

export const DpoContactSchema = z
  .object({
    name: z.string().nullable(),
    email: z.string().nullable(),
    phone: z.string().nullable(),
  })
  .describe('Data protection officer or privacy contact point (Art. 33(3)(b)).');

export const AccountSchema = z
  .object({
    id: Id,
    name: z.string(),
    timeZone: z.string(),
    holidayCountry: z.string().nullable().describe(HOLIDAY_COUNTRY_DESCRIPTION),
    dpo: DpoContactSchema,
    supervisoryAuthority: z.string().nullable().describe(SUPERVISORY_AUTHORITY_DESCRIPTION),
    createdAt: Instant,
    updatedAt: Instant,
    version: z.number().int().describe('Increments on each change; the ETag is derived from it.'),
  })
  .meta({
    id: 'Account',
    example: {
      id: '6d1c2b3a-0f4e-4c5d-8e9f-a0b1c2d3e4f5',
      name: 'Example Shop d.o.o.',
      timeZone: 'Europe/Ljubljana',
      holidayCountry: 'SI',
      dpo: { name: 'Privacy Officer', email: 'dpo@example.com', phone: '+386 1 000 0000' },
      supervisoryAuthority: 'Information Commissioner of the Republic of Slovenia',
      createdAt: '2026-11-25T14:00:00.000Z',
      updatedAt: '2026-11-25T14:00:00.000Z',
      version: 1,
    },
  });

export function toAccount(row: AccountRow): z.infer<typeof AccountSchema> {
  return {
    id: row.id,
    name: row.name,
    timeZone: row.time_zone,
    holidayCountry: row.holiday_country,
    dpo: { name: row.dpo_name, email: row.dpo_email, phone: row.dpo_phone },
    supervisoryAuthority: row.supervisory_authority,
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}

export const AccountPatchBody = z
  .object({
    name: z.string().trim().min(1).max(200).optional(),
    timeZone: TimeZone.optional(),
    holidayCountry: HolidayCountry.nullable().optional(),
    dpo: z
      .object({
        name: z.string().trim().min(1).max(200).nullable().optional(),
        email: Email.nullable().optional(),
        phone: z.string().trim().min(3).max(40).nullable().optional(),
      })
      .optional(),
    supervisoryAuthority: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .nullable()
      .optional()
      .describe(SUPERVISORY_AUTHORITY_DESCRIPTION),
  })
  .strict()
  .meta({
    example: {
      timeZone: 'Europe/Ljubljana',
      holidayCountry: 'SI',
      dpo: { name: 'Privacy Officer', email: 'dpo@example.com', phone: '+386 1 000 0000' },
      supervisoryAuthority: 'Information Commissioner of the Republic of Slovenia',
    },
  });

export const IfMatchHeaders = z.object({
  'if-match': z.string().max(100).optional().describe('ETag from a previous read; 412 if stale.'),
});
