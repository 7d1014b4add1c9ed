import { z } from 'zod';
import type { UserRow } from '../../db/schema.js';
import { Email, Id, Instant, PageQuery, toIso } from '../../http/schemas.js';

/** A password as typed at sign-in: any string (one set under an older policy still works). */
export const Password = z.string().min(1).max(1024).describe('The password.');

/**
 * A password being chosen. The contract states the configured minimum length; the service
 * checks it (in code points after NFKC) with the block list, and answers 400 naming the reason
 * (`password_too_short`, `password_common`, ...), so the schema itself stays at `min(1)`.
 */
export function newPassword(minLength: number) {
  return Password.meta({
    minLength,
    description:
      `At least ${minLength} characters (PASSWORD_MIN_LENGTH); no composition rules; not a ` +
      'common or breached password, nor built from the email or account name.',
  });
}

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

export function createUserBody(passwordMinLength: number) {
  return z
    .object({
      email: Email,
      password: newPassword(passwordMinLength),
      role: AccountRoleSchema.default('member'),
    })
    .meta({
      example: {
        email: 'marketing@example.com',
        password: 'velvet tundra compass ripple',
        role: 'member',
      },
    });
}

export const ChangeRoleBody = z
  .object({ role: AccountRoleSchema })
  .meta({ example: { role: 'admin' } });

export const ListUsersQuery = PageQuery.extend({ role: AccountRoleSchema.optional() });
