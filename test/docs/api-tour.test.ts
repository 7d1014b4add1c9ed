import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t from 'tap';
import {
  compareOutput,
  parseTour,
  type TourBlock,
  type TourCommand,
} from '../fixtures/console-tour.js';

/**
 * docs/api-tour.md is a script: its console blocks run, in order, in one bash session (so the
 * variables one command sets reach the next), from the repository's root, against a service
 * started for the test the way `npm start` starts it. Every request's status and every answer
 * shown must be what the service says (the convention is in test/fixtures/console-tour.ts and
 * at the top of the document). So is the README's short tour, which must run as a script, and
 * its breach tour: a script, then the processor fan-out in console blocks like the document's.
 *
 * The documents name the service as http://127.0.0.1:3000; the test's service listens on a free
 * port, which replaces it in the commands. On Postgres (DATABASE_URL) the service gets a schema
 * of its own, so the tour's addresses and names cannot meet another test's.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCUMENTED_ORIGIN = 'http://127.0.0.1:3000';
const DATABASE_URL = process.env.DATABASE_URL;

// Three starts of the service (each operator step needs it stopped), over a hundred requests,
// npm run twice.
t.setTimeout(300_000);

t.test('the convention: what a shown answer matches, and what the test refuses', async (t) => {
  const differences = (shown: string[], printed: string) =>
    compareOutput(shown, printed).join('\n');
  t.equal(differences(['{"id":"98bc…","n":1,…}'], '{"id":"x","n":1,"more":true}'), '');
  t.match(differences(['{"id":"98bc…","n":1}'], '{"id":"x","n":1,"more":true}'), /also has more/);
  t.match(differences(['{"n":1,…}'], '{"n":2}'), /\$\.n: 1 is shown, got 2/);
  t.match(differences(['{"a":[…]}'], '{"a":{}}'), /\$\.a: an array is shown/);
  t.match(differences(['{"a":[1,…]}'], '{"a":[2,3]}'), /\$\.a: shown element 0/);
  t.equal(differences(['{"a":[1,…,3]}'], '{"a":[0,1,2,3]}'), '');
  t.equal(
    differences(
      ['{"id":"0b1e0a8c-6d5e-4c1b-9a3f-2f1e4d5c6b7a","at":"2026-11-25T15:12:46.733Z"}'],
      '{"id":"019a0000-0000-7000-8000-000000000001","at":"2027-01-01T00:00:00.000Z"}',
    ),
    '',
    'a UUID and a time shown in full stand for any',
  );
  t.match(differences(['{"at":"2026-11-25T15:12:46.733Z"}'], '{"at":"soon"}'), /\$\.at/);
  t.equal(
    differences(
      ['HTTP/1.1 200 OK', '(… headers …)', '', '{}'],
      'HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n\r\n{}',
    ),
    '',
    'a skip line stands for any number of lines',
  );
  t.match(differences(['HTTP/1.1 200 OK', ''], 'HTTP/1.1 200 OK\r\na: 1\r\n\r\n'), /line 2/);
  t.match(differences([], 'something'), /more line/, 'nothing shown: nothing may be printed');
  t.equal(differences(['operator created: …'], 'operator created: abc'), '');
  t.match(differences(['token: crt_…'], 'token: cst_abc'), /is shown/, 'text around … counts');
  t.match(differences(['a', 'b'], 'a'), /line 2 .*ended/);

  const { problems } = parseTour(
    [
      '```console',
      '$ curl -s http://x/',
      '{}',
      '```',
      '',
      '```console',
      '$ X=1',
      '```',
      '',
      '```sh',
      'curl http://x/',
      '```',
    ].join('\n'),
  );
  t.equal(problems.length, 3, problems.join('\n'));
  t.match(problems[0], /^line 2: a curl command without an expected status/);
  t.match(problems[1], /^line 6: a block that shows no status and no output/);
  t.match(problems[2], /^line 10: a `sh` block is not run/);
});

interface Storage {
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

async function adminQuery(url: string, text: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A fresh embedded data folder, or a fresh schema of the Postgres server in DATABASE_URL. */
async function storage(): Promise<Storage> {
  if (!DATABASE_URL) {
    const dataDir = await mkdtemp(join(tmpdir(), 'custodian-tour-'));
    return {
      env: { DATA_DIR: dataDir },
      cleanup: () => rm(dataDir, { recursive: true, force: true }),
    };
  }
  const schema = `tour_${process.pid}_${randomBytes(4).toString('hex')}`;
  await adminQuery(DATABASE_URL, `create schema ${schema}`);
  return {
    env: { DATABASE_URL, DATABASE_SCHEMA: schema, MIGRATE_ON_START: 'true' },
    cleanup: () => adminQuery(DATABASE_URL, `drop schema if exists ${schema} cascade`),
  };
}

/**
 * The environment of the person following the tour: their shell's basics and the service's
 * settings (so `npm run create-operator` finds the same database), nothing of the test runner.
 */
function shellEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { LANG: 'C.UTF-8', ...settings };
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'USER']) {
    if (process.env[name] !== undefined) env[name] = process.env[name];
  }
  return env;
}

class Service {
  private constructor(
    private readonly child: ChildProcess,
    readonly origin: string,
  ) {}

  /** `npm start` without the build: the same server, from the sources, on a free port. */
  static async start(settings: Record<string, string>): Promise<Service> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: shellEnv({
        ...settings,
        NODE_ENV: 'development',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        LOG_PRETTY: 'false',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const origin = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('not listening after 120 s')), 120_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        output += `${line}\n`;
        const listening = /listening at (http:\/\/\S+?)"/.exec(line);
        if (listening) {
          clearTimeout(timer);
          resolve(listening[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the service exited (${code})`));
      });
    }).catch((err: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${err.message}: ${output}`);
    });
    return new Service(child, origin);
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop() {
    if (!this.running) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await exited;
  }

  kill() {
    if (this.running) this.child.kill('SIGKILL');
  }
}

interface Ran {
  output: string;
  code: number;
  statuses: number[];
}

/**
 * One bash process fed command after command. Each runs in the shell itself (not a subshell),
 * so its variables stay; its output goes to a file, and `curl`, a function here that calls the
 * real one, notes the status of every request (`-D` keeps the response's head).
 */
class Shell {
  private readonly child: ChildProcess;
  private readonly done: string[] = [];
  private waiting: (() => void) | undefined;
  private stderr = '';

  constructor(
    private readonly dir: string,
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn('bash', ['--noprofile', '--norc'], {
      cwd: ROOT,
      env: { ...env, TOUR_RUN: dir },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.done.push(line);
      this.waiting?.();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.child.on('exit', () => this.waiting?.());
    this.child.stdin!.write(
      [
        // An unset variable stops the tour instead of expanding to nothing.
        'set -u',
        'curl() {',
        '  local head="$TOUR_RUN/head.$BASHPID" status rc',
        '  rm -f "$head"',
        // In a terminal curl shows no progress meter; writing to a file, it would.
        '  command curl --no-progress-meter -D "$head" "$@"',
        '  rc=$?',
        '  status=$(sed -n "s/^HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p" "$head" 2>/dev/null | tail -n 1)',
        '  [ -n "$status" ] || status=000',
        '  echo "$status" >> "$TOUR_RUN/statuses"',
        '  rm -f "$head"',
        '  return $rc',
        '}',
        '',
      ].join('\n'),
    );
  }

  private get alive() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async run(command: string, timeoutMs = 60_000): Promise<Ran> {
    const marker = `tour-done-${randomBytes(4).toString('hex')}`;
    const [out, rc, statuses] = [
      join(this.dir, 'out'),
      join(this.dir, 'rc'),
      join(this.dir, 'statuses'),
    ];
    if (!this.alive) throw new Error(`the shell has exited: ${this.stderr}`);
    this.child.stdin!.write(
      `: > "${statuses}"\n{ ${command}\n} > "${out}" 2>&1 < /dev/null\necho "$?" > "${rc}"\necho ${marker}\n`,
    );
    const deadline = Date.now() + timeoutMs;
    while (!this.done.includes(marker)) {
      if (!this.alive) {
        const output = await readFile(out, 'utf8').catch(() => '');
        throw new Error(`the shell exited: ${output}${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`no answer after ${timeoutMs / 1000} s`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 200);
      });
    }
    const read = (file: string) => readFile(file, 'utf8');
    return {
      output: await read(out),
      code: Number((await read(rc)).trim()),
      statuses: (await read(statuses))
        .split('\n')
        .filter((s) => s !== '')
        .map(Number),
    };
  }

  close() {
    if (this.alive) this.child.kill('SIGKILL');
  }
}

const oneLine = (command: TourCommand) => command.text.replace(/\\\n\s*/g, ' ').slice(0, 90);

t.test('docs/api-tour.md runs as written', async (t) => {
  const markdown = await readFile(join(ROOT, 'docs/api-tour.md'), 'utf8');
  const { blocks, problems } = parseTour(markdown);
  t.same(problems, [], 'every block follows the convention and checks something');
  const commands = blocks.flatMap((b) => b.commands);
  t.ok(commands.length >= 50, `${commands.length} commands in ${blocks.length} blocks`);

  const store = await storage();
  const run = await mkdtemp(join(tmpdir(), 'custodian-tour-shell-'));
  let service = await Service.start(store.env);
  const shell = new Shell(run, shellEnv(store.env));
  t.teardown(async () => {
    shell.close();
    await service.stop();
    await store.cleanup();
    await rm(run, { recursive: true, force: true });
  });

  /**
   * Runs a document's console blocks in `sh`, each command checked against what is shown;
   * false if the shell broke off. `firstLine` is where the blocks' text starts in `file`.
   */
  async function runBlocks(file: string, firstLine: number, list: TourBlock[], sh: Shell) {
    for (const block of list) {
      // On Postgres the service may run meanwhile, as the tour says.
      const stop = block.serviceStopped && !DATABASE_URL;
      if (stop) await service.stop();
      for (const command of block.commands) {
        const where = `${file}:${firstLine + command.line - 1} \`${oneLine(command)}\``;
        const text = command.text.replaceAll(DOCUMENTED_ORIGIN, service.origin);
        let ran: Ran;
        try {
          ran = await sh.run(text);
        } catch (err) {
          t.fail(`${where}: ${(err as Error).message}`);
          return false;
        }
        t.equal(ran.code, 0, `${where}: exits 0`, { output: ran.output });
        t.same(ran.statuses, command.statuses ?? [], `${where}: answers ${ran.statuses.join(' ')}`);
        // The readiness probe names the engine, which is Postgres when the suite runs on it.
        const shown = DATABASE_URL
          ? command.expected.map((l) => l.replace('"database":"embedded"', '"database":"postgres"'))
          : command.expected;
        const differences = compareOutput(shown, ran.output);
        t.same(differences, [], `${where}: prints what is shown`, { printed: ran.output });
      }
      if (stop) service = await Service.start(store.env);
    }
    return true;
  }

  if (!(await runBlocks('docs/api-tour.md', 1, blocks, shell))) return;

  // The README's short tour: one script (stopping at the first failure) in a new shell, on the
  // same service, with an account of its own.
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## A short tour'));
  const script = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  t.match(
    script,
    /^B=http:\/\/127\.0\.0\.1:3000$/m,
    'the README names the service as the tour does',
  );
  const requests = script.match(/\bcurl\b/g)!.length;
  const readmeShell = new Shell(run, shellEnv(store.env));
  t.teardown(() => readmeShell.close());
  let ran: Ran;
  try {
    ran = await readmeShell.run(`set -e\n${script.replaceAll(DOCUMENTED_ORIGIN, service.origin)}`);
  } catch (err) {
    t.fail(`README.md, A short tour: ${(err as Error).message}`);
    return;
  }
  t.equal(ran.code, 0, 'the README tour runs to its end', { output: ran.output });
  t.equal(ran.statuses.length, requests, `it makes its ${requests} requests`);
  t.same(
    ran.statuses.filter((s) => s < 200 || s > 299),
    [],
    `each succeeds: ${ran.statuses.join(' ')}`,
  );
  t.match(ran.output, /"suppressed":true/, 'the erased address is suppressed');
  t.match(ran.output, /"valid":true/, 'the audit chain verifies');

  // The README's breach tour, likewise: from "we became aware" to "closed".
  const breaches = readme.slice(readme.indexOf('## Breach incidents'));
  const breachScript = /```sh\n([\s\S]*?)```/.exec(breaches)![1]!;
  const breachRequests = breachScript.match(/\bcurl\b/g)!.length;
  let breachRan: Ran;
  try {
    breachRan = await readmeShell.run(
      `set -e\n${breachScript.replaceAll(DOCUMENTED_ORIGIN, service.origin)}`,
    );
  } catch (err) {
    t.fail(`README.md, Breach incidents: ${(err as Error).message}`);
    return;
  }
  t.equal(breachRan.code, 0, 'the breach tour runs to its end', { output: breachRan.output });
  t.equal(breachRan.statuses.length, breachRequests, `it makes its ${breachRequests} requests`);
  t.same(
    breachRan.statuses.filter((s) => s < 200 || s > 299),
    [],
    `each succeeds: ${breachRan.statuses.join(' ')}`,
  );
  t.match(
    breachRan.output,
    /^open: notify by \S+, 70 h left$/m,
    'the deadline counts from awareAt',
  );
  t.match(breachRan.output, /^phase 1 to Information Commissioner, late: false$/m);
  t.match(breachRan.output, /^closed$/m);
  t.match(breachRan.output, /^id,source,status,title,description,kinds$/m, 'the register as CSV');
  t.match(breachRan.output, /,account,closed,Newsletter export on a public share,/);

  // Then the processor fan-out (Art. 33(2)): console blocks, like docs/api-tour.md, in the same
  // shell (the clinic's variables), with an operator made while the service is stopped.
  const fanOutAt = readme.indexOf('### When the provider is breached: the processor fan-out');
  t.ok(fanOutAt > readme.indexOf('## Breach incidents'), 'the fan-out is part of the breach tour');
  const fanOutText = readme.slice(fanOutAt, readme.indexOf('\n## ', fanOutAt));
  const fanOut = parseTour(fanOutText);
  t.same(fanOut.problems, [], 'its blocks follow the convention and check something');
  t.ok(
    fanOut.blocks[0]?.serviceStopped,
    'the operator is made first, with the service stopped on the embedded engine',
  );
  const fanOutCommands = fanOut.blocks.flatMap((b) => b.commands).map((c) => c.text);
  for (const route of [
    /POST \S+\/v1\/ops\/breach-incidents /,
    /\/v1\/events\?type=breach_incident\.reported_by_processor/,
    /\/v1\/breach-incidents -H/,
    /\/acknowledgement /,
    /\/v1\/ops\/breach-incidents\/\$PI -H/,
    /\/public-communication /,
  ]) {
    t.ok(
      fanOutCommands.some((c) => route.test(c)),
      `the fan-out tour runs ${route.source}`,
    );
  }
  // The breach script left `set -e` on: a failing command is reported, not the shell's end.
  await readmeShell.run('set +e');
  const fanOutLine = readme.slice(0, fanOutAt).split('\n').length;
  await runBlocks('README.md', fanOutLine, fanOut.blocks, readmeShell);
});
