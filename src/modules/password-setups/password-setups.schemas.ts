import { z } from 'zod';
import { Instant, MAX_PATH_SEGMENT_LENGTH, toIso } from '../../http/schemas.js';
import { newPassword } from '../users/users.schemas.js';

export const PasswordSetupParams = z.object({
  token: z
    .string()
    .min(1)
    .max(MAX_PATH_SEGMENT_LENGTH)
    .describe('The token from the set-password link.'),
});

/** The new password, stating the configured minimum length (see `newPassword`). */
export function setPasswordBody(passwordMinLength: number) {
  return z
    .object({ password: newPassword(passwordMinLength) })
    .meta({ example: { password: 'staple orbit lantern quietly' } });
}

/** The link as its issuer gets it, once: only the token's hash is kept. */
export const PasswordSetupLinkSchema = z
  .object({
    token: z
      .string()
      .describe(
        'The single-use secret (256 bits, base64url). Shown only in this response: only its ' +
          'SHA-256 is stored.',
      ),
    url: z
      .string()
      .describe(
        'Where the user sets the password: `POST` it `{"password": …}`. Absolute when ' +
          'PUBLIC_BASE_URL is set, else a path.',
      ),
    expiresAt: Instant,
  })
  .meta({
    id: 'PasswordSetupLink',
    description:
      'A single-use, expiring link for the user to choose their password; until they do, they ' +
      'cannot sign in. Deliver it to the user only (it is as good as their password until used).',
    example: {
      token: 'vJ3q4kS0Qn1m0yJ8mW6bqgDk2n0oTzE4Yp1sR8xWcLA',
      url: 'https://custodian.example.eu/v1/public/password-setups/vJ3q4kS0Qn1m0yJ8mW6bqgDk2n0oTzE4Yp1sR8xWcLA',
      expiresAt: '2026-12-07T16:00:00.000Z',
    },
  });

export function toPasswordSetupLink(link: {
  token: string;
  url: string;
  expiresAt: Date;
}): z.infer<typeof PasswordSetupLinkSchema> {
  return { token: link.token, url: link.url, expiresAt: toIso(link.expiresAt) };
}

export const PasswordSetOutcomeSchema = z
  .object({
    email: z.string().describe('The address to sign in with.'),
    passwordChangedAt: Instant,
  })
  .meta({
    id: 'PasswordSetOutcome',
    example: { email: 'dpo@example.com', passwordChangedAt: '2026-12-04T16:10:00.000Z' },
  });
