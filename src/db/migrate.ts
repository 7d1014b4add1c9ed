import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type Kysely,
  type Migration,
  type MigrationProvider,
  type MigrationResultSet,
  Migrator,
  sql,
} from 'kysely';
import { grantServiceRole } from './grants.js';
import type { DB } from './schema.js';
import { DEFAULT_SERVICE_ROLE } from './service-role.js';

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
    const migrations: Record<string, Migration> = {};
    for (const { file, name } of await migrationFiles(this.folder)) {
      const mod = (await import(pathToFileURL(`${this.folder}/${file}`).href)) as Migration;
      migrations[name] = { up: mod.up, down: mod.down };
    }
    return migrations;
  }
}

/** The migration files of a folder, in the order they apply, with the names Kysely records. */
async function migrationFiles(folder: string): Promise<{ file: string; name: string }[]> {
  return (await readdir(folder))
    .filter((file) => /\.(ts|js)$/.test(file) && !file.endsWith('.d.ts'))
    .sort()
    .map((file) => ({ file, name: file.replace(/\.(ts|js)$/, '') }));
}

/** The names of the migrations this code ships (of `folder`), oldest first. */
export async function shippedMigrations(folder: string = MIGRATIONS_DIR): Promise<string[]> {
  return (await migrationFiles(folder)).map((m) => m.name);
}

/**
 * The shipped migrations the database has not applied, oldest first: empty when its schema is
 * as new as this code (or newer: a later release migrated it, and additive migrations keep the
 * old code working). One read of Kysely's bookkeeping table; none yet means nothing applied.
 */
export async function pendingMigrations(
  // biome-ignore lint/suspicious/noExplicitAny: migrations see an untyped schema
  db: Kysely<any>,
  schema = 'public',
  folder: string = MIGRATIONS_DIR,
): Promise<string[]> {
  const shipped = await shippedMigrations(folder);
  let applied: Set<string>;
  try {
    const { rows } = await sql<{ name: string }>`
      select name from ${sql.table(`${schema}.kysely_migration`)}`.execute(db);
    applied = new Set(rows.map((r) => r.name));
  } catch (err) {
    // 42P01 undefined_table: a database nobody has migrated yet.
    if ((err as { code?: string }).code !== '42P01') throw err;
    applied = new Set();
  }
  return shipped.filter((name) => !applied.has(name));
}

/** A list of migration names for a log line: all of a few, or the first and last of many. */
function summarise(names: readonly string[]): string {
  if (names.length <= 3) return names.join(', ');
  return `${names[0]} … ${names.at(-1)}`;
}

export interface SchemaLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * What the server does about the schema at start. With `migrate` it applies what is pending and
 * says what it applied (names and count); without, it checks, and when the schema is behind it
 * says what to run: requests and `/readyz` answer 503 `migrations_pending` until then.
 */
export async function prepareSchema(
  database: { db: Kysely<DB>; owner: Kysely<DB>; schema: string; serviceRole: string },
  options: { migrate: boolean; logger: SchemaLogger; folder?: string },
): Promise<void> {
  const { logger, folder = MIGRATIONS_DIR } = options;
  if (options.migrate) {
    const applied = (
      await migrateToLatest(database.owner, database.schema, folder, database.serviceRole)
    ).map((m) => m.migrationName);
    if (applied.length === 0) {
      logger.info({ applied }, 'migrations up to date: nothing to apply');
    } else {
      const noun = applied.length === 1 ? 'migration' : 'migrations';
      logger.info(
        { applied },
        `applied ${applied.length} ${noun} (${summarise(applied)}); the schema is up to date`,
      );
    }
    return;
  }
  let pending: string[];
  try {
    pending = await pendingMigrations(database.owner, database.schema, folder);
  } catch (err) {
    // Start anyway, as without the check: requests answer 503 while the database is away, and
    // readiness checks the schema once it answers.
    logger.warn({ err }, 'could not check the schema for pending migrations');
    return;
  }
  if (pending.length === 0) {
    logger.info({ pending }, 'migrations up to date');
    return;
  }
  const noun = pending.length === 1 ? 'migration' : 'migrations';
  logger.warn(
    { pending },
    `the database schema is ${pending.length} ${noun} behind this version ` +
      `(${summarise(pending)}): run \`npm run migrate\` (in the container image: ` +
      '`node dist/scripts/migrate.js`) with the same DATABASE_URL; until then requests and ' +
      '/readyz answer 503 migrations_pending',
  );
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
  serviceRole: string = DEFAULT_SERVICE_ROLE,
) {
  const results = unwrap(
    await withIntrospectionRetry(() => migrator(db, schema, folder).migrateToLatest()),
  );
  // Every run, not only one that applied something: a role created or re-granted by hand
  // since is brought back to exactly what the service needs.
  await grantServiceRole(db, schema, serviceRole);
  return results;
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
  serviceRole: string = DEFAULT_SERVICE_ROLE,
) {
  const results = unwrap(
    await withIntrospectionRetry(() => migrator(db, schema, folder).migrateDown()),
  );
  await grantServiceRole(db, schema, serviceRole);
  return results;
}

/** Whether the schema is behind the code; see {@link schemaStatus}. */
export interface SchemaStatus {
  /** Known to be up to date (then it stays so): the synchronous answer for hot paths. */
  readonly upToDate: boolean;
  /** The pending migrations' names, oldest first; rejects when the database cannot be read. */
  pending(): Promise<readonly string[]>;
}

/**
 * {@link pendingMigrations} for a running app, asked by readiness probes and by requests while
 * the schema is behind: once it is up to date it stays so for this code, so from then on the
 * answer costs no query. Concurrent askers share one query.
 */
export function schemaStatus(
  database: { owner: Kysely<DB>; schema: string },
  folder: string = MIGRATIONS_DIR,
): SchemaStatus {
  let upToDate = false;
  let inFlight: Promise<string[]> | undefined;
  return {
    get upToDate() {
      return upToDate;
    },
    async pending() {
      if (upToDate) return [];
      inFlight ??= pendingMigrations(database.owner, database.schema, folder).finally(() => {
        inFlight = undefined;
      });
      const pending = await inFlight;
      if (pending.length === 0) upToDate = true;
      return pending;
    },
  };
}
