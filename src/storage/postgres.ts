// PostgreSQL store for deployments with several trustgate processes. A per-GUN advisory lock
// serialises commits, so "version strictly greater than every stored one" is checked and
// written atomically even when two processes publish to one GUN at once.
import pg from 'pg';
import { createHash } from 'node:crypto';
import { VersionConflictError, type Change, type ChangeQuery, type MetadataStore, type NewFile, type StoredFile } from './types.js';

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

const toFile = (r: FileRow | undefined): StoredFile | undefined =>
  r && { gun: r.gun, role: r.role, version: Number(r.version), sha256: r.sha256, bytes: r.data, createdAt: r.created_at };
const toChange = (r: ChangeRow): Change => ({ id: Number(r.id), gun: r.gun, version: Number(r.version), sha256: r.sha256, category: r.category, createdAt: r.created_at });

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS tuf_files (
    gun TEXT NOT NULL, role TEXT NOT NULL, version BIGINT NOT NULL,
    sha256 TEXT NOT NULL, data BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (gun, role, version));
  CREATE INDEX IF NOT EXISTS tuf_files_sha ON tuf_files (gun, role, sha256);
  CREATE TABLE IF NOT EXISTS changefeed (
    id BIGSERIAL PRIMARY KEY, gun TEXT NOT NULL, version BIGINT NOT NULL,
    sha256 TEXT NOT NULL, category TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL);
  CREATE INDEX IF NOT EXISTS changefeed_gun ON changefeed (gun, id);`;

export class PostgresStore implements MetadataStore {
  readonly kind = 'postgres';
  private constructor(private pool: pg.Pool) {}

  static async open(url: string): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    const c = await pool.connect();
    try {
      // Two processes starting together must not race on CREATE TABLE.
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock(7482301)');
      await c.query(SCHEMA);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
    return new PostgresStore(pool);
  }

  private async one(sql: string, args: unknown[]): Promise<StoredFile | undefined> {
    const r = await this.pool.query<FileRow>(sql, args);
    return toFile(r.rows[0]);
  }
  latest(gun: string, role: string) {
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 ORDER BY version DESC LIMIT 1', [gun, role]);
  }
  byVersion(gun: string, role: string, version: number) {
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3', [gun, role, version]);
  }
  byChecksum(gun: string, role: string, sha256: string) {
    return this.one('SELECT * FROM tuf_files WHERE gun = $1 AND role = $2 AND sha256 = $3 ORDER BY version DESC LIMIT 1', [gun, role, sha256]);
  }
  async latestVersions(gun: string) {
    const r = await this.pool.query<{ role: string; v: string }>('SELECT role, MAX(version) AS v FROM tuf_files WHERE gun = $1 GROUP BY role', [gun]);
    return new Map(r.rows.map((x) => [x.role, Number(x.v)]));
  }

  private async tx<T>(gun: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [gun]);
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  async commit(gun: string, files: readonly NewFile[], now: Date): Promise<void> {
    await this.tx(gun, async (c) => {
      const seen = new Set<string>();
      for (const f of files) {
        const key = `${f.role}\0${f.version}`;
        const r = await c.query<{ v: string | null }>('SELECT MAX(version) AS v FROM tuf_files WHERE gun = $1 AND role = $2', [gun, f.role]);
        const max = Number(r.rows[0]?.v ?? 0);
        if (f.version <= max || seen.has(key)) throw new VersionConflictError(f.role, f.version);
        seen.add(key);
        const sha = createHash('sha256').update(f.bytes).digest('hex');
        await c.query('INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [gun, f.role, f.version, sha, f.bytes, now]);
        if (f.role === 'timestamp') {
          await c.query('INSERT INTO changefeed (gun, version, sha256, category, created_at) VALUES ($1, $2, $3, $4, $5)', [gun, f.version, sha, 'update', now]);
        }
      }
    });
  }

  async deleteGun(gun: string, now: Date): Promise<boolean> {
    return this.tx(gun, async (c) => {
      const r = await c.query('DELETE FROM tuf_files WHERE gun = $1', [gun]);
      const n = r.rowCount ?? 0;
      if (n > 0) await c.query('INSERT INTO changefeed (gun, version, sha256, category, created_at) VALUES ($1, 0, $2, $3, $4)', [gun, '', 'deletion', now]);
      return n > 0;
    });
  }

  async changes(q: ChangeQuery): Promise<Change[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.gun !== undefined) {
      args.push(q.gun);
      where.push(`gun = $${args.length}`);
    }
    const backwards = q.records < 0 || q.changeId === -1;
    if (q.changeId > 0) {
      args.push(q.changeId);
      where.push(`id ${backwards ? '<' : '>'} $${args.length}`);
    }
    args.push(Math.abs(q.records));
    const sql = `SELECT * FROM changefeed ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id ${backwards ? 'DESC' : 'ASC'} LIMIT $${args.length}`;
    const rows = (await this.pool.query<ChangeRow>(sql, args)).rows.map(toChange);
    return backwards ? rows.reverse() : rows;
  }

  async listGuns() {
    return (await this.pool.query<{ gun: string }>('SELECT DISTINCT gun FROM tuf_files ORDER BY gun')).rows.map((r) => r.gun);
  }
  async ping() {
    await this.pool.query('SELECT 1');
  }
  async close() {
    await this.pool.end();
  }
}
