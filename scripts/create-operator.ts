import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ConfigError, loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { AppError } from '../src/errors.js';
import { createOperator } from '../src/modules/ops/operators.js';

/**
 * npm run create-operator -- --email ops@example.com
 * The password comes from CUSTODIAN_OPERATOR_PASSWORD or, if unset, one line on standard input
 * (so it never appears in the process list or shell history).
 */
async function main() {
  const { values } = parseArgs({ options: { email: { type: 'string' } } });
  const email = z.email().safeParse(values.email);
  if (!email.success) throw new UsageError('usage: npm run create-operator -- --email <address>');
  let password = process.env.CUSTODIAN_OPERATOR_PASSWORD;
  if (!password) {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
    if (process.stdin.isTTY) process.stderr.write('Password (15+ characters): ');
    password = (await rl[Symbol.asyncIterator]().next()).value as string | undefined;
    rl.close();
  }
  if (!password)
    throw new UsageError('no password given (set CUSTODIAN_OPERATOR_PASSWORD or pipe it in)');

  const config = loadConfig();
  const database = await openDatabase(config);
  try {
    if (config.MIGRATE_ON_START ?? database.engine === 'embedded') {
      await migrateToLatest(database.owner, database.schema);
    }
    const operator = await createOperator(database.db, config, { email: email.data, password });
    process.stdout.write(`operator created: ${operator.id}\n`);
  } finally {
    await database.close();
  }
}

class UsageError extends Error {}

main().catch((err: unknown) => {
  if (err instanceof AppError || err instanceof UsageError || err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
  } else {
    process.stderr.write(`create-operator failed: ${(err as Error).stack ?? String(err)}\n`);
  }
  process.exit(1);
});
