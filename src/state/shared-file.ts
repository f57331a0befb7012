// One JSON state file in the data directory that several processes may read and write (tokens,
// pending changes). Reads use a copy kept in memory, reloaded when the file changed on disk
// (one stat per read); writes run under the state lock, start from the file as it is on disk
// then, and replace it atomically and durably (src/state/durable.ts, 0600), so no process
// overwrites another's change and an answered change survives a crash.
import { closeSync, fstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
import { writeFileDurable } from './durable.js';
import type { StateLock } from './lock.js';

export interface Codec<T> {
  /** The contents when the file does not exist. */
  empty(): T;
  parse(text: string): T;
  format(value: T): string;
}

// A rename gives the file a new inode, and every write changes size or times: any change shows.
const stampOf = (st: Stats | undefined) => (st ? `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` : 'missing');

export class SharedFile<T> {
  private stamp: string | undefined;
  private value!: T;

  constructor(
    readonly path: string,
    readonly lock: StateLock,
    private codec: Codec<T>,
  ) {}

  /** The current contents (do not modify them; use `update`). */
  read(): T {
    if (this.stamp === undefined || stampOf(statSync(this.path, { throwIfNoEntry: false })) !== this.stamp) this.load();
    return this.value;
  }

  /**
   * Under the lock: re-reads the file, gives `fn` its contents to change in place, and writes them
   * back when `fn` says they changed. Returns what `fn` returns.
   */
  update<R>(fn: (current: T) => { changed: boolean; result: R }): R {
    return this.lock.run(() => {
      this.load();
      try {
        const { changed, result } = fn(this.value);
        if (changed) this.save();
        return result;
      } catch (e) {
        this.stamp = undefined; // `fn` may have changed the copy before failing: reload it next time
        throw e;
      }
    });
  }

  private load(): void {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      this.value = this.codec.empty();
      this.stamp = stampOf(undefined);
      return;
    }
    try {
      // The stamp of the file actually read, even if it is replaced meanwhile.
      const st = fstatSync(fd);
      this.value = this.codec.parse(readFileSync(fd, 'utf8'));
      this.stamp = stampOf(st);
    } finally {
      closeSync(fd);
    }
  }

  private save(): void {
    writeFileDurable(this.path, this.codec.format(this.value));
    // Under the lock nobody else writes: this stat is of the file just written.
    this.stamp = stampOf(statSync(this.path));
  }
}
