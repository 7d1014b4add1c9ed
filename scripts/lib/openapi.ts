import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createPostgresDatabase, type Database } from '../../src/db/database.js';

/** The committed contract, at the repository root. */
export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

const HEADER = [
  '# Custodian API contract, generated from the route schemas by `npm run openapi`.',
  '# Do not edit by hand: change the zod schemas in src/ and regenerate.',
  '# `npm run openapi:check` (and test/app/openapi.test.ts) fail when this file is stale.',
  '',
].join('\n');

/**
 * A Postgres handle that never connects: node-postgres opens a connection on the first query
 * only, and building the app runs none. Lets the document be built with no database at all.
 */
export function offlineDatabase(): Database {
  return createPostgresDatabase({
    url: 'postgres://offline.invalid/none',
    poolMax: 1,
    connectionTimeoutMs: 1_000,
    statementTimeoutMs: 1_000,
    idleTimeoutMs: 1_000,
  });
}

/**
 * Builds the OpenAPI document exactly as the running service would serve it at
 * `/openapi.json`, but from a fixed configuration (not the caller's environment), so the same
 * source always yields the same document: the `servers` entry does not follow a local PORT.
 * No database is needed (see `offlineDatabase`).
 */
export async function generateOpenApiDocument(): Promise<Record<string, unknown>> {
  // Not 'production': that demands secrets (JWT_SECRET, ...), and nothing here signs or hashes.
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
  const database = offlineDatabase();
  const app = await buildApp({ config, database, logger: false });
  try {
    await app.ready();
    return app.swagger() as unknown as Record<string, unknown>;
  } finally {
    await app.close();
    await database.close();
  }
}

/**
 * Serialises the document as YAML, deterministically: keys keep the order Fastify and the
 * schemas give them (stable for a given source), no anchors/aliases for repeated objects (the
 * `yaml` default would emit `&a1`/`*a1` for a schema used twice), no line folding.
 */
export function toYaml(document: Record<string, unknown>): string {
  return (
    HEADER +
    stringify(document, {
      aliasDuplicateObjects: false,
      lineWidth: 0,
      indent: 2,
    })
  );
}

/** The YAML text `openapi.yaml` must contain for the current source. */
export async function generateOpenApiYaml(): Promise<string> {
  return toYaml(await generateOpenApiDocument());
}

/** The committed `openapi.yaml`, or `undefined` when the file does not exist. */
export async function readCommittedOpenApi(path = OPENAPI_PATH): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
