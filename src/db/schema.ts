/**
 * Kysely's view of the tables. Migrations in `migrations/` are the source of truth for the
 * schema; this interface mirrors them for type checking. One entry per table.
 */
// biome-ignore lint/complexity/noBannedTypes: filled in as modules add tables
export type DB = {};
