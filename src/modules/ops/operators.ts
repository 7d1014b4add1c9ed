import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import type { DB } from '../../db/schema.js';
import { enforcePasswordPolicy } from '../identity/auth.service.js';
import { hashPassword } from '../identity/password.js';
import { addUser } from '../users/users.service.js';

/**
 * Creates one of the provider's operators: staff users outside any account, with the platform
 * role `operator`. Used by `npm run create-operator` to bootstrap the first one; the same
 * password policy applies.
 */
export async function createOperator(
  db: Kysely<DB>,
  config: Pick<Config, 'PASSWORD_MIN_LENGTH'>,
  input: { email: string; password: string },
) {
  const email = input.email.trim().toLowerCase();
  enforcePasswordPolicy(config, input.password, { email });
  return addUser(db, {
    account_id: null,
    email,
    password_hash: await hashPassword(input.password),
    role: 'operator',
  });
}
