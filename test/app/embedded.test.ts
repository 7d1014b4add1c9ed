import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { createEmbeddedDatabase, DatabaseLockedError } from '../../src/db/database.js';

// These tests open the embedded engine directly, so they mean the same on both runs.

const OPENER = fileURLToPath(new URL('../fixtures/open-embedded.ts', import.meta.url));
/** The shortest stale period the lock allows, so that takeovers are quick to test. */
const STALE_MS = 2_000;
/** Opening PGlite itself takes a second or more on a busy machine. */
const OPEN_SLACK_MS = 6_000;
/** Long enough that a test which waited for it could not pass for one that did not wait. */
const LONG_STALE_MS = 60_000;

/** The pid of a process that has just exited: a lock left by it is stale. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(child, 'exit');
  return child.pid!;
}

/** A process that stays alive until the test ends, holding a lock. */
function livingProcess(t: Test): number {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], {
    stdio: 'ignore',
  });
  t.teardown(() => void child.kill('SIGKILL'));
  return child.pid!;
}

interface Opened {
  open?: number;
  error?: string;
  message?: string;
}

/** Opens `dataDir` in a child process; resolves with its first line (open or refused). */
async function openInChild(
  t: Test,
  dataDir: string,
  mode: 'hold' | 'once',
): Promise<{ child: ChildProcess; result: Opened }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', OPENER, dataDir, String(STALE_MS), mode],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => void child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, 'line')) as [string];
  return { child, result: JSON.parse(line) as Opened };
}

function refusal(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

t.test('an embedded database on a folder', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'custodian-embedded-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const lockFile = join(dataDir, 'custodian.lock');
  const ownerFile = join(dataDir, 'custodian.lock.owner');

  t.test('keeps its rows across close and reopen, and admits one opener', async (t) => {
    const first = await createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS });
    t.equal(first.engine, 'embedded');
    t.ok(statSync(lockFile).isDirectory(), 'the lock is held');
    t.match(JSON.parse(readFileSync(ownerFile, 'utf8')), { pid: process.pid }, 'names us');
    await sql`create table consent_note (id int primary key, note text not null)`.execute(
      first.owner,
    );
    await sql`insert into consent_note (id, note) values (1, 'survives a restart')`.execute(
      first.owner,
    );
    await first.close();
    t.notOk(existsSync(lockFile), 'closing releases the lock');

    const reopened = await createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS });
    t.teardown(() => reopened.close());
    const { rows } = await sql<{
      id: number;
      note: string;
    }>`select id, note from consent_note`.execute(reopened.owner);
    t.same(rows, [{ id: 1, note: 'survives a restart' }], 'the row survived');

    // While it is open, a second opener on the same folder is refused, here at once.
    const started = Date.now();
    const err = await refusal(createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS }));
    t.ok(Date.now() - started < STALE_MS, 'a second open in this process is refused at once');
    t.type(err, DatabaseLockedError, 'rejects with DatabaseLockedError');
    const message = (err as Error).message;
    t.match(message, dataDir, 'names the folder');
    t.match(message, `this process (pid ${process.pid})`, 'names the process holding it');
    t.match(message, /Stop that process/, 'says what to do');
    t.match(message, /DATABASE_URL/, 'and the alternative for many processes');
    t.ok(statSync(lockFile).isDirectory(), 'the holder keeps its lock');
    const again = await sql<{ one: number }>`select 1 as one`.execute(reopened.owner);
    t.same(again.rows, [{ one: 1 }], 'the holder still works');

    // Another process is refused too, once the holder's heartbeat proved it alive.
    const { child, result } = await openInChild(t, dataDir, 'once');
    t.equal(result.error, 'DatabaseLockedError', 'another process is refused');
    t.match(result.message, `another process (pid ${process.pid}`, 'naming the holder');
    t.match(result.message, /Stop that process/);
    await once(child, 'exit');
    t.equal(child.exitCode, 1);
    const still = await sql<{ one: number }>`select 1 as one`.execute(reopened.owner);
    t.same(still.rows, [{ one: 1 }], 'the holder outlived the attempt');

    await reopened.close();
    t.notOk(existsSync(lockFile), 'released again');
  });

  t.test('takes over the lock of a process killed with SIGKILL', async (t) => {
    const { child, result } = await openInChild(t, dataDir, 'hold');
    t.equal(result.open, child.pid, 'the child holds the folder');
    child.kill('SIGKILL');
    await once(child, 'exit');
    t.ok(statSync(lockFile).isDirectory(), 'the killed process left its lock behind');

    const started = Date.now();
    const database = await createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS });
    t.teardown(() => database.close());
    const waited = Date.now() - started;
    t.ok(waited < STALE_MS + OPEN_SLACK_MS, `taken over within the stale period (${waited} ms)`);
    t.match(JSON.parse(readFileSync(ownerFile, 'utf8')), { pid: process.pid }, 'ours now');
    const { rows } = await sql<{ note: string }>`select note from consent_note`.execute(
      database.owner,
    );
    t.same(rows, [{ note: 'survives a restart' }], 'and the data is intact');
  });

  t.test('a lock left under our own pid (a container restart as PID 1) is ours', async (t) => {
    // What a killed PID 1 leaves for the next PID 1: a fresh lock naming the same pid.
    mkdirSync(lockFile);
    writeFileSync(ownerFile, JSON.stringify({ pid: process.pid, host: 'container' }));
    const started = Date.now();
    const database = await createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS });
    t.teardown(() => database.close());
    const waited = Date.now() - started;
    t.ok(waited < STALE_MS + OPEN_SLACK_MS, `taken over within the stale period (${waited} ms)`);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(database.owner);
    t.same(rows, [{ one: 1 }]);
  });

  t.test('a lost lock closes the database instead of crashing the process', async (t) => {
    const raw: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void raw.push(line) });
    const database = await createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS, logger });
    t.teardown(() => database.close());
    rmdirSync(lockFile); // as if another process had judged us dead and taken the folder
    const deadline = Date.now() + STALE_MS * 2;
    let err: unknown;
    while (!err && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      err = await refusal(sql`select 1`.execute(database.owner));
    }
    t.ok(err, 'the database stops serving');
    const lines = raw.map((line) => JSON.parse(line) as { level: number; msg: string });
    t.ok(
      lines.some((l) => l.level === 50 && /lost the lock/.test(l.msg)),
      'and says why, as an error',
    );
  });

  t.test('an older version’s PID file', async (t) => {
    t.test('naming another living process is refused', async (t) => {
      const pid = livingProcess(t);
      writeFileSync(lockFile, String(pid));
      t.teardown(() => rm(lockFile, { force: true }));
      const err = await refusal(createEmbeddedDatabase({ dataDir, lockStaleMs: STALE_MS }));
      t.type(err, DatabaseLockedError);
      t.match((err as Error).message, `pid ${pid}`);
      t.equal(readFileSync(lockFile, 'utf8'), String(pid), 'someone else’s lock is left alone');
    });

    for (const [name, pid] of [
      ['a dead process', deadPid],
      ['our own pid', async () => process.pid],
      ['pid 1', async () => 1],
    ] as const) {
      t.test(`naming ${name} does not block`, async (t) => {
        writeFileSync(lockFile, String(await pid()));
        const started = Date.now();
        const database = await createEmbeddedDatabase({ dataDir, lockStaleMs: LONG_STALE_MS });
        t.teardown(() => database.close());
        const waited = Date.now() - started;
        t.ok(
          waited < LONG_STALE_MS / 2,
          `opened without waiting for a stale period (${waited} ms)`,
        );
        t.ok(statSync(lockFile).isDirectory(), 'the lock is ours now');
        const { rows } = await sql<{ note: string }>`select note from consent_note`.execute(
          database.owner,
        );
        t.same(rows, [{ note: 'survives a restart' }], 'and the data is intact');
      });
    }
  });
});
