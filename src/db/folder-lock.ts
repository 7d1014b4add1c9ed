import { lstatSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import lockfile from 'proper-lockfile';

/**
 * The lock that keeps a second process off an embedded database folder (PGlite takes none, and
 * two processes on one folder corrupt it).
 *
 * Why proper-lockfile and not a PID file or flock(1):
 * - A PID file cannot tell a crashed holder from a living one: PIDs are reused, and in a
 *   container every start is PID 1, so a lock naming PID 1 "is alive" forever and the service
 *   never restarts after a kill -9. A PID check also cannot see a holder in another PID
 *   namespace (two containers sharing a volume) and would call it dead.
 * - flock(2) is the ideal primitive (the kernel drops it when the holder dies), but Node has no
 *   flock in core, native addons (fs-ext) need a compile step we do not run, and holding a
 *   `flock(1)` child process ties the service to util-linux (absent on macOS, where the
 *   embedded engine is the usual development setup) and to a helper process that must die with
 *   us.
 * - proper-lockfile is pure JavaScript and widely used: an atomic `mkdir` takes the lock, the
 *   holder refreshes the directory's mtime every `stale / 2` ms, and a lock whose mtime is older
 *   than `stale` is taken over. Liveness is judged by time, so PID reuse and PID namespaces
 *   cannot fool it, and it works on network file systems. The price: after a crash the next
 *   start waits up to `stale` ms before it may take the folder over, which it does by itself.
 */

/** The lock directory. An older version's PID file had the same name (see `clearLegacyLock`). */
export const LOCK_NAME = 'custodian.lock';
/** Who holds the lock, for the refusal message only: liveness is judged by the heartbeat. */
export const OWNER_NAME = 'custodian.lock.owner';
/** proper-lockfile refuses anything shorter. */
export const MIN_STALE_MS = 2_000;

export class DatabaseLockedError extends Error {
  constructor(dataDir: string, holder: string) {
    super(
      `The embedded database in ${dataDir} is in use by ${holder}. ` +
        'Stop that process first (only one process may open an embedded database), ' +
        'or set DATABASE_URL to use a Postgres server that many processes can share.',
    );
    this.name = 'DatabaseLockedError';
  }
}

export interface FolderLockOptions {
  /** A lock whose heartbeat is older than this is a crashed holder's, and is taken over. */
  staleMs: number;
  logger?: Logger | undefined;
  /** The heartbeat failed (the folder vanished, or another process took the lock over). */
  onCompromised: (err: Error) => void;
}

export interface FolderLock {
  release(): Promise<void>;
}

/** Folders this process holds: opening one twice is refused at once, without waiting. */
const heldHere = new Set<string>();

/**
 * Takes the lock on `dir` (an existing, absolute folder). A lock with a live heartbeat is
 * waited on for one stale period, since it may be a holder that just crashed; if it is still
 * fresh after that, someone is keeping it alive and we refuse with DatabaseLockedError.
 */
export async function lockFolder(dir: string, options: FolderLockOptions): Promise<FolderLock> {
  if (heldHere.has(dir)) {
    throw new DatabaseLockedError(dir, `this process (pid ${process.pid})`);
  }
  clearLegacyLock(dir, options.logger);

  const staleMs = Math.max(options.staleMs, MIN_STALE_MS);
  const deadline = Date.now() + staleMs + 1_000;
  const poll = Math.min(500, staleMs / 4);
  let warned = false;
  let release: () => Promise<void>;
  for (;;) {
    try {
      release = await lockfile.lock(dir, {
        lockfilePath: join(dir, LOCK_NAME),
        stale: staleMs,
        realpath: false,
        // The default throws from a timer, which would crash the process.
        onCompromised: options.onCompromised,
      });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
      if (Date.now() >= deadline) throw new DatabaseLockedError(dir, describeHolder(dir));
      if (!warned) {
        warned = true;
        options.logger?.warn(
          { dataDir: dir, holder: describeHolder(dir), waitMs: deadline - Date.now() },
          'the embedded database folder is locked; waiting to see whether its holder is gone',
        );
      }
      await sleep(poll);
    }
  }

  heldHere.add(dir);
  const owner = join(dir, OWNER_NAME);
  try {
    writeFileSync(
      owner,
      JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }),
    );
  } catch {
    // Only informs the message a refused opener shows; the lock itself is held.
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      heldHere.delete(dir);
      try {
        unlinkSync(owner);
      } catch {
        // Already gone, or never written.
      }
      // After a compromise the library has already let go (ERELEASED): nothing left to do.
      await release().catch(() => undefined);
    },
  };
}

/** "another process (pid 12 on host-a)", from the owner file when there is one. */
function describeHolder(dir: string): string {
  try {
    const { pid, host } = JSON.parse(readFileSync(join(dir, OWNER_NAME), 'utf8')) as {
      pid?: unknown;
      host?: unknown;
    };
    if (typeof pid === 'number') {
      return `another process (pid ${pid}${typeof host === 'string' ? ` on ${host}` : ''})`;
    }
  } catch {
    // No owner file (yet): the holder is still starting, or wrote none.
  }
  return 'another process';
}

/**
 * Versions before this lock wrote their PID into a `custodian.lock` file. Such a file naming a
 * living process other than us is an older Custodian still running: refuse. One naming our own
 * PID, PID 1 (a container's every process, and on a host always alive) or a dead PID is left
 * by a crash: remove it. (And an older version meeting our lock directory fails to read it and
 * refuses to start, rather than opening the folder beside us.)
 */
function clearLegacyLock(dir: string, logger: Logger | undefined) {
  const path = join(dir, LOCK_NAME);
  let isFile: boolean;
  try {
    isFile = lstatSync(path).isFile();
  } catch {
    return; // no lock at all
  }
  if (!isFile) return;
  let pid = Number.NaN;
  try {
    pid = Number(readFileSync(path, 'utf8').trim());
  } catch {
    // Unreadable or vanished meanwhile: treat as stale.
  }
  if (Number.isInteger(pid) && pid > 1 && pid !== process.pid && isAlive(pid)) {
    throw new DatabaseLockedError(dir, `another process (pid ${pid}, an older version)`);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  logger?.info({ dataDir: dir, pid }, 'removed a stale lock file left by an older version');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
