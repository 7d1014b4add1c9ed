import { z } from 'zod';
import { Email } from '../../http/schemas.js';
import { TimeZone } from '../identity/identity.schemas.js';

export const CreateAccountBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    timeZone: TimeZone.optional(),
    owner: z
      .strictObject({ email: Email })
      .describe(
        'The first owner. No password: the owner chooses it with the set-password link in ' +
          'the response, so the provider never knows it.',
      ),
  })
  .meta({
    example: {
      name: 'Example Shop d.o.o.',
      timeZone: 'Europe/Ljubljana',
      owner: { email: 'dpo@example.com' },
    },
  });
