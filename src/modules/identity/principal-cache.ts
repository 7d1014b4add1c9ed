import type { AccountRow, UserRow } from '../../db/schema.js';
import { setBounded } from '../../lib/bounded-map.js';

/** The signed-in user behind a session, as loaded for every authenticated request. */
export interface SessionPrincipal {
  sessionId: string;
  user: Omit<UserRow, 'password_hash'>;
  account: AccountRow | null;
  sessionExpiresAt: Date;
  revoked: boolean;
}

/**
 * A short-lived, bounded, in-process cache of session principals, so an authenticated request
 * does not pay a database round trip for who the caller is (on the embedded engine one query
 * costs about a millisecond). Changes made by this process invalidate at once (logout,
 * password change, refresh-token reuse, role change, removal, account edits); another instance
 * sees them within `ttlMs` at most — the same kind of window a short-lived JWT already has.
 * `ttlMs = 0` turns caching off.
 */
export class PrincipalCache {
  private readonly entries = new Map<string, { principal: SessionPrincipal; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  get(sessionId: string): SessionPrincipal | undefined {
    const entry = this.entries.get(sessionId);
    if (!entry) return undefined;
    if (entry.until <= Date.now()) {
      this.entries.delete(sessionId);
      return undefined;
    }
    return entry.principal;
  }

  set(principal: SessionPrincipal): void {
    if (this.ttlMs <= 0) return;
    setBounded(
      this.entries,
      principal.sessionId,
      { principal, until: Date.now() + this.ttlMs },
      this.maxEntries,
    );
  }

  forgetSession(sessionId: string): void {
    this.entries.delete(sessionId);
  }

  forgetUser(userId: string): void {
    for (const [key, entry] of this.entries) {
      if (entry.principal.user.id === userId) this.entries.delete(key);
    }
  }

  forgetAccount(accountId: string): void {
    for (const [key, entry] of this.entries) {
      if (entry.principal.user.account_id === accountId) this.entries.delete(key);
    }
  }
}
