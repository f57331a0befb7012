// The audit log as the app uses it: the data directory's file (FileAuditTrail over AuditLog) or
// one chain in PostgreSQL shared by every instance (PgAuditTrail, audit/pg.ts).
import type { Logger } from '../observability/log.js';
import type { AuditEntry, AuditInput, AuditLog, AuditQuery, AuditVerifyResult, DenialKind } from './log.js';

/** A journal row's entry to append if the log lacks it (its `detail.journal` is `journal`). */
export interface Recovered {
  journal: string;
  input: AuditInput;
}

export interface AuditTrail {
  readonly kind: 'file' | 'postgres';
  /** Appends an entry; resolves once it is stored for good. */
  append(input: AuditInput): Promise<AuditEntry>;
  /** A refusal, windowed (DenialWindows); never throws: a write that fails is logged. */
  appendDenial(input: AuditInput, kind: DenialKind): void;
  /** Writes the counts of every open refusal window (at shutdown). */
  flushDenials(): Promise<void>;
  query(q?: AuditQuery): Promise<AuditEntry[]>;
  /** Walks the whole chain. */
  verify(): Promise<AuditVerifyResult>;
  /**
   * Appends the entries of `items` whose journal id no entry written at or after `sinceMs` has,
   * each once even when several processes recover at once; resolves to how many were appended.
   */
  recover(items: readonly Recovered[], sinceMs: number): Promise<number>;
  close(): Promise<void>;
}

/** The data directory's audit log as an AuditTrail. */
export class FileAuditTrail implements AuditTrail {
  readonly kind = 'file';
  constructor(
    readonly log: AuditLog,
    private logger: Logger,
  ) {}

  async append(input: AuditInput) {
    return this.log.append(input);
  }

  appendDenial(input: AuditInput, kind: DenialKind): void {
    try {
      this.log.appendDenial(input, kind);
    } catch (e) {
      this.logger('error', 'audit log write failed', { action: input.action, error: (e as Error).message });
    }
  }

  async flushDenials() {
    this.log.flushDenials();
  }

  async query(q: AuditQuery = {}) {
    return this.log.query(q);
  }

  async verify() {
    return this.log.verify();
  }

  async recover(items: readonly Recovered[], sinceMs: number): Promise<number> {
    // Under the log's lock, so two processes starting together append each entry once.
    return this.log.lock.run(() => {
      const present = this.log.journalIdsSince(sinceMs);
      let n = 0;
      for (const it of items) {
        if (present.has(it.journal)) continue;
        this.log.append(it.input);
        n++;
      }
      return n;
    });
  }

  async close() {
    try {
      this.log.flushDenials(); // counted refusals are written before the process goes
    } finally {
      this.log.lock.close();
    }
  }
}
