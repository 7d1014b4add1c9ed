import { resolve } from 'node:path';

/** Where the configuration points, for a person to read: never includes a password. */
export function describeTarget(config: { DATABASE_URL?: string | undefined; DATA_DIR: string }) {
  if (!config.DATABASE_URL) return `embedded (PGlite) in ${resolve(config.DATA_DIR)}`;
  return `postgres at ${redactUrl(config.DATABASE_URL)}`;
}

/** The URL with its password replaced, so it can be printed or logged. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/**
 * A one-line explanation of a failure. Connection errors from node-postgres are often an
 * AggregateError with an empty message (one attempt per resolved address), so its parts are
 * spelled out; a Postgres error keeps its SQLSTATE code.
 */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    const parts = [...new Set(err.errors.map(describeError))];
    return parts.join('; ');
  }
  if (err instanceof Error) {
    const { code, address, port } = err as Error & {
      code?: string;
      address?: string;
      port?: number;
    };
    const where = address ? ` (${address}${port ? `:${port}` : ''})` : '';
    const message = err.message || err.name;
    if (code === 'ECONNREFUSED')
      return `the database refused the connection${where}: is it running?`;
    if (code === 'ENOTFOUND') return `the database host does not resolve: ${message}`;
    return code ? `${message} [${code}]${where}` : `${message}${where}`;
  }
  return String(err);
}
