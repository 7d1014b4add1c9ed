import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Kysely } from 'kysely';
import t from 'tap';
import type { DB } from '../../src/db/schema.js';
import { updateAccountIn } from '../../src/modules/accounts/accounts.service.js';
import { createApiKeyIn, revokeApiKeyIn } from '../../src/modules/api-keys/api-keys.service.js';
import type { RequestContext } from '../../src/modules/identity/actor.js';
import { endUserSessions } from '../../src/modules/identity/auth.service.js';
import {
  changeUserRoleIn,
  createUserIn,
  removeUserIn,
} from '../../src/modules/users/users.service.js';

const ROOT = join(import.meta.dirname, '../../src');
const MODULES = ['accounts', 'users', 'identity', 'api-keys', 'ops'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

const files = sourceFiles(ROOT).map((path) => ({
  path: relative(ROOT, path),
  text: readFileSync(path, 'utf8'),
}));

/** Kysely calls that name a table: selectFrom('x'), insertInto('x'), innerJoin('x', …) etc. */
function tablesQueried(text: string): Set<string> {
  const found = new Set<string>();
  const pattern =
    /\.(?:selectFrom|insertInto|updateTable|deleteFrom|innerJoin|leftJoin|rightJoin|fullJoin)\(\s*'([a-z_]+)/g;
  for (const match of text.matchAll(pattern)) found.add(match[1]!);
  return found;
}

t.test('identity route files do HTTP only: no kysely, no db/schema', async (t) => {
  for (const file of files) {
    if (!MODULES.some((m) => file.path.startsWith(`modules/${m}/`))) continue;
    if (!file.path.endsWith('.routes.ts')) continue;
    t.notMatch(file.text, /from 'kysely'|db\/schema\.js'/, file.path);
  }
});

t.test('each identity table is queried only by its owner’s repository', async (t) => {
  const owners: Record<string, string[]> = {
    api_keys: ['modules/api-keys/api-keys.repository.ts'],
    accounts: [
      'modules/accounts/accounts.repository.ts',
      // One read joins the account in on the authentication path (see the file's header).
      'modules/identity/identity.repository.ts',
    ],
    users: ['modules/users/users.repository.ts', 'modules/identity/identity.repository.ts'],
    sessions: ['modules/identity/identity.repository.ts'],
    refresh_tokens: ['modules/identity/identity.repository.ts'],
    login_throttles: ['modules/identity/identity.repository.ts'],
  };
  for (const file of files) {
    for (const table of tablesQueried(file.text)) {
      const allowed = owners[table];
      if (!allowed) continue;
      t.ok(allowed.includes(file.path), `${file.path} queries ${table}`);
    }
  }
});

t.test('no identity repository is imported from outside its module', async (t) => {
  for (const file of files) {
    for (const match of file.text.matchAll(/from '\.\.\/([a-z-]+)\/([a-z-.]+\.repository)\.js'/g)) {
      if (!MODULES.includes(match[1]!)) continue;
      t.fail(`${file.path} imports ${match[1]}/${match[2]}`);
    }
  }
  t.pass('checked');
});

// Type-level: the transaction-bound functions refuse a plain connection. Never run; `tsc`
// (npm run lint) fails when one of them starts accepting `Kysely<DB>`.
export function _transactionBound(db: Kysely<DB>, ctx: RequestContext) {
  // @ts-expect-error needs a Transaction<DB>
  void updateAccountIn(db, ctx, 'a', {});
  // @ts-expect-error needs a Transaction<DB>
  void createUserIn(db, ctx, 'a', { email: 'x@example.com', passwordHash: 'h', role: 'member' });
  // @ts-expect-error needs a Transaction<DB>
  void changeUserRoleIn(db, ctx, 'a', 'u', 'admin');
  // @ts-expect-error needs a Transaction<DB>
  void removeUserIn(db, ctx, 'a', 'u');
  // @ts-expect-error needs a Transaction<DB>
  void createApiKeyIn(db, ctx, 'a', { name: 'k', scopes: ['contacts:read'] });
  // @ts-expect-error needs a Transaction<DB>
  void revokeApiKeyIn(db, ctx, 'a', 'k');
  // @ts-expect-error needs a Transaction<DB>
  void endUserSessions(db, 'u', 'reason');
}
