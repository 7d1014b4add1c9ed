import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

/**
 * The module layout as rules, so that it holds without anyone remembering it:
 * - a route file (`*.routes.ts`) speaks HTTP only: it imports neither `kysely` nor the table
 *   types (`db/schema`) nor the database handle (`db/database`);
 * - a repository (`*.repository.ts`) holds one module's SQL and is imported only from inside
 *   its own folder `src/modules/<m>/`: other modules call that module's service;
 * - a route plugin is given services, never `db` or `database` (only the composition root,
 *   `src/routes.ts`, builds services from the database).
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Today's violations, `file → what it imports or is given`. Other branches remove them; this
 * list may only shrink: the test fails for a violation not listed here, and for a listed one
 * that no longer exists, so delete the line together with the violation.
 */
const ALLOWED = new Set<string>([]);

/** Modules whose presence in a route file means SQL. */
const ROUTE_FORBIDDEN = ['src/db/schema.ts', 'src/db/database.ts'];

type Source = { file: string; text: string };

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** `./x.js` seen from `src/a/b.ts` → `src/a/x.ts`; bare package names stay as they are. */
function resolveSpecifier(from: string, specifier: string): string {
  if (!specifier.startsWith('.')) return specifier;
  const absolute = resolve(ROOT, dirname(from), specifier).replace(/\.js$/, '.ts');
  return relative(ROOT, absolute).split(sep).join('/');
}

/** What a file imports (static, re-exported or dynamic), resolved, with the names it binds. */
function importsOf({ file, text }: Source): { target: string; names: string[] }[] {
  const tree = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: { target: string; names: string[] }[] = [];
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      const names: string[] = [];
      if (ts.isImportDeclaration(node)) {
        const clause = node.importClause;
        if (clause?.name) names.push(clause.name.text);
        const bindings = clause?.namedBindings;
        if (bindings && ts.isNamedImports(bindings)) {
          for (const element of bindings.elements) names.push(element.name.text);
        } else if (bindings) names.push(bindings.name.text);
      }
      found.push({ target: resolveSpecifier(file, node.moduleSpecifier.text), names });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      found.push({ target: resolveSpecifier(file, node.arguments[0].text), names: [] });
    }
    ts.forEachChild(node, visit);
  };
  visit(tree);
  return found;
}

/** `src/modules/<m>/` of a file, or undefined outside the modules. */
function moduleOf(file: string): string | undefined {
  return /^src\/modules\/[^/]+\//.exec(file)?.[0];
}

/** Every rule broken by one file, as `file → reason` lines. */
function violationsOf(source: Source): string[] {
  const { file, text } = source;
  const imports = importsOf(source);
  const out: string[] = [];
  if (file.endsWith('.routes.ts')) {
    for (const { target } of imports) {
      if (target === 'kysely' || target.startsWith('kysely/')) out.push(`${file} → kysely`);
      else if (ROUTE_FORBIDDEN.includes(target)) out.push(`${file} → ${target}`);
    }
  }
  for (const { target } of imports) {
    if (target.endsWith('.repository.ts') && moduleOf(target) !== moduleOf(file)) {
      out.push(`${file} → ${target}`);
    }
  }
  // Route plugins: the names this file imports from `*.routes.ts` files.
  const routePlugins = new Set(
    imports.filter(({ target }) => target.endsWith('.routes.ts')).flatMap(({ names }) => names),
  );
  const tree = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node: ts.Node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === 'register'
    ) {
      const [plugin, options] = node.arguments;
      if (
        plugin &&
        ts.isIdentifier(plugin) &&
        routePlugins.has(plugin.text) &&
        options &&
        ts.isObjectLiteralExpression(options)
      ) {
        for (const property of options.properties) {
          const name = property.name && ts.isIdentifier(property.name) ? property.name.text : '';
          if (name === 'db' || name === 'database') {
            out.push(`${file} → ${plugin.text} is given ${name}`);
          }
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(tree);
  return out;
}

t.test('each rule catches what it is meant to catch', async (t) => {
  const check = (file: string, text: string) => violationsOf({ file, text });
  t.same(
    check(
      'src/modules/x/x.routes.ts',
      "import type { Kysely } from 'kysely';\nimport type { DB } from '../../db/schema.js';\n" +
        "import { sql } from 'kysely/helpers/postgres';\nexport * from '../../db/database.js';",
    ),
    [
      'src/modules/x/x.routes.ts → kysely',
      'src/modules/x/x.routes.ts → src/db/schema.ts',
      'src/modules/x/x.routes.ts → kysely',
      'src/modules/x/x.routes.ts → src/db/database.ts',
    ],
    'a route file importing kysely, the table types or the database handle',
  );
  t.same(check('src/modules/x/x.service.ts', "import { sql } from 'kysely';"), [], 'services may');
  t.same(
    check(
      'src/modules/x/x.service.ts',
      "import { findY } from '../y/y.repository.js';\nimport { findX } from './x.repository.js';",
    ),
    ['src/modules/x/x.service.ts → src/modules/y/y.repository.ts'],
    'another module’s repository, but not its own',
  );
  t.same(
    check('src/http/idempotency.ts', "const r = await import('../modules/y/y.repository.js');"),
    ['src/http/idempotency.ts → src/modules/y/y.repository.ts'],
    'a repository from outside the modules, also by dynamic import',
  );
  t.same(
    check(
      'src/routes.ts',
      "import { xRoutes } from './modules/x/x.routes.js';\nimport { helper } from './h.js';\n" +
        'await v1.register(xRoutes, { db, config });\n' +
        'await v1.register(xRoutes, { database: d });\n' +
        'await v1.register(xRoutes, { x: createX(db) });\n' +
        'await v1.register(helper, { db });',
    ),
    ['src/routes.ts → xRoutes is given db', 'src/routes.ts → xRoutes is given database'],
    'a route plugin given the database, not one given a service built from it',
  );
});

t.test('the source keeps the module layout (allow-list only shrinks)', async (t) => {
  const found = new Set(
    sourceFiles('src').flatMap((file) =>
      violationsOf({ file, text: readFileSync(join(ROOT, file), 'utf8') }),
    ),
  );
  const unlisted = [...found].filter((violation) => !ALLOWED.has(violation)).sort();
  const gone = [...ALLOWED].filter((violation) => !found.has(violation)).sort();
  t.same(unlisted, [], 'no violation beyond the allow-list (move SQL into a repository)');
  t.same(gone, [], 'no allow-listed violation that is fixed already (delete its line)');
});
