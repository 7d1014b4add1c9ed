import type { Kysely, Transaction } from 'kysely';
import type { Config } from '../../config.js';
import type { DB, UserRow } from '../../db/schema.js';
import { accountOf, inAccountOf } from '../../db/tenant.js';
import type { Clock } from '../../lib/clock.js';
import {
  assertRedeemable,
  linkTokenHash,
  newLinkToken,
  TokenInvalidError,
  TokenUsedError,
} from '../../lib/link-tokens.js';
import { findAccount } from '../accounts/accounts.service.js';
import { recordAudit } from '../audit/audit.service.js';
import type { AccountRole, RequestContext } from '../identity/actor.js';
import { enforcePasswordPolicy } from '../identity/auth.service.js';
import { hashPassword } from '../identity/password.js';
import { findUserById, setPassword } from '../users/users.service.js';
import {
  deleteUnusedPasswordSetups,
  findPasswordSetup,
  insertPasswordSetup,
  lockPasswordSetup,
  markPasswordSetupUsed,
} from './password-setups.repository.js';

/** Where a set-password link's token is redeemed (`POST`, with the password). */
export const PASSWORD_SETUP_PATH = '/v1/public/password-setups/';

export interface PasswordSetupLink {
  token: string;
  url: string;
  expiresAt: Date;
}

/**
 * Set-password links: how a user the provider created (a new account's owner) chooses their own
 * password, so that nobody else ever knows it. A link is single-use and expires after
 * PASSWORD_SETUP_TTL_HOURS; only its token's SHA-256 is stored, and issuing and using it are
 * both written to the account's audit chain.
 */
export function createPasswordSetupsService(deps: {
  db: Kysely<DB>;
  config: Pick<Config, 'PASSWORD_MIN_LENGTH' | 'PASSWORD_SETUP_TTL_HOURS' | 'PUBLIC_BASE_URL'>;
  clock: Clock;
}) {
  const { db, config, clock } = deps;
  const base = (config.PUBLIC_BASE_URL ?? '').replace(/\/+$/, '');

  return {
    /**
     * Issues a link for a user who has no password yet, inside the caller's transaction (the
     * one that creates the user, or a re-issue). Older unused links of the user stop working:
     * one live link per user.
     */
    async issueIn(
      trx: Transaction<DB>,
      ctx: RequestContext,
      user: Pick<UserRow, 'id' | 'account_id'>,
    ): Promise<PasswordSetupLink> {
      if (!user.account_id) throw new Error('set-password links are for account users');
      await deleteUnusedPasswordSetups(trx, user.id);
      const { token, hash } = newLinkToken();
      const expiresAt = new Date(
        clock.now().getTime() + config.PASSWORD_SETUP_TTL_HOURS * 3_600_000,
      );
      await insertPasswordSetup(trx, {
        token_hash: hash,
        account_id: user.account_id,
        user_id: user.id,
        expires_at: expiresAt,
      });
      await recordAudit(trx, ctx, {
        accountId: user.account_id,
        action: 'user.password_setup_issued',
        entityType: 'user',
        entityId: user.id,
        changedFields: ['passwordSetup'],
      });
      return { token, url: `${base}${PASSWORD_SETUP_PATH}${token}`, expiresAt };
    },

    /**
     * The user sets their password with the link's token: 404 for an unknown or altered token,
     * 409 once used, 410 once expired; a password the policy refuses is a 400 that leaves the
     * link usable. The password is checked and hashed before the transaction (argon2 takes long
     * enough to matter to a held lock); the link's row is locked and checked again inside it.
     */
    async setPassword(token: string, password: string, meta: { requestId: string; ip: string }) {
      return inAccountOf(
        async () => {
          const hash = linkTokenHash(token);
          return hash ? accountOf(db, 'account_of_password_setup', hash) : null;
        },
        async () => {
          const hash = linkTokenHash(token);
          if (!hash) throw new TokenInvalidError();
          const found = await findPasswordSetup(db, hash);
          assertRedeemable(found, clock.now());
          const user = await findUserById(db, found.user_id);
          if (!user?.account_id) throw new TokenInvalidError();
          if (user.password_hash !== null) throw new TokenUsedError();
          const account = await findAccount(db, user.account_id);
          enforcePasswordPolicy(config, password, {
            email: user.email,
            accountName: account?.name,
          });
          const passwordHash = await hashPassword(password);

          return db.transaction().execute(async (trx) => {
            assertRedeemable(await lockPasswordSetup(trx, hash), clock.now());
            await setPassword(trx, user.id, passwordHash);
            await markPasswordSetupUsed(trx, hash, clock.now());
            await deleteUnusedPasswordSetups(trx, user.id);
            // The user acts through the link alone: there is no session yet.
            const ctx: RequestContext = {
              actor: {
                type: 'user',
                id: user.id,
                accountId: user.account_id!,
                role: user.role as AccountRole,
                sessionId: '',
              },
              ...meta,
            };
            await recordAudit(trx, ctx, {
              action: 'user.password_set',
              entityType: 'user',
              entityId: user.id,
              changedFields: ['password'],
            });
            const updated = await findUserById(trx, user.id);
            return { email: user.email, passwordChangedAt: updated!.password_changed_at };
          });
        },
      );
    },
  };
}

export type PasswordSetupsService = ReturnType<typeof createPasswordSetupsService>;
