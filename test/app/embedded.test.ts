import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import t, { type Test } from 'tap';
import { createEmbeddedDatabase, DatabaseLockedError } from '../../src/db/database.js';

// These tests open the embedded engine directly, so they mean the same on both runs.

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

t.test('an embedded database on a folder', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'custodian-embedded-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const lockFile = join(dataDir, 'custodian.lock');

  t.test('keeps its rows across close and reopen, and admits one opener', async (t) => {
    const first = await createEmbeddedDatabase({ dataDir });
    t.equal(first.engine, 'embedded');
    t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the lock names this process');
    await sql`create table consent_note (id int primary key, note text not null)`.execute(first.db);
    await sql`insert into consent_note (id, note) values (1, 'survives a restart')`.execute(
      first.db,
    );
    await first.close();
    t.notOk(existsSync(lockFile), 'closing releases the lock');

    const reopened = await createEmbeddedDatabase({ dataDir });
    t.teardown(() => reopened.close());
    const { rows } = await sql<{
      id: number;
      note: string;
    }>`select id, note from consent_note`.execute(reopened.db);
    t.same(rows, [{ id: 1, note: 'survives a restart' }], 'the row survived');

    // While it is open, a second opener on the same folder is refused.
    const err = await createEmbeddedDatabase({ dataDir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, DatabaseLockedError, 'rejects with DatabaseLockedError');
    const message = (err as Error).message;
    t.match(message, dataDir, 'names the folder');
    t.match(message, `pid ${process.pid}`, 'names the process holding it');
    t.match(message, /Stop that process/, 'says what to do');
    t.match(message, /DATABASE_URL/, 'and the alternative for many processes');
    t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the holder keeps its lock');
    const again = await sql<{ one: number }>`select 1 as one`.execute(reopened.db);
    t.same(again.rows, [{ one: 1 }], 'the holder still works');

    await reopened.close();
    t.notOk(existsSync(lockFile), 'released again');
  });

  t.test('refuses a folder locked by another living process', async (t) => {
    const pid = livingProcess(t);
    writeFileSync(lockFile, String(pid));
    t.teardown(() => rm(lockFile, { force: true }));
    const err = await createEmbeddedDatabase({ dataDir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, DatabaseLockedError);
    t.match((err as Error).message, `pid ${pid}`);
    t.equal(readFileSync(lockFile, 'utf8'), String(pid), 'someone else’s lock is left alone');
  });

  t.test('takes over a stale lock left by a dead process', async (t) => {
    const pid = await deadPid();
    writeFileSync(lockFile, String(pid));
    const database = await createEmbeddedDatabase({ dataDir });
    t.teardown(() => database.close());
    t.equal(readFileSync(lockFile, 'utf8'), String(process.pid), 'the lock is ours now');
    const { rows } = await sql<{ note: string }>`select note from consent_note`.execute(
      database.db,
    );
    t.same(rows, [{ note: 'survives a restart' }], 'and the data is intact');
  });
});
