import { z } from 'zod';
import type { AccountRow, UserRow } from '../../db/schema.js';
import { Id, Instant, Timestamp, toIso } from '../../http/schemas.js';

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

/** Any string; the policy (length, block list) is checked by the service with a clear reason. */
export const Password = z
  .string()
  .min(1)
  .max(1024)
  .describe('At least 15 characters; no composition rules.');

export const AccountRoleSchema = z.enum(['owner', 'admin', 'member']);

export const UserSchema = z
  .object({
    id: Id,
    accountId: Id.nullable(),
    email: z.string(),
    role: z.enum(['owner', 'admin', 'member', 'operator']),
    passwordChangedAt: Instant,
    createdAt: Instant,
    updatedAt: Instant,
  })
  .meta({
    id: 'User',
    example: {
      id: '0b6f7c1e-4a53-4d8e-9a51-8a3b1f0c2d11',
      accountId: '6d1c2b3a-0f4e-4c5d-8e9f-a0b1c2d3e4f5',
      email: 'dpo@example.com',
      role: 'owner',
      passwordChangedAt: '2026-11-25T14:00:00.000Z',
      createdAt: '2026-11-25T14:00:00.000Z',
      updatedAt: '2026-11-25T14:00:00.000Z',
    },
  });

/** The one place a user row becomes an API object: an allow-list, so no hash can leak. */
export function toUser(
  row: Pick<
    UserRow,
    'id' | 'account_id' | 'email' | 'role' | 'password_changed_at' | 'created_at' | 'updated_at'
  >,
): z.infer<typeof UserSchema> {
  return {
    id: row.id,
    accountId: row.account_id,
    email: row.email,
    role: row.role,
    passwordChangedAt: toIso(row.password_changed_at),
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
  };
}

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
    dpo: DpoContactSchema,
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
      dpo: { name: 'Privacy Officer', email: 'dpo@example.com', phone: '+386 1 000 0000' },
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
    dpo: { name: row.dpo_name, email: row.dpo_email, phone: row.dpo_phone },
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    version: row.version,
  };
}

export const TokenPairSchema = z
  .object({
    tokenType: z.literal('Bearer'),
    accessToken: z.string().describe('JWT for the Authorization header; short-lived.'),
    expiresIn: z.number().int().describe('Seconds until the access token expires.'),
    refreshToken: z.string().describe('Opaque, single-use; exchange at /v1/auth/refresh.'),
    refreshTokenExpiresAt: Timestamp,
  })
  .meta({
    id: 'TokenPair',
    example: {
      tokenType: 'Bearer',
      accessToken: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.signature',
      expiresIn: 900,
      refreshToken: 'crt_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      refreshTokenExpiresAt: '2026-12-25T14:00:00.000Z',
    },
  });
