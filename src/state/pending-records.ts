// Pending m-of-n changes as records: the interface the change pipeline uses (trust/pending.ts),
// and its PostgreSQL implementation for instances sharing TRUSTGATE_DATABASE_URL, where a change
// opened on one instance is signed, completed or cancelled on another. The data directory's
// implementation is trust/pending.ts (`pending.json`).
import { type PgState } from './pg.js';

/** What the store needs to know of a record; the rest is kept as JSON. */
export interface PendingRecord {
  id: string;
  gun: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601. */
  expiresAt: string;
}

export interface PendingRecords<T extends PendingRecord> {
  /** Adds `c`, or replaces the record with its ID. */
  put(c: T): Promise<void>;
  /**
   * Replaces record `id` with what `fn` makes of it as stored now (atomically, so a change
   * another process made meanwhile is seen); undefined, and nothing written, when it is gone or
   * `fn` returns undefined.
   */
  update(id: string, fn: (current: T) => T | undefined): Promise<T | undefined>;
  get(id: string): Promise<T | undefined>;
  /** Oldest first. */
  list(filter?: { gun?: string }): Promise<T[]>;
  /** Removes record `id`; returns it, or undefined when it was not there (so of several processes one gets it). */
  remove(id: string): Promise<T | undefined>;
  /** Removes and returns every record whose time is up (each to one process only). */
  takeExpired(): Promise<T[]>;
}

const parse = <T>(rows: { change: string }[]) => rows.map((r) => JSON.parse(r.change) as T);

export class PgPendingRecords<T extends PendingRecord> implements PendingRecords<T> {
  constructor(
    private db: PgState,
    private now: () => number = Date.now,
  ) {}

  async put(c: T): Promise<void> {
    await this.db.write(
      `INSERT INTO state_pending (id, gun, created_at, expires_at, change) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET gun = excluded.gun, created_at = excluded.created_at, expires_at = excluded.expires_at, change = excluded.change`,
      [c.id, c.gun, c.createdAt, new Date(c.expiresAt), JSON.stringify(c)],
    );
  }

  update(id: string, fn: (current: T) => T | undefined): Promise<T | undefined> {
    return this.db.tx(undefined, async (c) => {
      const cur = parse<T>((await c.query<{ change: string }>('SELECT change FROM state_pending WHERE id = $1 FOR UPDATE', [id])).rows)[0];
      const next = cur && fn(cur);
      if (!next) return undefined;
      const out = { ...next, id };
      await c.query('UPDATE state_pending SET change = $2, expires_at = $3 WHERE id = $1', [
        id,
        JSON.stringify(out),
        new Date(out.expiresAt),
      ]);
      return out;
    });
  }

  async get(id: string): Promise<T | undefined> {
    return parse<T>((await this.db.read<{ change: string }>('SELECT change FROM state_pending WHERE id = $1', [id])).rows)[0];
  }

  async list(filter: { gun?: string } = {}): Promise<T[]> {
    const r =
      filter.gun === undefined
        ? await this.db.read<{ change: string }>('SELECT change FROM state_pending ORDER BY created_at, id')
        : await this.db.read<{ change: string }>('SELECT change FROM state_pending WHERE gun = $1 ORDER BY created_at, id', [filter.gun]);
    return parse<T>(r.rows);
  }

  async remove(id: string): Promise<T | undefined> {
    // DELETE … RETURNING: of processes removing at once, exactly one gets the row.
    return parse<T>((await this.db.write<{ change: string }>('DELETE FROM state_pending WHERE id = $1 RETURNING change', [id])).rows)[0];
  }

  async takeExpired(): Promise<T[]> {
    const r = await this.db.write<{ change: string }>('DELETE FROM state_pending WHERE expires_at <= $1 RETURNING change', [
      new Date(this.now()),
    ]);
    return parse<T>(r.rows).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }
}
