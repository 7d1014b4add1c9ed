import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Signed checkpoints of each account's audit chain: "entry `seq` of this account had hash
  // `hash`", signed with Ed25519 at `signed_at`. A hash chain alone cannot show that its tail
  // was cut off, or that an entry was removed and every later one re-hashed; a checkpoint the
  // customer has kept a copy of can. The private key never reaches the database: `public_key`
  // is the SPKI (PEM) of the key that signed the row, so checkpoints signed before a key
  // rotation still verify, and `key_id` names it. No foreign key to audit_events: a checkpoint
  // must outlive the entries it vouches for, to show that they are gone.
  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('signed_at', sql`timestamptz(3)`, (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    // Base64 of the 64-byte Ed25519 signature.
    .addColumn('signature', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_checkpoints_pkey', ['account_id', 'seq'])
    .execute();

  // Append-only like the chain it anchors: no UPDATE, DELETE or TRUNCATE, whoever connects.
  await sql`
    create function audit_checkpoints_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_checkpoints is append-only (% refused)', tg_op using errcode = 'P0001';
    end
    $$`.execute(db);
  await sql`
    create trigger audit_checkpoints_no_update_delete
    before update or delete on audit_checkpoints
    for each row execute function audit_checkpoints_append_only()`.execute(db);
  await sql`
    create trigger audit_checkpoints_no_truncate
    before truncate on audit_checkpoints
    for each statement execute function audit_checkpoints_append_only()`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('audit_checkpoints').execute();
  await sql`drop function if exists audit_checkpoints_append_only()`.execute(db);
}
