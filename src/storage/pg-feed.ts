// The change feed of a PostgreSQL store shared by several trustgate instances. Every commit that
// changes a GUN's trust data sends NOTIFY in its own transaction (so only committed changes are
// heard, and all of them); each process LISTENs on one dedicated connection, which it opens again
// by itself when it drops. After a reconnect, anything may have been missed: listeners are told to
// resync (drop everything cached). A ping every PING_MS bounds how long a silent loss goes unseen.
import pg from 'pg';
import type { ChangeFeed, ChangeFeedListener } from './types.js';

export const CHANNEL = 'trustgate_changes';
/** How the LISTEN connections show in pg_stat_activity. */
export const APPLICATION_NAME = 'trustgate change feed';

/** A commit is heard, or the feed stops counting as fresh, within this. */
export const FRESH_MS = 1000;
const PING_MS = 250;
const PING_TIMEOUT_MS = 2000;
const RETRY_MAX_MS = 1000;

/** The NOTIFY payload of a change: JSON, well under PostgreSQL's 8000-byte limit (a GUN is at most 255 bytes). */
export const notifyPayload = (gun: string, kind: 'update' | 'deletion') => JSON.stringify({ gun, kind });

export class PgChangeFeed {
  private client?: pg.Client;
  private listeners = new Set<ChangeFeedListener>();
  /** When the newest ping that was answered was sent (monotonic ms): every commit before it was delivered. */
  private confirmedAt = -Infinity;
  private started = false;
  private closed = false;
  private connectedOnce = false;
  private down = false;
  private retryMs = 100;
  private timer?: NodeJS.Timeout;

  constructor(
    private url: string,
    private log: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void,
    private now: () => number = () => performance.now(),
  ) {}

  follow(l: ChangeFeedListener): ChangeFeed {
    this.listeners.add(l);
    if (!this.started) {
      this.started = true;
      void this.connect();
    }
    return { fresh: () => this.fresh(), close: () => void this.listeners.delete(l) };
  }

  /** Connected, and a ping sent less than FRESH_MS ago was answered. */
  fresh(): boolean {
    return this.client !== undefined && this.now() - this.confirmedAt < FRESH_MS;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const c = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: PING_TIMEOUT_MS,
      keepAlive: true,
      application_name: APPLICATION_NAME,
    });
    let dead = false;
    const lost = (e?: Error) => {
      if (dead) return;
      dead = true;
      void c.end().catch(() => undefined);
      if (this.client === c) this.client = undefined;
      this.lost(e);
    };
    c.on('error', lost);
    c.on('end', () => lost(new Error('connection ended')));
    c.on('notification', (n) => {
      if (this.client === c && n.channel === CHANNEL) this.notified(n.payload);
    });
    try {
      await c.connect();
      const sent = this.now();
      await c.query(`LISTEN ${CHANNEL}`);
      if (dead) return;
      if (this.closed) return void c.end().catch(() => undefined);
      this.client = c;
      // Listening from here on: what committed before is covered by the resync.
      if (this.connectedOnce) {
        for (const l of this.listeners) l.resync();
        this.log('info', 'change feed back: caches dropped, they fill again from the store');
      }
      this.connectedOnce = true;
      this.down = false;
      this.retryMs = 100;
      this.confirmedAt = sent;
      this.schedulePing(c);
    } catch (e) {
      lost(e as Error);
    }
  }

  private lost(e?: Error): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    if (!this.down) {
      this.down = true;
      this.log('warn', 'change feed lost: reconnecting; until then cached verdicts are not used', { error: e?.message });
    }
    this.timer = setTimeout(() => void this.connect(), this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private schedulePing(c: pg.Client): void {
    this.timer = setTimeout(() => void this.ping(c), PING_MS);
    this.timer.unref();
  }

  private async ping(c: pg.Client): Promise<void> {
    const sent = this.now();
    // A connection that stops answering is given up, as one that reports an error.
    const stuck = setTimeout(() => c.emit('error', new Error(`no answer to a ping within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    stuck.unref();
    try {
      await c.query('SELECT 1');
    } catch {
      return; // the client's 'error' or 'end' handles it
    } finally {
      clearTimeout(stuck);
    }
    if (this.client !== c) return;
    this.confirmedAt = Math.max(this.confirmedAt, sent);
    this.schedulePing(c);
  }

  private notified(payload: string | undefined): void {
    let m: { gun?: unknown; kind?: unknown };
    try {
      m = JSON.parse(payload ?? '') as typeof m;
    } catch {
      m = {};
    }
    if (typeof m.gun === 'string' && (m.kind === 'update' || m.kind === 'deletion')) {
      for (const l of this.listeners) l.change(m.gun, m.kind);
    } else {
      // Not ours, or unreadable: dropping everything is always safe.
      for (const l of this.listeners) l.resync();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const c = this.client;
    this.client = undefined;
    this.listeners.clear();
    await c?.end().catch(() => undefined);
  }
}
