import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Kysely } from 'kysely';
import { type Migration, type MigrationProvider, type MigrationResultSet, Migrator } from 'kysely';

/**
 * `migrations/` sits two levels above this file both in the source tree (src/db) and in the
 * build (dist/src/db -> dist/migrations), so one relative URL serves `tsx` and `node dist`.
 */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/**
 * Loads every migration module in a folder. Names drop the extension so that the `.ts` files
 * run by tsx and the compiled `.js` files record the same names in `kysely_migration`.
 */
export class FolderMigrationProvider implements MigrationProvider {
  constructor(private readonly folder: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const files = await readdir(this.folder);
    const migrations: Record<string, Migration> = {};
    for (const file of files.sort()) {
      if (!/\.(ts|js)$/.test(file) || file.endsWith('.d.ts')) continue;
      const name = file.replace(/\.(ts|js)$/, '');
      const mod = (await import(pathToFileURL(`${this.folder}/${file}`).href)) as Migration;
      migrations[name] = { up: mod.up, down: mod.down };
    }
    return migrations;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: migrations see an untyped schema
function migrator(db: Kysely<any>, schema: string, folder: string): Migrator {
  return new Migrator({
    db,
    provider: new FolderMigrationProvider(folder),
    // Name the schema explicitly: otherwise Kysely looks for its bookkeeping table in any
    // schema and would be fooled by another test file's schema on the same database.
    migrationTableSchema: schema,
  });
}

export class MigrationError extends Error {
  constructor(
    message: string,
    readonly results: MigrationResultSet['results'],
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}

function unwrap(set: MigrationResultSet): NonNullable<MigrationResultSet['results']> {
  if (set.error) {
    const failed = set.results?.find((r) => r.status === 'Error');
    const cause = set.error instanceof Error ? set.error.message : String(set.error);
    throw new MigrationError(
      `migration ${failed?.migrationName ?? '(unknown)'} failed: ${cause}`,
      set.results,
    );
  }
  return set.results ?? [];
}

/**
 * Brings the schema to the newest migration. Kysely's Postgres adapter holds an advisory lock
 * for the whole run, so concurrent starts never apply a migration twice. `folder` defaults to
 * the project's `migrations/` (tests pass a fixture folder).
 */
export async function migrateToLatest(
  // biome-ignore lint/suspicious/noExplicitAny: migrations see an untyped schema
  db: Kysely<any>,
  schema = 'public',
  folder: string = MIGRATIONS_DIR,
) {
  return unwrap(await withIntrospectionRetry(() => migrator(db, schema, folder).migrateToLatest()));
}

/**
 * Kysely's migrator checks for its bookkeeping tables by introspecting every schema of the
 * database, which fails with 3F000 (invalid_schema_name) when another client drops some other
 * schema at that moment (test files on one Postgres do, at teardown). Nothing was applied then
 * (the check runs before any migration), so running again is safe.
 */
export async function withIntrospectionRetry(
  run: () => Promise<MigrationResultSet>,
  attempts = 5,
): Promise<MigrationResultSet> {
  for (let attempt = 1; ; attempt++) {
    const set = await run();
    const code = (set.error as { code?: string } | undefined)?.code;
    const applied = set.results?.some((r) => r.status !== 'NotExecuted') ?? false;
    if (code !== '3F000' || applied || attempt >= attempts) return set;
  }
}

/** Undoes the newest applied migration (of `folder`, by default the project's). */
export async function migrateDown(
  // biome-ignore lint/suspicious/noExplicitAny: migrations see an untyped schema
  db: Kysely<any>,
  schema = 'public',
  folder: string = MIGRATIONS_DIR,
) {
  return unwrap(await withIntrospectionRetry(() => migrator(db, schema, folder).migrateDown()));
}
