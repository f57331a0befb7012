// PostgreSQL store for deployments with several trustgate processes. A per-GUN advisory lock
// serialises commits, so "version strictly greater than every stored one" is checked and
// written atomically even when two processes publish to one GUN at once. A second, global lock
// is taken just before a transaction writes changefeed rows, so change ids become visible in
// increasing order: a reader that has seen id N never later finds a new id below N.
import pg from 'pg';
import { createLogger, type Logger } from '../observability/log.js';
import { SCHEMA_LOCK, readRetrying, transaction, unavailable as mapped } from '../state/pg.js';
import { CHANNEL, notifyPayload, PgChangeFeed } from './pg-feed.js';
import { changePlan, checkBatch, checkPin, parseVersions, pinAdvance, sha256Hex, versionsText } from './common.js';
import {
  VersionConflictError,
  type Change,
  type ChangeFeed,
  type ChangeFeedListener,
  type ChangeQuery,
  type JournalRow,
  type JournalWrite,
  type MetadataStore,
  type NewFile,
  type StoredFile,
  type StoredPin,
  type TrustPin,
} from './types.js';

interface FileRow {
  gun: string;
  role: string;
  version: string;
  sha256: string;
  data: Buffer;
  created_at: Date;
}
interface ChangeRow {
  id: string;
  gun: string;
  version: string;
  sha256: string;
  category: 'update' | 'deletion';
  created_at: Date;
}

interface PinRow {
  gun: string;
  root: Buffer;
  versions: string;
  updated_at: Date;
}

/** BIGINT arrives as a string; anything past 2^53 cannot be represented and is refused loudly. */
function int(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} ${v} is not a safe integer`);
  return n;
}

const toFile = (r: FileRow | undefined): StoredFile | undefined =>
  r && { gun: r.gun, role: r.role, version: int(r.version, 'version'), sha256: r.sha256, bytes: r.data, createdAt: r.created_at };
const toPin = (r: PinRow | undefined): StoredPin | undefined =>
  r && { gun: r.gun, root: r.root, versions: parseVersions(r.versions), updatedAt: r.updated_at };
const toChange = (r: ChangeRow): Change => ({
  id: int(r.id, 'change id'),
  gun: r.gun,
  version: int(r.version, 'version'),
  sha256: r.sha256,
  category: r.category,
  createdAt: r.created_at,
});

/** Fixed advisory locks live in the (int4, int4) key space, apart from the per-GUN bigint keys. */
const [LOCK_CLASS, LOCK_SCHEMA] = SCHEMA_LOCK;
const LOCK_CHANGEFEED = 2;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS tuf_files (
    gun TEXT NOT NULL, role TEXT NOT NULL, version BIGINT NOT NULL,
    sha256 TEXT NOT NULL, data BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (gun, role, version));
  CREATE INDEX IF NOT EXISTS tuf_files_sha ON tuf_files (gun, role, sha256);
  CREATE TABLE IF NOT EXISTS changefeed (
    id BIGSERIAL PRIMARY KEY, gun TEXT NOT NULL, version BIGINT NOT NULL,
    sha256 TEXT NOT NULL, category TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL);
  CREATE INDEX IF NOT EXISTS changefeed_gun ON changefeed (gun, id);
  CREATE TABLE IF NOT EXISTS trust_pins (
    gun TEXT PRIMARY KEY, root BYTEA NOT NULL, versions TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
  CREATE TABLE IF NOT EXISTS audit_journal (
    id TEXT PRIMARY KEY, gun TEXT NOT NULL, at TIMESTAMPTZ NOT NULL, writer TEXT NOT NULL, entry TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS audit_journal_at ON audit_journal (at);`;

const INSERT_FILE = 'INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)';

/**
 * The journal's writes as data-modifying CTEs in front of a statement the transaction sends
 * anyway, so journaling adds no round trip: `$first` is the first parameter number free.
 */
function withJournal(
  sql: string,
  first: number,
  gun: string,
  now: Date,
  j: JournalWrite | undefined,
  add: boolean,
): { sql: string; args: unknown[] } {
  const ctes: string[] = [];
  const args: unknown[] = [];
  if (j?.ack?.length) {
    args.push([...j.ack]);
    ctes.push(`acked AS (DELETE FROM audit_journal WHERE id = ANY($${first}::text[]))`);
  }
  if (j?.add && add) {
    const n = first + args.length;
    args.push(j.add.id, gun, now, j.add.writer, j.add.entry);
    ctes.push(
      `journaled AS (INSERT INTO audit_journal (id, gun, at, writer, entry) VALUES ($${n}, $${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}))`,
    );
  }
  return { sql: ctes.length ? `WITH ${ctes.join(', ')} ${sql}` : sql, args };
}

export interface PostgresStoreOptions {
  /** Pool size (default 10). */
  max?: number;
  /** How long to wait for a connection, new or pooled, before failing (default 30 s). */
  connectionTimeoutMillis?: number;
  /**
   * Called when a pooled connection fails while nobody is using it (the server restarted, an
   * administrator ended the session). The pool drops that connection and opens a new one when
   * needed; without a listener node would treat the error as uncaught and end the process.
   */
  onError?: (e: Error) => void;
  /** Where the change feed reports losing and regaining its connection. */
  log?: Logger;
}

const defaultOnError = (() => {
  const log = createLogger('warn');
  return (e: Error) => log('warn', 'postgres connection lost; it will be replaced', { error: e.message });
})();

type Pending = { gun: string; version: number; sha256: string; category: 'update' | 'deletion'; at: Date };

export class PostgresStore implements MetadataStore {
  readonly kind = 'postgres';
  private closing?: Promise<void>;
  private feed?: PgChangeFeed;
  /** Session locks get connections of their own: a holder's reads and commit use the main pool. */
  private lockPool?: pg.Pool;
  private constructor(
    private pool: pg.Pool,
    private onError: (e: Error) => void,
    private max: number,
    private url: string,
    private log: Logger,
  ) {}

  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const onError = opts.onError ?? defaultOnError;
    const max = opts.max ?? 10;
    const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 30_000 });
    pool.on('error', (e) => onError(e));
    try {
      const c = await pool.connect();
      const onClientError = (e: Error) => onError(e);
      c.on('error', onClientError);
      let broken: Error | undefined;
      try {
        // Two processes starting together must not race on CREATE TABLE.
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, LOCK_SCHEMA]);
        await c.query(SCHEMA);
        await c.query('COMMIT');
      } catch (e) {
        await c.query('ROLLBACK').catch((re: Error) => (broken = re));
        throw e;
      } finally {
        c.off('error', onClientError);
        c.release(broken);
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return new PostgresStore(pool, onError, max, url, opts.log ?? createLogger('warn'));
  }

  private read<R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<pg.QueryResult<R>> {
    return readRetrying<R>(this.pool, this.max, sql, args);
  }

  private async one(sql: string, args: unknown[]): Promise<StoredFile | undefined> {
    const r = await this.read<FileRow>(sql, args);
    return toFile(r.rows[0]);
  }
  latest(gun: string, role: string) {
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 ORDER BY version DESC LIMIT 1', [gun, role]);
  }
  byVersion(gun: string, role: string, version: number) {
    if (!Number.isSafeInteger(version)) return Promise.resolve(undefined);
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3', [gun, role, version]);
  }
  byChecksum(gun: string, role: string, sha256: string) {
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 AND sha256 = $3 ORDER BY version DESC LIMIT 1', [
      gun,
      role,
      sha256,
    ]);
  }
  async latestVersions(gun: string) {
    // A loose index scan (one index seek per role) rather than GROUP BY over every stored
    // version: this runs on every publish and must not slow down as a repository's history grows.
    const r = await this.read<{ role: string; v: string }>(
      `WITH RECURSIVE r(role) AS (
         (SELECT role FROM tuf_files WHERE gun = $1 ORDER BY role LIMIT 1)
         UNION ALL
         SELECT (SELECT t.role FROM tuf_files t WHERE t.gun = $1 AND t.role > r.role ORDER BY t.role LIMIT 1) FROM r WHERE r.role IS NOT NULL)
       SELECT role, (SELECT MAX(version) FROM tuf_files WHERE gun = $1 AND role = r.role) AS v FROM r WHERE role IS NOT NULL`,
      [gun],
    );
    return new Map(r.rows.map((x) => [x.role, int(x.v, 'version')]));
  }

  /**
   * One transaction under the advisory lock of `lock` (the GUN, for commits). `fn` returns its
   * result and the changefeed rows to append; those are written last, under the global
   * changefeed lock, which is held only until COMMIT.
   */
  private tx<T>(
    lock: string,
    fn: (c: pg.PoolClient) => Promise<{ out: T; changes: Pending[]; notify?: { gun: string; kind: 'update' | 'deletion' } }>,
  ): Promise<T> {
    return transaction(this.pool, this.onError, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lock]);
      const { out, changes, notify } = await fn(c);
      // Delivered by PostgreSQL at COMMIT, and only if it commits.
      if (notify) await c.query('SELECT pg_notify($1, $2)', [CHANNEL, notifyPayload(notify.gun, notify.kind)]);
      if (changes.length > 0) {
        await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, LOCK_CHANGEFEED]);
        for (const ch of changes) {
          await c.query('INSERT INTO changefeed (gun, version, sha256, category, created_at) VALUES ($1, $2, $3, $4, $5)', [
            ch.gun,
            ch.version,
            ch.sha256,
            ch.category,
            ch.at,
          ]);
        }
      }
      return out;
    });
  }

  async commit(gun: string, files: readonly NewFile[], now: Date, journal?: JournalWrite): Promise<StoredFile[]> {
    checkBatch(files);
    if (files.length === 0) return [];
    return this.tx(gun, async (c) => {
      const changes: Pending[] = [];
      const stored: StoredFile[] = [];
      for (const [i, f] of files.entries()) {
        const r = await c.query<{ v: string | null }>('SELECT MAX(version) AS v FROM tuf_files WHERE gun = $1 AND role = $2', [
          gun,
          f.role,
        ]);
        const max = r.rows[0]?.v == null ? 0 : int(r.rows[0].v, 'version');
        if (f.version <= max) throw new VersionConflictError(f.role, f.version);
        const sha = sha256Hex(f.bytes);
        try {
          const j = withJournal(INSERT_FILE, 7, gun, now, i === 0 ? journal : undefined, true);
          await c.query(j.sql, [gun, f.role, f.version, sha, f.bytes, now, ...j.args]);
        } catch (e) {
          // The primary key backs up the advisory lock: a duplicate version is a conflict, not a 500.
          if ((e as { code?: string }).code === '23505') throw new VersionConflictError(f.role, f.version);
          throw e;
        }
        if (f.role === 'timestamp') changes.push({ gun, version: f.version, sha256: sha, category: 'update', at: now });
        stored.push({ gun, role: f.role, version: f.version, sha256: sha, bytes: f.bytes, createdAt: new Date(now.getTime()) });
      }
      return { out: stored, changes, notify: { gun, kind: 'update' } };
    });
  }

  async deleteGun(gun: string, now: Date, journal?: JournalWrite): Promise<boolean> {
    return this.tx(gun, async (c) => {
      const r = await c.query('DELETE FROM tuf_files WHERE gun = $1', [gun]);
      const removed = (r.rowCount ?? 0) > 0;
      const j = withJournal('SELECT 1', 1, gun, now, journal, removed);
      if (j.args.length > 0) await c.query(j.sql, j.args);
      return {
        out: removed,
        changes: removed ? [{ gun, version: 0, sha256: '', category: 'deletion', at: now }] : [],
        ...(removed ? { notify: { gun, kind: 'deletion' as const } } : {}),
      };
    });
  }

  async journal(limit: number): Promise<JournalRow[]> {
    const r = await this.read<{ id: string; gun: string; at: Date; writer: string; entry: string }>(
      'SELECT * FROM audit_journal ORDER BY at, id LIMIT $1',
      [limit],
    );
    return r.rows.map((x) => ({ id: x.id, gun: x.gun, at: x.at, writer: x.writer, entry: x.entry }));
  }

  async acknowledge(ids: readonly string[]): Promise<void> {
    if (ids.length > 0)
      await this.pool.query('DELETE FROM audit_journal WHERE id = ANY($1::text[])', [[...ids]]).catch((e: unknown) => {
        throw mapped(e);
      });
  }

  async pin(gun: string) {
    return toPin((await this.read<PinRow>('SELECT * FROM trust_pins WHERE gun = $1', [gun])).rows[0]);
  }

  /** Reads and writes a pin under its own advisory lock (apart from the GUN's commit lock). */
  private pinTx<T>(gun: string, fn: (c: pg.PoolClient, old: StoredPin | undefined) => Promise<T>, notify = false): Promise<T> {
    return this.tx(`pin:${gun}`, async (c) => {
      const old = toPin((await c.query<PinRow>('SELECT * FROM trust_pins WHERE gun = $1', [gun])).rows[0]);
      return { out: await fn(c, old), changes: [], ...(notify ? { notify: { gun, kind: 'update' as const } } : {}) };
    });
  }
  private async setPin(c: pg.PoolClient, gun: string, p: TrustPin, now: Date): Promise<void> {
    await c.query(
      `INSERT INTO trust_pins (gun, root, versions, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (gun) DO UPDATE SET root = excluded.root, versions = excluded.versions, updated_at = excluded.updated_at`,
      [gun, p.root, versionsText(p.versions), now],
    );
  }

  async advancePin(gun: string, from: Buffer | undefined, next: TrustPin, now: Date): Promise<boolean> {
    checkPin(next);
    return this.pinTx(gun, async (c, old) => {
      const write = pinAdvance(old, from, next);
      if (write) await this.setPin(c, gun, write, now);
      return write !== undefined;
    });
  }

  async resetPin(gun: string, next: TrustPin | undefined, now: Date) {
    if (next) checkPin(next);
    return this.pinTx(
      gun,
      async (c, old) => {
        if (next) await this.setPin(c, gun, next, now);
        else await c.query('DELETE FROM trust_pins WHERE gun = $1', [gun]);
        return old;
      },
      true,
    );
  }

  async changes(q: ChangeQuery): Promise<Change[]> {
    const plan = changePlan(q);
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.gun !== undefined) {
      args.push(q.gun);
      where.push(`gun = $${args.length}`);
    }
    if (plan.after !== undefined) {
      args.push(plan.after);
      where.push(`id > $${args.length}`);
    }
    if (plan.before !== undefined) {
      args.push(plan.before);
      where.push(`id < $${args.length}`);
    }
    args.push(plan.limit);
    const sql = `SELECT * FROM changefeed ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id ${plan.backwards ? 'DESC' : 'ASC'} LIMIT $${args.length}`;
    const rows = (await this.read<ChangeRow>(sql, args)).rows.map(toChange);
    return plan.backwards ? rows.reverse() : rows;
  }

  async listGuns() {
    return (await this.read<{ gun: string }>('SELECT DISTINCT gun FROM tuf_files ORDER BY gun')).rows.map((r) => r.gun);
  }
  async ping() {
    await this.read('SELECT 1');
  }
  /** Opens the LISTEN connection on first use; it closes with the store. */
  follow(l: ChangeFeedListener): ChangeFeed {
    this.feed ??= new PgChangeFeed(this.url, this.log);
    return this.feed.follow(l);
  }

  async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    if (!this.lockPool) {
      this.lockPool = new pg.Pool({ connectionString: this.url, max: this.max, connectionTimeoutMillis: 30_000 });
      this.lockPool.on('error', (e) => this.onError(e));
    }
    // Not the key of a commit's transaction lock (the bare GUN), which this process also takes.
    const name = [`exclusive:${key}`];
    let c: pg.PoolClient | undefined;
    let broken: Error | undefined;
    // A lost session drops the lock; commits still check versions, so that costs a retry, not data.
    const onClientError = (e: Error) => (broken ??= e);
    try {
      c = await this.lockPool.connect();
      c.on('error', onClientError);
      await c.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', name);
    } catch (e) {
      c?.off('error', onClientError);
      c?.release(true);
      throw mapped(e);
    }
    try {
      return await fn();
    } finally {
      if (!broken) await c.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', name).catch((e: Error) => (broken ??= e));
      c.off('error', onClientError);
      c.release(broken);
    }
  }

  close(): Promise<void> {
    return (this.closing ??= Promise.all([this.feed?.close(), this.pool.end(), this.lockPool?.end()]).then(() => undefined));
  }
}
