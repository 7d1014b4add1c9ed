import { z } from 'zod';
import { Timestamp } from '../../http/schemas.js';
// The API objects the identity routes share. The zod registry lists components in the order of
// their first definition, and openapi.yaml in that order: the two bare imports make it users,
// accounts, then the token pair, whichever route file is loaded first. Route files import these
// shapes from here.
import '../users/users.schemas.js';
import '../accounts/accounts.schemas.js';

export { AccountSchema, TimeZone, toAccount } from '../accounts/accounts.schemas.js';
export {
  AccountRoleSchema,
  newPassword,
  Password,
  toUser,
  UserSchema,
} from '../users/users.schemas.js';

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
