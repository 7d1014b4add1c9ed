import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // The country whose public holidays postpone the account's deadlines (Reg. 1182/71
  // Art. 3(4)), as an ISO 3166-1 alpha-2 code; null: only weekends do.
  await db.schema.alterTable('accounts').addColumn('holiday_country', 'text').execute();
  await db.schema
    .alterTable('accounts')
    .addCheckConstraint('accounts_holiday_country_valid', sql`holiday_country ~ '^[A-Z]{2}$'`)
    .execute();
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('accounts').dropColumn('holiday_country').execute();
}
