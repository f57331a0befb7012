// The data directory's state lock: one cross-process mutex around every write to the state files
// (tokens.json, audit.jsonl + audit.head, pending.json). It is SQLite's write lock on an empty
// database (`<dataDir>/state.lock`): an OS file lock, released when the process dies. Synchronous:
// `run(fn)` blocks for at most the busy timeout, `fn` must not be async, and `run` is re-entrant.
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';

export const STATE_LOCK_FILE = 'state.lock';
export const DEFAULT_STATE_LOCK_TIMEOUT_MS = 5000;

export class StateLockTimeout extends Error {
  override name = 'StateLockTimeout';
}

export class StateLock {
  readonly path: string;
  private db: Database.Database | undefined;
  private depth = 0;

  constructor(
    dir: string,
    private timeoutMs: number = DEFAULT_STATE_LOCK_TIMEOUT_MS,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, STATE_LOCK_FILE);
  }

  /** Runs `fn` holding the lock; throws StateLockTimeout when another process holds it too long. */
  run<T>(fn: () => T): T {
    // Synchronous code cannot interleave, so a nested call in this process already holds it.
    if (this.depth > 0) return this.call(fn);
    const db = this.open();
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_BUSY') {
        throw new StateLockTimeout(
          `the data directory's state lock (${this.path}) was held by another process for more than ${this.timeoutMs} ms`,
        );
      }
      throw e;
    }
    try {
      return this.call(fn);
    } finally {
      db.exec('COMMIT');
    }
  }

  private call<T>(fn: () => T): T {
    this.depth++;
    try {
      const out = fn();
      if (out instanceof Promise) throw new Error('StateLock.run: the critical section must be synchronous');
      return out;
    } finally {
      this.depth--;
    }
  }

  private open(): Database.Database {
    if (!this.db) {
      // Made 0600 like the files it guards (SQLite would create it with the umask).
      closeSync(openSync(this.path, 'a', 0o600));
      this.db = new Database(this.path, { timeout: this.timeoutMs });
    }
    return this.db;
  }

  /** Closes the connection; a later `run` opens it again. */
  close(): void {
    this.db?.close();
    this.db = undefined;
  }
}
