// Embedded default store: one SQLite file in the data directory. better-sqlite3 is synchronous
// and transactional; `BEGIN IMMEDIATE` takes the write lock before the version check, so the
// check-and-insert is atomic even with several processes on one file. (A deferred BEGIN would
// read first and then fail the upgrade to a writer with SQLITE_BUSY_SNAPSHOT, which no busy
// timeout retries: the loser of a race would see a 500 instead of a VERSION conflict.)
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { changePlan, checkBatch, checkPin, parseVersions, pinAdvance, sha256Hex, versionsText } from './common.js';
import {
  RESTART_WAIT_MS,
  startCheckpointer,
  WAL_CHECKPOINT_FRAMES,
  WAL_RESTART_FRAMES,
  WAL_SIZE_LIMIT_BYTES,
  type Checkpointer,
} from './sqlite-checkpointer.js';
import { WalWatch } from './sqlite-wal-watch.js';
import {
  VersionConflictError,
  type Change,
  type ChangeQuery,
  type JournalRow,
  type JournalWrite,
  type MetadataStore,
  type NewFile,
  type StoredFile,
  type StoredPin,
  type TrustPin,
} from './types.js';

/**
 * How long a writer waits for another connection's (or process's) write lock. better-sqlite3
 * waits synchronously, so this also bounds how long the event loop can stall on it.
 */
const BUSY_TIMEOUT_MS = 5000;
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

interface FileRow {
  gun: string;
  role: string;
  version: number;
  sha256: string;
  data: Buffer;
  created_at: number;
}
interface ChangeRow {
  id: number;
  gun: string;
  version: number;
  sha256: string;
  category: 'update' | 'deletion';
  created_at: number;
}

interface JournalDbRow {
  id: string;
  gun: string;
  at: number;
  writer: string;
  entry: string;
}

interface PinRow {
  gun: string;
  root: Buffer;
  versions: string;
  updated_at: number;
}

const toPin = (r: PinRow | undefined): StoredPin | undefined =>
  r && { gun: r.gun, root: r.root, versions: parseVersions(r.versions), updatedAt: new Date(r.updated_at) };
const toFile = (r: FileRow | undefined): StoredFile | undefined =>
  r && { gun: r.gun, role: r.role, version: r.version, sha256: r.sha256, bytes: r.data, createdAt: new Date(r.created_at) };
const toChange = (r: ChangeRow): Change => ({
  id: r.id,
  gun: r.gun,
  version: r.version,
  sha256: r.sha256,
  category: r.category,
  createdAt: new Date(r.created_at),
});

/**
 * Commits and deletions through any SqliteStore in this process. Each store drops its latest()
 * memo when this moves: the once-per-turn look at the WAL-index (sqlite-wal-watch.ts) stands
 * only for other processes, whose requests reach this one through I/O.
 */
let processWrites = 0;

export class SqliteStore implements MetadataStore {
  readonly kind = 'sqlite';
  private db: Database.Database;
  private q;
  private changeQueries = new Map<string, Database.Statement<(string | number)[], ChangeRow>>();
  /**
   * latest() rows kept while the database is unchanged: the read path asks for the newest
   * timestamp on every GET. The WAL-index header (sqlite-wal-watch.ts; else SQLite's
   * data_version) moves when any connection or process commits, and `processWrites` when a
   * store in this process does, so a row is reused only while both stand. The header is looked
   * at once per event-loop turn and at least every REUSE_MS (sqlite-wal-watch.ts), so another
   * process's commit shows at the next look; this process's commits, through any store, show at
   * once.
   */
  private latestMemo = new Map<string, StoredFile | undefined>();
  private memoVersion = -1;
  private memoWrites = -1;
  private wal: WalWatch | undefined;
  private checkpointer: Checkpointer | undefined;

  /** `opts.walReuseMs`: how long a look at the WAL-index may stand within a turn (for tests). */
  constructor(path: string, opts: { walReuseMs?: number } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    // The busy timeout must be in force before the first statement: switching to WAL and
    // creating the schema take locks that another process may be holding right now.
    this.db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.db.pragma('journal_mode = WAL');
    // FULL: a publish answered 200 survives a power cut. Under NORMAL the last commits can vanish,
    // and clients that already saw the newer timestamp would then read the server as a rollback.
    this.db.pragma('synchronous = FULL');
    if (path !== ':memory:') {
      // Checkpoints run in a thread (sqlite-checkpointer.ts), not inside this connection's commits.
      this.db.pragma('wal_autocheckpoint = 0');
      // When the WAL starts over, its file is cut back to this (a burst's WAL is not kept forever).
      this.db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
      this.checkpointer = startCheckpointer(path, BUSY_TIMEOUT_MS, () => {
        this.checkpointer = undefined;
        if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
      });
    }
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS tuf_files (
        gun TEXT NOT NULL, role TEXT NOT NULL, version INTEGER NOT NULL,
        sha256 TEXT NOT NULL, data BLOB NOT NULL, created_at INTEGER NOT NULL,
        PRIMARY KEY (gun, role, version));
      CREATE INDEX IF NOT EXISTS tuf_files_sha ON tuf_files (gun, role, sha256);
      CREATE TABLE IF NOT EXISTS changefeed (
        id INTEGER PRIMARY KEY AUTOINCREMENT, gun TEXT NOT NULL, version INTEGER NOT NULL,
        sha256 TEXT NOT NULL, category TEXT NOT NULL, created_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS changefeed_gun ON changefeed (gun, id);
      CREATE TABLE IF NOT EXISTS trust_pins (
        gun TEXT PRIMARY KEY, root BLOB NOT NULL, versions TEXT NOT NULL, updated_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS audit_journal (
        id TEXT PRIMARY KEY, gun TEXT NOT NULL, at INTEGER NOT NULL, writer TEXT NOT NULL, entry TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS audit_journal_at ON audit_journal (at);`);
    this.q = {
      latest: this.db.prepare<[string, string], FileRow>(
        'SELECT * FROM tuf_files WHERE gun = ? AND role = ? ORDER BY version DESC LIMIT 1',
      ),
      byVersion: this.db.prepare<[string, string, number], FileRow>('SELECT * FROM tuf_files WHERE gun = ? AND role = ? AND version = ?'),
      byChecksum: this.db.prepare<[string, string, string], FileRow>(
        'SELECT * FROM tuf_files WHERE gun = ? AND role = ? AND sha256 = ? ORDER BY version DESC LIMIT 1',
      ),
      // One index seek per role (a loose index scan), not a pass over every stored version: this
      // runs on every publish and must not slow down as a repository's history grows.
      versions: this.db.prepare<[{ gun: string }], { role: string; v: number }>(`
        WITH RECURSIVE r(role) AS (
          SELECT MIN(role) FROM tuf_files WHERE gun = @gun
          UNION ALL
          SELECT (SELECT MIN(role) FROM tuf_files WHERE gun = @gun AND role > r.role) FROM r WHERE r.role IS NOT NULL)
        SELECT role, (SELECT MAX(version) FROM tuf_files WHERE gun = @gun AND role = r.role) AS v FROM r WHERE role IS NOT NULL`),
      maxVersion: this.db.prepare<[string, string], { v: number | null }>(
        'SELECT MAX(version) AS v FROM tuf_files WHERE gun = ? AND role = ?',
      ),
      insert: this.db.prepare('INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      change: this.db.prepare('INSERT INTO changefeed (gun, version, sha256, category, created_at) VALUES (?, ?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM tuf_files WHERE gun = ?'),
      guns: this.db.prepare<[], { gun: string }>('SELECT DISTINCT gun FROM tuf_files ORDER BY gun'),
      pin: this.db.prepare<[string], PinRow>('SELECT * FROM trust_pins WHERE gun = ?'),
      setPin: this.db.prepare(`INSERT INTO trust_pins (gun, root, versions, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (gun) DO UPDATE SET root = excluded.root, versions = excluded.versions, updated_at = excluded.updated_at`),
      delPin: this.db.prepare('DELETE FROM trust_pins WHERE gun = ?'),
      journalAdd: this.db.prepare('INSERT INTO audit_journal (id, gun, at, writer, entry) VALUES (?, ?, ?, ?, ?)'),
      journalDel: this.db.prepare('DELETE FROM audit_journal WHERE id = ?'),
      journal: this.db.prepare<[number], JournalDbRow>('SELECT * FROM audit_journal ORDER BY at, id LIMIT ?'),
      dataVersion: this.db.prepare<[], number>('PRAGMA data_version').pluck(),
      restart: this.db.prepare('PRAGMA wal_checkpoint(RESTART)'),
    };
    // After the schema work above, so the WAL index exists.
    if (path !== ':memory:') this.wal = WalWatch.open(path, opts.walReuseMs);
  }

  /** Whether another process (or a connection that is not a SqliteStore) may have committed since the memo was filled. */
  private changedElsewhere(): boolean {
    if (this.wal) return this.wal.changedThisTurn();
    const version = this.q.dataVersion.get()!;
    if (version === this.memoVersion) return false;
    this.memoVersion = version;
    return true;
  }

  committedElsewhere(): void {
    this.wal?.forgetLook();
  }

  async latest(gun: string, role: string) {
    return this.latestNow(gun, role);
  }
  latestNow(gun: string, role: string): StoredFile | undefined {
    if (this.changedElsewhere() || processWrites !== this.memoWrites || this.latestMemo.size >= 1024) {
      this.latestMemo.clear();
      this.memoWrites = processWrites;
    }
    const key = `${gun}\0${role}`;
    if (this.latestMemo.has(key)) return this.latestMemo.get(key);
    const f = toFile(this.q.latest.get(gun, role));
    this.latestMemo.set(key, f);
    return f;
  }
  async byVersion(gun: string, role: string, version: number) {
    return toFile(this.q.byVersion.get(gun, role, version));
  }
  async byChecksum(gun: string, role: string, sha256: string) {
    return toFile(this.q.byChecksum.get(gun, role, sha256));
  }
  async latestVersions(gun: string) {
    return new Map(this.q.versions.all({ gun }).map((r) => [r.role, r.v]));
  }

  private writeJournal(gun: string, now: Date, j: JournalWrite | undefined, add = true): void {
    if (!j) return;
    for (const id of j.ack ?? []) this.q.journalDel.run(id);
    if (j.add && add) this.q.journalAdd.run(j.add.id, gun, now.getTime(), j.add.writer, j.add.entry);
  }

  async commit(gun: string, files: readonly NewFile[], now: Date, journal?: JournalWrite): Promise<StoredFile[]> {
    checkBatch(files);
    const stored: StoredFile[] = [];
    const run = this.db.transaction(() => {
      for (const f of files) {
        const max = this.q.maxVersion.get(gun, f.role)?.v ?? 0;
        if (f.version <= max) throw new VersionConflictError(f.role, f.version);
        const sha = sha256Hex(f.bytes);
        this.q.insert.run(gun, f.role, f.version, sha, f.bytes, now.getTime());
        if (f.role === 'timestamp') this.q.change.run(gun, f.version, sha, 'update', now.getTime());
        stored.push({ gun, role: f.role, version: f.version, sha256: sha, bytes: f.bytes, createdAt: new Date(now.getTime()) });
      }
      this.writeJournal(gun, now, journal);
    });
    try {
      run.immediate();
    } finally {
      processWrites++;
    }
    this.boundWal();
    return stored;
  }

  /**
   * Keeps the WAL short when commits come back to back (sqlite-checkpointer.ts): a long WAL gets
   * a checkpoint from the thread at once, a very long one a RESTART checkpoint here, which may
   * wait RESTART_WAIT_MS for others' locks and otherwise is tried again after the next commit.
   */
  private boundWal(): void {
    if (!this.checkpointer || !this.wal) return;
    const frames = this.wal.frames();
    if (frames < WAL_CHECKPOINT_FRAMES) return;
    if (frames < WAL_RESTART_FRAMES) return this.checkpointer.kick();
    this.db.pragma(`busy_timeout = ${RESTART_WAIT_MS}`);
    try {
      this.q.restart.get();
    } catch {
      // The commit stands whatever happens here (SQLITE_BUSY: another process's lock); the next
      // commit tries again.
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  async deleteGun(gun: string, now: Date, journal?: JournalWrite): Promise<boolean> {
    processWrites++;
    return this.db
      .transaction(() => {
        const n = this.q.del.run(gun).changes;
        if (n > 0) this.q.change.run(gun, 0, '', 'deletion', now.getTime());
        this.writeJournal(gun, now, journal, n > 0);
        return n > 0;
      })
      .immediate();
  }

  async journal(limit: number): Promise<JournalRow[]> {
    return this.q.journal.all(limit).map((r) => ({ id: r.id, gun: r.gun, at: new Date(r.at), writer: r.writer, entry: r.entry }));
  }

  async acknowledge(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    this.db
      .transaction(() => {
        for (const id of ids) this.q.journalDel.run(id);
      })
      .immediate();
  }

  async pin(gun: string) {
    return toPin(this.q.pin.get(gun));
  }

  async advancePin(gun: string, from: Buffer | undefined, next: TrustPin, now: Date): Promise<boolean> {
    checkPin(next);
    return this.db
      .transaction(() => {
        const write = pinAdvance(toPin(this.q.pin.get(gun)), from, next);
        if (write) this.q.setPin.run(gun, write.root, versionsText(write.versions), now.getTime());
        return write !== undefined;
      })
      .immediate();
  }

  async resetPin(gun: string, next: TrustPin | undefined, now: Date) {
    if (next) checkPin(next);
    return this.db
      .transaction(() => {
        const old = toPin(this.q.pin.get(gun));
        if (next) this.q.setPin.run(gun, next.root, versionsText(next.versions), now.getTime());
        else this.q.delPin.run(gun);
        return old;
      })
      .immediate();
  }

  async changes(q: ChangeQuery): Promise<Change[]> {
    const plan = changePlan(q);
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.gun !== undefined) {
      where.push('gun = ?');
      args.push(q.gun);
    }
    if (plan.after !== undefined) {
      where.push('id > ?');
      args.push(plan.after);
    }
    if (plan.before !== undefined) {
      where.push('id < ?');
      args.push(plan.before);
    }
    const sql = `SELECT * FROM changefeed ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id ${plan.backwards ? 'DESC' : 'ASC'} LIMIT ?`;
    args.push(plan.limit);
    let stmt = this.changeQueries.get(sql);
    if (!stmt) this.changeQueries.set(sql, (stmt = this.db.prepare<(string | number)[], ChangeRow>(sql)));
    const rows = stmt.all(...args).map(toChange);
    return plan.backwards ? rows.reverse() : rows;
  }

  async listGuns() {
    return this.q.guns.all().map((r) => r.gun);
  }
  async ping() {
    this.db.prepare('SELECT 1').get();
  }
  async backup(dest: string) {
    // SQLite's online backup: a few pages per step, so the event loop keeps serving; a commit by
    // another connection meanwhile makes it start over, so the copy is one consistent state.
    await this.db.backup(dest);
  }
  async close() {
    const c = this.checkpointer;
    this.checkpointer = undefined;
    await c?.stop();
    this.wal?.close();
    this.wal = undefined;
    if (this.db.open) this.db.close();
  }
}
