import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // A null hash: the user has not chosen a password yet (an owner created by the provider's
  // operators sets it through a single-use link). No password verifies against it, so such a
  // user cannot sign in until then.
  await db.schema
    .alterTable('users')
    .alterColumn('password_hash', (c) => c.dropNotNull())
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  // Before this migration every user had a hash: give those without one a string that is not an
  // argon2 hash, which no password verifies, so they still cannot sign in.
  await db
    .updateTable('users')
    .set({ password_hash: 'unset' })
    .where('password_hash', 'is', null)
    .execute();
  await db.schema
    .alterTable('users')
    .alterColumn('password_hash', (c) => c.setNotNull())
    .execute();
}
