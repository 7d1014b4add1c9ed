import type { Kysely } from 'kysely';
import type { Config } from '../../config.js';
import type { DB } from '../../db/schema.js';
import { enforcePasswordPolicy } from './auth.service.js';
import { emailTaken, insertUser } from './identity.repository.js';
import { hashPassword } from './password.js';

/**
 * Creates one of the provider's operators (platform staff, outside any account). Used by
 * `npm run create-operator` to bootstrap the first one; the same password policy applies.
 */
export async function createOperator(
  db: Kysely<DB>,
  config: Config,
  input: { email: string; password: string },
) {
  const email = input.email.trim().toLowerCase();
  enforcePasswordPolicy(config, input.password, { email });
  const operator = await insertUser(db, {
    account_id: null,
    email,
    password_hash: await hashPassword(input.password),
    role: 'operator',
  });
  if (!operator) throw emailTaken();
  return operator;
}
