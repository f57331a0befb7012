// The state several trustgate instances share when TRUSTGATE_DATABASE_URL is set: tokens, the
// audit log, pending changes and the keystore secret, in PostgreSQL instead of the data
// directory (docs/high-availability.md). One small pool; a connection that fails while idle or
// in use is dropped from it (never back in the pool) and a new one is opened when needed, so a
// database restart costs the requests in flight, not the process.
import pg from 'pg';
import { createLogger } from '../observability/log.js';

/** Advisory locks of shared state: (STATE_LOCK_CLASS, one of LOCKS), apart from the store's keys. */
export const STATE_LOCK_CLASS = 7482302;
export const LOCKS = { audit: 2, tokens: 3, keystore: 4 } as const;
/** The metadata store's schema lock (storage/postgres.ts): both schemas create `audit_journal`. */
export const SCHEMA_LOCK = [7482301, 1] as const;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS state_tokens (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS state_audit (
    seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, journal TEXT, at TIMESTAMPTZ NOT NULL, entry TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS state_audit_journal ON state_audit (journal) WHERE journal IS NOT NULL;
  CREATE TABLE IF NOT EXISTS state_pending (
    id TEXT PRIMARY KEY, gun TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL, change TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS state_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
  -- The metadata store's journal (storage/postgres.ts), which audit appends acknowledge.
  CREATE TABLE IF NOT EXISTS audit_journal (
    id TEXT PRIMARY KEY, gun TEXT NOT NULL, at TIMESTAMPTZ NOT NULL, writer TEXT NOT NULL, entry TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS audit_journal_at ON audit_journal (at);`;

/**
 * The connection died under the query (server restart, failover, an administrator ending the
 * session): the statement never ran to completion, and a fresh connection may well work.
 */
export function connectionLost(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  if (err.code && ['57P01', '57P02', '57P03', 'ECONNRESET', 'EPIPE'].includes(err.code)) return true;
  return /^Connection terminated/.test(err.message ?? '');
}

/** The server cannot be reached or is not accepting work (down, starting, shutting down). */
function unreachable(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  if (connectionLost(e)) return true;
  if (err.code && ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', '57P03', '53300'].includes(err.code)) return true;
  return /timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error/i.test(err.message ?? '');
}

/** The database cannot be reached (down, restarting, connection lost): nothing was written; retry later (503). */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
  constructor(override readonly cause: Error) {
    super(`the metadata store is unavailable: ${cause.message}`);
  }
}

/** A connection-level failure as StoreUnavailableError (the API answers 503); anything else as it is. */
export const unavailable = (e: unknown): unknown =>
  unreachable(e) && !(e instanceof StoreUnavailableError) ? new StoreUnavailableError(e as Error) : e;

export type Client = pg.PoolClient;

/**
 * A read-only query. A pooled connection the server dropped while it sat idle fails the first
 * query sent on it (the pool then discards it), and after a restart every idle one does: reads
 * are retried, at most `max` times (one per pooled connection), so a restart is not a burst of 503s.
 */
export async function readRetrying<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  max: number,
  sql: string,
  args: unknown[],
): Promise<pg.QueryResult<R>> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await pool.query<R>(sql, args);
    } catch (e) {
      if (!connectionLost(e) || attempt >= max) throw unavailable(e);
    }
  }
}

/**
 * One transaction on a connection of its own, rolled back when `fn` throws. A checked-out client
 * has no pool listener, so its 'error' goes to `onError` here; a connection that failed is not
 * returned to the pool.
 */
export async function transaction<T>(pool: pg.Pool, onError: (e: Error) => void, fn: (c: Client) => Promise<T>): Promise<T> {
  let c: Client;
  try {
    c = await pool.connect();
  } catch (e) {
    throw unavailable(e);
  }
  let broken: Error | undefined;
  const onClientError = (e: Error) => {
    broken ??= e;
    onError(e);
  };
  c.on('error', onClientError);
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    if (!broken) await c.query('ROLLBACK').catch((re: Error) => (broken ??= re));
    throw unavailable(e);
  } finally {
    c.off('error', onClientError);
    c.release(broken);
  }
}

export class PgState {
  private closing?: Promise<void>;
  private constructor(
    private pool: pg.Pool,
    private onError: (e: Error) => void,
    private max: number,
  ) {}

  static async open(url: string, opts: { max?: number; onError?: (e: Error) => void } = {}): Promise<PgState> {
    const log = createLogger('warn');
    const onError = opts.onError ?? ((e: Error) => log('warn', 'postgres connection lost; it will be replaced', { error: e.message }));
    const max = opts.max ?? 5;
    const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 30_000 });
    // Without a listener an idle connection's error would end the process.
    pool.on('error', onError);
    const state = new PgState(pool, onError, max);
    try {
      // Instances starting together must not race on CREATE TABLE.
      await state.tx(undefined, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1, $2)', [...SCHEMA_LOCK]);
        await c.query(SCHEMA);
      });
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
    return state;
  }

  /** A read-only query, retried on a connection the server dropped while it sat in the pool. */
  read<R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<pg.QueryResult<R>> {
    return readRetrying<R>(this.pool, this.max, sql, args);
  }

  /** A statement that writes: not retried, since a lost answer does not mean it did not run. */
  async write<R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, args);
    } catch (e) {
      throw unavailable(e);
    }
  }

  /** One transaction, holding the advisory lock `lock` (LOCKS) until it ends when given. */
  tx<T>(lock: number | undefined, fn: (c: Client) => Promise<T>): Promise<T> {
    return transaction(this.pool, this.onError, async (c) => {
      if (lock !== undefined) await c.query('SELECT pg_advisory_xact_lock($1, $2)', [STATE_LOCK_CLASS, lock]);
      return fn(c);
    });
  }

  /** Runs `fn` holding advisory lock `lock` (LOCKS), apart from any instance running it too. */
  exclusive<T>(lock: number, fn: () => Promise<T>): Promise<T> {
    return this.tx(lock, () => fn());
  }

  /**
   * The secret named `name`: the one stored, else `make()` stored now (of instances racing on a
   * first start, exactly one value wins and every one gets it).
   */
  async secret(name: string, make: () => string): Promise<{ value: string; created: boolean }> {
    const have = await this.read<{ value: string }>('SELECT value FROM state_secrets WHERE name = $1', [name]);
    if (have.rows[0]) return { value: have.rows[0].value, created: false };
    const value = make();
    const r = await this.read<{ value: string }>(
      `WITH ins AS (INSERT INTO state_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value)
       SELECT value, true AS created FROM ins UNION ALL SELECT value, false FROM state_secrets WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
      [name, value],
    );
    const row = r.rows[0] as { value: string; created: boolean } | undefined;
    if (!row) throw new Error(`the shared secret ${name} could not be stored`);
    return { value: row.value, created: row.created };
  }

  close(): Promise<void> {
    return (this.closing ??= this.pool.end());
  }
}
