import { z } from 'zod';
import { Email } from '../../http/schemas.js';
import { Password, TimeZone } from '../identity/identity.schemas.js';

export const CreateAccountBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    timeZone: TimeZone.optional(),
    owner: z.object({ email: Email, password: Password }),
  })
  .meta({
    example: {
      name: 'Example Shop d.o.o.',
      timeZone: 'Europe/Ljubljana',
      owner: { email: 'dpo@example.com', password: 'staple orbit lantern quietly' },
    },
  });
