/**
 * Who is calling. Bearer tokens and API keys both resolve to one `Actor`, which routes hand to
 * services and services write into the audit trail.
 */
export type AccountRole = 'owner' | 'admin' | 'member';

export type Actor =
  | { type: 'user'; id: string; accountId: string; role: AccountRole; sessionId: string }
  | { type: 'api_key'; id: string; accountId: string; scopes: readonly string[] }
  | { type: 'operator'; id: string; accountId: null; sessionId: string };

/** What a service needs to know about the request that asks for a change. */
export interface RequestContext {
  actor: Actor;
  requestId: string;
  ip: string;
}

/** Permissions a route can ask for. `*:read` ones are what read-only members get. */
export const PERMISSIONS = [
  'account:read',
  'account:write',
  'users:read',
  'users:write',
  'api-keys:read',
  'api-keys:write',
  'audit:read',
  // Signing an audit checkpoint on demand: owners and admins, not API keys.
  'audit:write',
  'contacts:read',
  'contacts:write',
  'consents:read',
  'consents:write',
  'events:read',
  'requests:read',
  'requests:write',
  'breaches:read',
  'breaches:write',
  // Webhook endpoints: users only, never API keys (a leaked key must not redirect the feed).
  'webhooks:read',
  'webhooks:write',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Scopes an API key may carry: integration work, never user or key management. */
export const API_KEY_SCOPES = [
  'account:read',
  'audit:read',
  'contacts:read',
  'contacts:write',
  'consents:read',
  'consents:write',
  'events:read',
  'requests:read',
  'requests:write',
  'breaches:read',
  'breaches:write',
] as const satisfies readonly Permission[];
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export function roleAllows(role: AccountRole, permission: Permission): boolean {
  if (role === 'member') return permission.endsWith(':read');
  return true;
}
