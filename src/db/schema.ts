import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

/**
 * Kysely's view of the tables. The migrations in `migrations/` are the source of truth; this
 * file mirrors them for type checking, one interface per table.
 */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export interface AccountsTable {
  id: Generated<string>;
  name: string;
  time_zone: Generated<string>;
  dpo_name: string | null;
  dpo_email: string | null;
  dpo_phone: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
  version: Generated<number>;
}

export type UserRole = 'owner' | 'admin' | 'member' | 'operator';

export interface UsersTable {
  id: Generated<string>;
  account_id: string | null;
  email: string;
  password_hash: string;
  role: UserRole;
  password_changed_at: Timestamp;
  failed_login_count: Generated<number>;
  locked_until: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface SessionsTable {
  id: Generated<string>;
  user_id: string;
  created_at: CreatedAt;
  last_used_at: Timestamp;
  expires_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
}

export interface RefreshTokensTable {
  id: Generated<string>;
  session_id: string;
  token_hash: string;
  created_at: CreatedAt;
  expires_at: Date;
  used_at: Date | null;
}

export interface ApiKeysTable {
  account_id: string;
  id: Generated<string>;
  name: string;
  prefix: string;
  secret_hash: string;
  scopes: string[];
  created_by: string | null;
  created_at: CreatedAt;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

export interface AuditEventsTable {
  account_id: string;
  seq: number;
  id: Generated<string>;
  occurred_at: Date;
  actor_type: string;
  actor_id: string | null;
  action: string;
  entity_type: string;
  entity_id: string | null;
  request_id: string | null;
  ip: string | null;
  changed_fields: string[];
  prev_hash: string;
  hash: string;
}

export interface DB {
  accounts: AccountsTable;
  users: UsersTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  audit_events: AuditEventsTable;
}

export type AccountRow = Selectable<AccountsTable>;
export type UserRow = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
