import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';

/**
 * The deployment commands in the Dockerfile, the README, docs/ and docker-compose.yml must work
 * as written. The image sets NODE_ENV=production, where the configuration requires secrets: every
 * documented `docker run` must pass each of them (directly, or through an env file the same
 * document shows how to make), the env-file recipes must make a configuration that loads, and
 * every variable compose insists on must be in .env.example and in the documented exports.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

/** What the production configuration refuses to start without, asked of src/config.ts itself. */
function requiredInProduction(): string[] {
  try {
    loadConfig({ NODE_ENV: 'production' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems
      .map((p) => /^([A-Z][A-Z0-9_]*): is required in production$/.exec(p)?.[1])
      .filter((name): name is string => name !== undefined);
  }
  return [];
}

/** The shell snippets of a document: fenced sh/console blocks, or a file's `#   ` comment lines. */
function snippets(file: string): string[] {
  const text = read(file);
  if (!file.endsWith('.md')) {
    // The usage comment at the top of the Dockerfile and docker-compose.yml.
    const lines = text.split('\n');
    const block = lines.filter((l) => l.startsWith('#   ')).map((l) => l.slice(4));
    return block.length > 0 ? [block.join('\n')] : [];
  }
  const blocks: string[] = [];
  for (const m of text.matchAll(/^( *)```(?:sh|bash|shell|console)\n([\s\S]*?)^\1```$/gm)) {
    const indent = m[1]!.length;
    blocks.push(
      m[2]!
        .split('\n')
        .map((l) => l.slice(indent).replace(/^\$ /, ''))
        .join('\n'),
    );
  }
  return blocks;
}

/** Shell lines with their `\` continuations joined. */
function commands(snippet: string): string[] {
  return snippet.replace(/\\\n\s*/g, ' ').split('\n');
}

/** `cat > FILE <<EOF … EOF` documents of a snippet: file name → its lines. */
function heredocs(snippet: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of snippet.matchAll(/^cat > (\S+) <<(\w+)\n([\s\S]*?)^\2$/gm)) {
    found.set(m[1]!, m[0]);
  }
  return found;
}

/** The variable names an env file defines. */
function namesIn(envFile: string): string[] {
  return envFile
    .split('\n')
    .map((l) => /^([A-Z][A-Z0-9_]*)=/.exec(l)?.[1])
    .filter((name): name is string => name !== undefined);
}

/** An env file as `docker run --env-file` reads it: NAME=VALUE lines, values verbatim. */
function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const at = line.indexOf('=');
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

/** The ENV instructions of the Dockerfile's last stage (the runtime image). */
function imageEnv(): Record<string, string> {
  const dockerfile = read('Dockerfile').replace(/\\\n\s*/g, ' ');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const m of runtime.matchAll(/^ENV (.+)$/gm)) {
    for (const pair of m[1]!.trim().split(/\s+/)) {
      const at = pair.indexOf('=');
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  return env;
}

const DOCUMENTS = [
  'Dockerfile',
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

const hasShellTools = ['openssl version', 'base64 --version'].every(
  (command) => spawnSync('sh', ['-c', command], { stdio: 'ignore' }).status === 0,
);

t.test('the image runs with NODE_ENV=production, which requires secrets', async (t) => {
  t.equal(imageEnv().NODE_ENV, 'production');
  const required = requiredInProduction();
  t.ok(
    ['JWT_SECRET', 'HASH_SECRET', 'AUDIT_SIGNING_KEY'].every((name) => required.includes(name)),
    `required in production: ${required.join(', ')}`,
  );
});

t.test('every documented `docker run` passes every variable production requires', async (t) => {
  const required = requiredInProduction();
  const runsPerDocument = new Map<string, number>();
  for (const file of DOCUMENTS) {
    const blocks = snippets(file);
    const envFiles = new Map<string, string>();
    for (const block of blocks) for (const [name, doc] of heredocs(block)) envFiles.set(name, doc);
    for (const block of blocks) {
      for (const command of commands(block)) {
        if (!/\bdocker run\b/.test(command)) continue;
        runsPerDocument.set(file, (runsPerDocument.get(file) ?? 0) + 1);
        const given = new Set<string>();
        for (const m of command.matchAll(/(?:^|\s)(?:-e|--env)[ =]([A-Z][A-Z0-9_]*)/g)) {
          given.add(m[1]!);
        }
        for (const m of command.matchAll(/--env-file[ =](\S+)/g)) {
          const envFile = envFiles.get(m[1]!);
          t.ok(envFile, `${file}: \`${command}\` reads ${m[1]}, which ${file} shows how to make`);
          for (const name of namesIn(envFile ?? '')) given.add(name);
        }
        const missing = required.filter((name) => !given.has(name));
        t.same(missing, [], `${file}: \`${command.trim()}\` passes ${required.join(', ')}`);
      }
    }
  }
  // The places that document the image: a test that finds no command proves nothing.
  t.ok((runsPerDocument.get('Dockerfile') ?? 0) >= 2, 'the Dockerfile shows how to run it');
  t.ok((runsPerDocument.get('README.md') ?? 0) >= 1, 'so does the README');
  t.ok((runsPerDocument.get('docs/operations.md') ?? 0) >= 2, 'and docs/operations.md');
});

t.test(
  'the documented env files make a production configuration that loads',
  { skip: hasShellTools ? false : 'needs openssl and base64 to run the recipes' },
  async (t) => {
    const recipes = new Set<string>();
    for (const file of DOCUMENTS) {
      for (const block of snippets(file))
        for (const doc of heredocs(block).values()) recipes.add(doc);
    }
    t.ok(recipes.size >= 1, `${recipes.size} distinct recipe(s)`);
    for (const recipe of recipes) {
      const dir = mkdtempSync(join(tmpdir(), 'custodian-env-file-'));
      try {
        const made = spawnSync('sh', ['-c', recipe], { cwd: dir, encoding: 'utf8' });
        t.equal(made.status, 0, `the recipe runs: ${made.stderr}`);
        const file = /^cat > (\S+)/.exec(recipe)![1]!;
        const env = { ...imageEnv(), ...parseEnvFile(readFileSync(join(dir, file), 'utf8')) };
        // Its placeholder server does not exist; the variables production requires are all there.
        delete env.DATABASE_URL;
        delete env.MIGRATION_DATABASE_URL;
        t.doesNotThrow(() => loadConfig(env), 'the configuration loads');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  },
);

t.test('compose: what it requires is in .env.example and in the documented exports', async (t) => {
  const compose = read('docker-compose.yml');
  const envExample = read('.env.example');
  const composeRequires = [...compose.matchAll(/\$\{([A-Z][A-Z0-9_]*):\?/g)].map((m) => m[1]!);
  const unique = [...new Set(composeRequires)];
  t.ok(unique.includes('POSTGRES_PASSWORD'), `compose requires ${unique.join(', ')}`);
  for (const name of unique) {
    t.match(envExample, new RegExp(`^#? ?${name}=`, 'm'), `.env.example has ${name}`);
  }
  // The API's environment in compose carries every production secret.
  t.match(compose, /^\s+NODE_ENV: production$/m);
  for (const name of requiredInProduction()) {
    t.match(compose, new RegExp(`^\\s+${name}: \\$\\{${name}:\\?`, 'm'), `compose passes ${name}`);
  }

  let documented = 0;
  for (const file of ['docker-compose.yml', ...DOCUMENTS]) {
    for (const block of snippets(file)) {
      if (!/docker compose up/.test(block)) continue;
      documented++;
      const exports = commands(block).filter((c) => c.startsWith('export '));
      const exported = new Set(
        exports.flatMap((c) => [...c.matchAll(/([A-Z][A-Z0-9_]*)=/g)].map((m) => m[1]!)),
      );
      t.same(
        unique.filter((name) => !exported.has(name)),
        [],
        `${file}: the commands before \`docker compose up\` export all it requires`,
      );
      if (!hasShellTools) continue;
      // Run the exports and load the configuration the API container would get from them.
      const shown = spawnSync('sh', ['-c', `${exports.join('\n')}\nenv`], { encoding: 'utf8' });
      t.equal(shown.status, 0, `${file}: the exports run`);
      const env: Record<string, string> = { ...imageEnv(), NODE_ENV: 'production' };
      for (const line of shown.stdout.split('\n')) {
        const at = line.indexOf('=');
        const name = line.slice(0, at);
        if (unique.includes(name)) env[name] = line.slice(at + 1);
      }
      t.doesNotThrow(() => loadConfig(env), `${file}: the exported secrets are valid`);
    }
  }
  t.ok(documented >= 2, 'docker-compose.yml and docs/operations.md show how to start it');
});
