// The audit log in PostgreSQL (TRUSTGATE_DATABASE_URL): one hash chain for every instance, a row
// per entry. An append reads the head and inserts the next entry in one transaction under an
// advisory lock, so appends from several instances never fork or reorder the chain (the sequence
// number is the primary key besides). An entry that carries a journal id (`detail.journal`)
// removes that row of the store's audit journal in the same transaction: the entry and its
// acknowledgement are stored together or not at all.
import type { Logger } from '../observability/log.js';
import { LOCKS, type Client, type PgState } from '../state/pg.js';
import {
  DenialWindows,
  GENESIS,
  matches,
  nextEntry,
  walkChain,
  type AuditEntry,
  type AuditInput,
  type AuditQuery,
  type AuditVerifyResult,
  type DenialKind,
} from './log.js';
import type { AuditTrail, Recovered } from './trail.js';

/** Rows read per round while walking the chain. */
const PAGE = 5000;

const journalOf = (input: AuditInput) => (typeof input.detail?.journal === 'string' ? input.detail.journal : null);

export class PgAuditTrail implements AuditTrail {
  readonly kind = 'postgres';
  private windows: DenialWindows;

  constructor(
    private db: PgState,
    private log: Logger,
    private now: () => number = Date.now,
  ) {
    this.windows = new DenialWindows(() => void this.writeDenials(this.windows.due(this.now())));
  }

  /** Appends on `c`, which holds the audit lock. */
  private async appendOn(c: Client, input: AuditInput): Promise<AuditEntry> {
    const r = await c.query<{ seq: string; hash: string }>('SELECT seq, hash FROM state_audit ORDER BY seq DESC LIMIT 1');
    const row = r.rows[0];
    const head = row ? { seq: Number(row.seq), hash: row.hash } : { seq: 0, hash: GENESIS };
    const entry = nextEntry(head, input, new Date(this.now()).toISOString());
    const journal = journalOf(input);
    await c.query('INSERT INTO state_audit (seq, hash, journal, at, entry) VALUES ($1, $2, $3, $4, $5)', [
      entry.seq,
      entry.hash,
      journal,
      entry.time,
      JSON.stringify(entry),
    ]);
    if (journal !== null) await c.query('DELETE FROM audit_journal WHERE id = $1', [journal]);
    return entry;
  }

  append(input: AuditInput): Promise<AuditEntry> {
    return this.db.tx(LOCKS.audit, (c) => this.appendOn(c, input));
  }

  private async writeDenials(entries: AuditInput[]): Promise<void> {
    for (const e of entries) {
      try {
        await this.append(e);
      } catch (err) {
        this.log('error', 'audit log write failed', { action: e.action, error: (err as Error).message });
      }
    }
  }

  appendDenial(input: AuditInput, kind: DenialKind): void {
    const now = this.now();
    const write = [...this.windows.due(now)];
    const entry = this.windows.record(input, kind, now);
    if (entry) write.push(entry);
    if (write.length) void this.writeDenials(write);
  }

  flushDenials(): Promise<void> {
    return this.writeDenials(this.windows.due());
  }

  async query(q: AuditQuery = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.since !== undefined) {
      args.push(new Date(q.since));
      where.push(`at >= $${args.length}`);
    }
    if (q.until !== undefined) {
      args.push(new Date(q.until));
      where.push(`at <= $${args.length}`);
    }
    if (q.before !== undefined) {
      args.push(q.before);
      where.push(`seq < $${args.length}`);
    }
    const r = await this.db.read<{ entry: string }>(
      `SELECT entry FROM state_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq`,
      args,
    );
    const out = r.rows.map((x) => JSON.parse(x.entry) as AuditEntry).filter((e) => matches(e, q));
    return q.limit !== undefined ? out.slice(-q.limit) : out;
  }

  async verify(): Promise<AuditVerifyResult> {
    // Rows in sequence order, page by page; appends after the first page only lengthen the walk.
    const lines: string[] = [];
    for (let after = 0; ;) {
      const r = await this.db.read<{ seq: string; entry: string }>(
        'SELECT seq, entry FROM state_audit WHERE seq > $1 ORDER BY seq LIMIT $2',
        [after, PAGE],
      );
      for (const x of r.rows) lines.push(x.entry);
      if (r.rows.length < PAGE) break;
      after = Number(r.rows.at(-1)!.seq);
    }
    const { n, prev, fail } = walkChain(lines);
    if (fail) {
      const last = lines.length ? (JSON.parse(lines.at(-1)!) as AuditEntry) : undefined;
      return {
        ok: false,
        entries: lines.length,
        head: last ? { seq: last.seq, hash: last.hash } : { seq: 0, hash: GENESIS },
        brokenAt: n + 1,
        reason: fail,
      };
    }
    return { ok: true, entries: n, head: { seq: n, hash: prev } };
  }

  recover(items: readonly Recovered[], _sinceMs: number): Promise<number> {
    if (items.length === 0) return Promise.resolve(0);
    // Checked and appended under the audit lock: of instances recovering at once, one appends each.
    return this.db.tx(LOCKS.audit, async (c) => {
      const ids = items.map((i) => i.journal);
      const have = await c.query<{ journal: string }>('SELECT DISTINCT journal FROM state_audit WHERE journal = ANY($1::text[])', [ids]);
      const present = new Set(have.rows.map((x) => x.journal));
      let n = 0;
      for (const it of items) {
        if (present.has(it.journal)) continue;
        present.add(it.journal);
        await this.appendOn(c, it.input);
        n++;
      }
      await c.query('DELETE FROM audit_journal WHERE id = ANY($1::text[])', [ids]);
      return n;
    });
  }

  async close(): Promise<void> {
    await this.flushDenials();
  }
}
