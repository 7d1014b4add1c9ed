/**
 * `npm run migrate`          brings the schema to the newest migration.
 * `npm run migrate -- down`  undoes the newest applied migration.
 *
 * Uses the same configuration as the service: Postgres when DATABASE_URL is set, the embedded
 * database in DATA_DIR otherwise (stop the service first: an embedded database has one user).
 * In the container image it runs compiled: `node dist/scripts/migrate.js`.
 */
import { type MigrationResult, sql } from 'kysely';
import { ConfigError, loadConfig } from '../src/config.js';
import { type Database, DatabaseLockedError, openDatabase } from '../src/db/database.js';
import { ensureLoginRole } from '../src/db/grants.js';
import { MigrationError, migrateDown, migrateToLatest } from '../src/db/migrate.js';
import { describeError, describeTarget } from './lib/describe.js';

const USAGE = 'usage: npm run migrate [-- up|down]';

type Direction = 'up' | 'down';

class UnreachableError extends Error {}

function parseDirection(args: string[]): Direction | undefined {
  if (args.length === 0) return 'up';
  if (args.length === 1 && (args[0] === 'up' || args[0] === 'latest')) return 'up';
  if (args.length === 1 && args[0] === 'down') return 'down';
  return undefined;
}

function report(results: MigrationResult[], direction: Direction) {
  const done = results.filter((r) => r.status === 'Success');
  if (done.length === 0) {
    process.stdout.write(
      direction === 'up' ? 'already up to date: nothing to apply\n' : 'nothing to undo\n',
    );
    return;
  }
  for (const r of done) {
    process.stdout.write(`${direction === 'up' ? 'applied' : 'reverted'} ${r.migrationName}\n`);
  }
  const noun = done.length === 1 ? 'migration' : 'migrations';
  process.stdout.write(`${direction === 'up' ? 'applied' : 'reverted'} ${done.length} ${noun}\n`);
}

async function main(args: string[]): Promise<number> {
  const direction = parseDirection(args);
  if (!direction) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }

  let database: Database | undefined;
  try {
    const config = loadConfig();
    process.stdout.write(`database: ${describeTarget(config)}\n`);
    database = await openDatabase(config);
    // A round trip first, so an unreachable server reads as that, not as a failed migration.
    // As the owner: the service role may not exist yet (this run creates it).
    await sql`select 1`.execute(database.owner).catch((err: unknown) => {
      throw new UnreachableError(describeError(err));
    });
    // With two URLs, the service's login role is created here when missing, with the
    // password its URL carries (the owner needs CREATEROLE; else an administrator creates it).
    if (config.DATABASE_URL && config.MIGRATION_DATABASE_URL) {
      const password = decodeURIComponent(new URL(config.DATABASE_URL).password);
      const created = await ensureLoginRole(database.owner, database.serviceRole, password);
      if (created) process.stdout.write(`created the login role ${database.serviceRole}\n`);
    }
    const results =
      direction === 'up'
        ? await migrateToLatest(database.owner, database.schema, undefined, database.serviceRole)
        : await migrateDown(database.owner, database.schema, undefined, database.serviceRole);
    report(results, direction);
    return 0;
  } catch (err) {
    if (err instanceof UnreachableError) {
      process.stderr.write(`migrate: cannot reach the database: ${err.message}\n`);
    } else if (err instanceof ConfigError || err instanceof DatabaseLockedError) {
      process.stderr.write(`migrate: ${err.message}\n`);
    } else if (err instanceof MigrationError) {
      // Both engines run a batch in one transaction (transactional DDL): all or nothing.
      process.stderr.write(
        `migrate: ${err.message}\n` +
          'The whole run was rolled back: the schema is as it was before this command.\n',
      );
    } else {
      process.stderr.write(`migrate: ${describeError(err)}\n`);
    }
    return 1;
  } finally {
    await database?.close().catch(() => undefined);
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
