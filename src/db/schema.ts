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
  /** ISO 3166-1 alpha-2; its public holidays postpone deadlines. Null: weekends only. */
  holiday_country: string | null;
  /** Art. 33(1): the authority breach notifications go to by default. */
  supervisory_authority: Generated<string | null>;
  created_at: CreatedAt;
  updated_at: Timestamp;
  version: Generated<number>;
}

export type UserRole = 'owner' | 'admin' | 'member' | 'operator';

export interface UsersTable {
  id: Generated<string>;
  account_id: string | null;
  email: string;
  /** Null until the user sets a password (owners made by operators, through their link). */
  password_hash: string | null;
  role: UserRole;
  password_changed_at: Timestamp;
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
  /** The successor token, AES-256-GCM encrypted, during the reuse grace window only. */
  successor_ciphertext: string | null;
}

/** Failed-login counters by keyed hash of the address, or of the address and client network. */
export interface LoginThrottlesTable {
  key: string;
  failures: number;
  resets_at: Date | null;
  last_failure_at: Date;
  locked_until: Date | null;
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
  /** Which formula `hash` was computed with (see entryHash in the audit module). */
  hash_version: Generated<number>;
}

/** Ed25519-signed checkpoints of the audit chains; the private key is never stored. */
export interface AuditCheckpointsTable {
  account_id: string;
  seq: number;
  hash: string;
  signed_at: Date;
  key_id: string;
  /** SPKI of the signing key, PEM. */
  public_key: string;
  /** Base64. */
  signature: string;
}

export type ContactStatus = 'active' | 'unsubscribed' | 'bounced';

export interface ContactsTable {
  account_id: string;
  id: Generated<string>;
  email: string;
  first_name: string | null;
  last_name: string | null;
  language: string | null;
  attributes: ColumnType<Record<string, unknown>, string | undefined, string>;
  status: Generated<ContactStatus>;
  restricted_at: Date | null;
  restriction_reason: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
  version: Generated<number>;
  /** Re-admitted at a suppressed address: only double opt-in grants until one is confirmed. */
  suppressed_until_confirmed: Generated<boolean>;
}

/** Keyed hashes of the addresses a living contact held before its current one. */
export interface ContactAddressHistoryTable {
  account_id: string;
  contact_id: string;
  email_hash: string;
  replaced_at: CreatedAt;
}

/** Which contacts each import wrote or confirmed: ids only, gone with the contact. */
export interface ImportedContactsTable {
  account_id: string;
  import_id: string;
  contact_id: string;
}

export interface SuppressionsTable {
  account_id: string;
  email_hash: string;
  reason: string;
  created_at: CreatedAt;
}

export interface ErasuresTable {
  account_id: string;
  contact_id: string;
  email_hash: string;
  erased_at: CreatedAt;
  request_id: string | null;
  /** The data-subject request the erasure answered, if any. */
  data_subject_request_id: string | null;
}

export type DataSubjectRequestType =
  | 'access'
  | 'portability'
  | 'rectification'
  | 'erasure'
  | 'restriction'
  | 'objection';
export type DataSubjectRequestStatus =
  | 'received'
  | 'identity_verified'
  | 'completed'
  | 'rejected'
  | 'cancelled';
export type RejectionBasis =
  | 'identity_not_verified'
  | 'manifestly_unfounded_or_excessive'
  | 'erasure_exception'
  | 'other';

type Json<T> = ColumnType<T, string | null | undefined, string | null>;

/** Art. 12: a data-subject request and the controller's answer. Plaintext only while needed. */
export interface DataSubjectRequestsTable {
  account_id: string;
  id: Generated<string>;
  type: DataSubjectRequestType;
  status: DataSubjectRequestStatus;
  external_id: string | null;
  channel: string | null;
  contact_id: string | null;
  subject_email: string | null;
  /** Keyed fingerprint of the address (the suppression list's); kept for good. */
  subject_email_hash: string;
  subject_customer_id: string | null;
  notes: string | null;
  purpose_ids: Json<string[] | null>;
  corrections: Json<Record<string, string | null> | null>;
  received_at: Date;
  time_zone: string;
  holiday_country: string | null;
  calendar: string;
  due_date: string;
  due_at: Date;
  original_due_at: Date;
  extension_months: number | null;
  extension_reason: string | null;
  extended_at: Date | null;
  subject_informed_at: Date | null;
  identity_verified_at: Date | null;
  identity_method: 'manual' | 'link' | null;
  identity_evidence: string | null;
  verification_requested_at: Date | null;
  decided_at: Date | null;
  decided_late: boolean | null;
  decision_reason: string | null;
  rejection_basis: RejectionBasis | null;
  complaint_information_given: boolean | null;
  recipients_informed: Json<{ name: string; informedAt: string }[] | null>;
  recipients_not_informed_reason: string | null;
  outcome: Json<Record<string, unknown> | null>;
  /** The encrypted (age, armored) access/portability export, until `export_expires_at`. */
  export_ciphertext: string | null;
  export_expires_at: Date | null;
  version: Generated<number>;
  created_at: Date;
  updated_at: Date;
}

/** Single-use identity-verification links of data-subject requests (SHA-256 of the token). */
export interface DataSubjectRequestTokensTable {
  token_hash: string;
  account_id: string;
  request_id: string;
  expires_at: Date;
  used_at: Date | null;
  created_at: Date;
}

export interface PurposesTable {
  account_id: string;
  id: Generated<string>;
  key: string;
  name: string;
  description: string | null;
  category: Generated<string>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface NoticeVersionsTable {
  account_id: string;
  purpose_id: string;
  version: number;
  text: string;
  text_sha256: string;
  language: string | null;
  created_at: CreatedAt;
  first_used_at: Date | null;
}

export type ConsentEventKind = 'granted' | 'withdrawn' | 'confirmed';

export interface ConsentEventsTable {
  account_id: string;
  id: Generated<string>;
  contact_id: string;
  purpose_id: string;
  notice_version: number | null;
  event: ConsentEventKind;
  method: string;
  legal_basis: Generated<string>;
  occurred_at: Date;
  recorded_at: CreatedAt;
  ip: string | null;
  user_agent: string | null;
  source_url: string | null;
  actor_type: string | null;
  actor_id: string | null;
}

export interface ConsentTokensTable {
  token_hash: string;
  account_id: string;
  contact_id: string;
  purpose_id: string;
  kind: 'confirm' | 'withdraw';
  expires_at: Date;
  used_at: Date | null;
  created_at: CreatedAt;
}

/** Set-password links (single-use, expiring), by the SHA-256 of their token. */
export interface PasswordSetupsTable {
  token_hash: string;
  account_id: string;
  user_id: string;
  expires_at: Date;
  used_at: Date | null;
  created_at: CreatedAt;
}

export interface EventsTable {
  account_id: string;
  /** Feed position: bigint, read back as a string by `pg`, a number by PGlite. */
  seq: ColumnType<string | number, never, never>;
  id: Generated<string>;
  type: string;
  contact_id: string | null;
  data: ColumnType<Record<string, unknown>, string, string>;
  created_at: CreatedAt;
}

/** The last `events.seq` handed out per account (seq is a position within the account). */
export interface EventCountersTable {
  account_id: string;
  last_seq: ColumnType<string | number, number, number>;
}

export interface IdempotencyKeysTable {
  account_id: string;
  key: string;
  method: string;
  path: string;
  request_hash: string;
  status: Generated<'in_progress' | 'completed'>;
  response_status: number | null;
  response_content_type: string | null;
  response_body: string | null;
  response_location: Generated<string | null>;
  response_etag: Generated<string | null>;
  created_at: CreatedAt;
  completed_at: Date | null;
}

export type ContactImportStatus = 'running' | 'interrupted' | 'completed' | 'failed';

export interface ContactImportsTable {
  account_id: string;
  id: Generated<string>;
  status: Generated<ContactImportStatus>;
  format: 'ndjson' | 'csv';
  missing_consent: 'reject' | 'pending_double_opt_in';
  content_sha256: string | null;
  total_rows: number | null;
  processed_rows: Generated<number>;
  created_count: Generated<number>;
  updated_count: Generated<number>;
  rejected_count: Generated<number>;
  last_row: Generated<number>;
  error_code: string | null;
  error_line: number | null;
  created_by_type: string | null;
  created_by_id: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
  finished_at: Date | null;
  lease_expires_at: Date | null;
  attempts: Generated<number>;
  idempotency_key: string | null;
  /** Bytes of the body the last committed batch had read (bigint: a string from `pg`). */
  consumed_bytes: ColumnType<string | number, string | number | undefined, string | number>;
  /** SHA-256 (hex) of those `consumed_bytes` bytes. */
  consumed_sha256: string | null;
  /** Row errors found (bigint: a string from `pg`); only `stored_error_count` are kept. */
  error_count: ColumnType<string | number, string | number | undefined, string | number>;
  stored_error_count: Generated<number>;
}

export interface ContactImportErrorsTable {
  account_id: string;
  import_id: string;
  row_number: number;
  ordinal: number;
  field: string | null;
  code: string;
  message: string;
}

export type WebhookEndpointStatus = 'active' | 'disabled';

/** Where an account's events are pushed; the secret is stored encrypted (see webhooks/). */
export interface WebhookEndpointsTable {
  account_id: string;
  id: Generated<string>;
  url: string;
  description: string | null;
  event_types: Json<string[]>;
  status: Generated<WebhookEndpointStatus>;
  secret_ciphertext: string;
  previous_secret_ciphertext: string | null;
  previous_secret_expires_at: Date | null;
  /** The last feed seq fanned out (bigint: a string from `pg`, a number from PGlite). */
  cursor_seq: ColumnType<string | number, string | number, string | number>;
  version: Generated<number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export type WebhookDeliveryStatus = 'pending' | 'sending' | 'delivered' | 'failed' | 'cancelled';

/** One event for one endpoint: its state and last attempt's outcome, never a body. */
export interface WebhookDeliveriesTable {
  account_id: string;
  id: Generated<string>;
  endpoint_id: string;
  event_id: string;
  event_seq: ColumnType<string | number, string | number, never>;
  event_type: string;
  status: Generated<WebhookDeliveryStatus>;
  attempts: Generated<number>;
  round_started_after: Generated<number>;
  next_attempt_at: Date;
  give_up_at: Date;
  lease_expires_at: Date | null;
  /** The worker holding the lease (a random id per worker). */
  lease_owner: string | null;
  last_attempt_at: Date | null;
  last_status_code: number | null;
  last_error_code: string | null;
  last_duration_ms: number | null;
  delivered_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export type BreachKind = 'confidentiality' | 'integrity' | 'availability';
export type BreachRisk = 'unassessed' | 'none' | 'risk' | 'high';
export type BreachStatus = 'open' | 'assessed' | 'notified' | 'closed';

/** The Art. 33(3)(b) contact point: a name, an address, a telephone number. */
export interface ContactPoint {
  name: string | null;
  email: string | null;
  phone: string | null;
}

/** A correction of `aware_at`, kept with its reason (the audit entry names the fields only). */
export interface AwareAtCorrection {
  previousAwareAt: string;
  awareAt: string;
  reason: string;
  correctedAt: string;
}

/** Art. 33: a personal-data breach, its 72-hour deadline, its assessment and its closing. */
export interface BreachIncidentsTable {
  account_id: string;
  id: Generated<string>;
  source: Generated<'account' | 'processor'>;
  processor_incident_id: string | null;
  status: BreachStatus;
  title: string;
  description: string;
  kinds: Json<BreachKind[]>;
  occurred_at: Date | null;
  aware_at: Date;
  authority_deadline_at: Date;
  aware_at_corrections: Json<AwareAtCorrection[] | null>;
  risk: BreachRisk;
  risk_reason: string | null;
  assessed_at: Date | null;
  data_categories: Json<string[] | null>;
  subject_categories: Json<string[] | null>;
  approximate_subjects: number | null;
  approximate_records: number | null;
  likely_consequences: string | null;
  measures_taken: string | null;
  contact_point: Json<ContactPoint>;
  first_notified_at: Date | null;
  notified_late: boolean | null;
  notification_count: Generated<number>;
  no_notification_reason: string | null;
  closing_summary: string | null;
  closed_at: Date | null;
  subject_notice_exemption: Json<SubjectNoticeExemption | null>;
  /** When the account acknowledged a breach its processor reported (Art. 33(2)). */
  acknowledged_at: Date | null;
  version: Generated<number>;
  created_at: Date;
  updated_at: Date;
}

/** Art. 33(2): a breach at the provider as processor, told to the accounts it affects. */
export interface ProcessorBreachIncidentsTable {
  id: Generated<string>;
  title: string;
  description: string;
  kinds: Json<BreachKind[]>;
  occurred_at: Date | null;
  aware_at: Date;
  contact_point: Json<ContactPoint>;
  /** The accounts to tell; null: every account. */
  target_account_ids: Json<string[] | null>;
  /** The last account (in id order) the fan-out finished. */
  fan_out_after: string | null;
  fan_out_done_at: Date | null;
  public_communication: Json<{ url: string; publishedAt: string; recordedAt: string } | null>;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

/** Art. 34(3): why the people affected need not be told, recorded on the incident. */
export interface SubjectNoticeExemption {
  ground: 'unintelligible' | 'risk_removed' | 'disproportionate_effort';
  explanation: string;
  /** Art. 34(3)(c): the public communication that informs them instead. */
  publicCommunication: { url: string; publishedAt: string } | null;
  recordedAt: string;
}

/** Art. 34: one batch of notices to the people affected, its text kept once with its hash. */
export interface BreachSubjectNoticeBatchesTable {
  account_id: string;
  id: Generated<string>;
  incident_id: string;
  selection: Json<Record<string, unknown>>;
  nature: string;
  contact_point: string;
  consequences: string;
  measures: string;
  text_sha256: string;
  created_at: Date;
}

export type SubjectNoticeStatus = 'pending' | 'delivered' | 'failed';

/** One person's breach notice (kind `breach_notice`), pending until the sender reports. */
export interface BreachSubjectNoticesTable {
  account_id: string;
  id: Generated<string>;
  incident_id: string;
  batch_id: string;
  contact_id: string;
  kind: Generated<'breach_notice'>;
  status: Generated<SubjectNoticeStatus>;
  reported_at: Date | null;
  failure_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

/** Art. 33(4): one phase of the notification to the supervisory authority (append-only). */
export interface BreachAuthorityNotificationsTable {
  account_id: string;
  id: Generated<string>;
  incident_id: string;
  phase: number;
  notified_at: Date;
  authority: string;
  reference: string | null;
  channel: string | null;
  content: Json<Record<string, unknown>>;
  delay_reason: string | null;
  late: boolean;
  created_at: Date;
}

/** A deadline reminder put on the feed, once per incident and threshold. */
export interface BreachIncidentRemindersTable {
  account_id: string;
  incident_id: string;
  threshold: '24h' | '6h' | 'passed';
  sent_at: Date;
}

/** A due-date reminder put on the feed, once per request and threshold. */
export interface DataSubjectRequestRemindersTable {
  account_id: string;
  request_id: string;
  threshold: '7d' | 'overdue';
  sent_at: Date;
}

export interface DB {
  accounts: AccountsTable;
  users: UsersTable;
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  login_throttles: LoginThrottlesTable;
  api_keys: ApiKeysTable;
  audit_events: AuditEventsTable;
  audit_checkpoints: AuditCheckpointsTable;
  contacts: ContactsTable;
  contact_address_history: ContactAddressHistoryTable;
  imported_contacts: ImportedContactsTable;
  suppressions: SuppressionsTable;
  erasures: ErasuresTable;
  purposes: PurposesTable;
  notice_versions: NoticeVersionsTable;
  consent_events: ConsentEventsTable;
  consent_tokens: ConsentTokensTable;
  password_setups: PasswordSetupsTable;
  events: EventsTable;
  event_counters: EventCountersTable;
  idempotency_keys: IdempotencyKeysTable;
  contact_imports: ContactImportsTable;
  contact_import_errors: ContactImportErrorsTable;
  data_subject_requests: DataSubjectRequestsTable;
  data_subject_request_tokens: DataSubjectRequestTokensTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  breach_incidents: BreachIncidentsTable;
  breach_authority_notifications: BreachAuthorityNotificationsTable;
  breach_incident_reminders: BreachIncidentRemindersTable;
  breach_subject_notice_batches: BreachSubjectNoticeBatchesTable;
  breach_subject_notices: BreachSubjectNoticesTable;
  processor_breach_incidents: ProcessorBreachIncidentsTable;
  data_subject_request_reminders: DataSubjectRequestRemindersTable;
}

export type AccountRow = Selectable<AccountsTable>;
export type DataSubjectRequestRow = Selectable<DataSubjectRequestsTable>;
export type UserRow = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
export type AuditCheckpointRow = Selectable<AuditCheckpointsTable>;
export type ContactRow = Selectable<ContactsTable>;
export type PurposeRow = Selectable<PurposesTable>;
export type NoticeVersionRow = Selectable<NoticeVersionsTable>;
export type ConsentEventRow = Selectable<ConsentEventsTable>;
export type EventRow = Selectable<EventsTable>;
export type ContactImportRow = Selectable<ContactImportsTable>;
export type ContactImportErrorRow = Selectable<ContactImportErrorsTable>;
export type WebhookEndpointRow = Selectable<WebhookEndpointsTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type BreachIncidentRow = Selectable<BreachIncidentsTable>;
export type BreachAuthorityNotificationRow = Selectable<BreachAuthorityNotificationsTable>;
export type BreachSubjectNoticeBatchRow = Selectable<BreachSubjectNoticeBatchesTable>;
export type BreachSubjectNoticeRow = Selectable<BreachSubjectNoticesTable>;
export type ProcessorBreachIncidentRow = Selectable<ProcessorBreachIncidentsTable>;
