import { setBounded } from '../../lib/bounded-map.js';

/** The claims of a verified access token, as the auth hook uses them. */
export interface AccessClaims {
  sub: string;
  sid: string;
  typ: string;
  /** Expiry, seconds since the epoch (the JWT `exp` claim). */
  exp: number;
}

/**
 * Access tokens already verified by this process, keyed by the token string itself, until
 * they expire: a client sends the same token for up to ACCESS_TOKEN_TTL, and checking its
 * HMAC and claims again each time is wasted work. fast-jwt has a cache of its own, but it
 * keys it by a SHA-256 of the token, and creating a hash object per request cost about 7 µs of
 * CPU here, more than the rest of authentication. Only an exact, byte-for-byte equal token
 * hits; anything else is verified in full. Bounded: the oldest entry goes when it is full.
 * Revocation does not depend on this cache (sessions are checked on every request).
 */
export class VerifiedTokenCache {
  private readonly entries = new Map<string, AccessClaims>();

  constructor(private readonly maxEntries = 10_000) {}

  get(token: string, nowMs = Date.now()): AccessClaims | undefined {
    const claims = this.entries.get(token);
    if (!claims) return undefined;
    if (claims.exp * 1000 <= nowMs) {
      this.entries.delete(token);
      return undefined;
    }
    return claims;
  }

  set(token: string, claims: AccessClaims): void {
    if (this.maxEntries <= 0) return;
    setBounded(this.entries, token, claims, this.maxEntries);
  }

  get size(): number {
    return this.entries.size;
  }
}
