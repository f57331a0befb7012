// Start-up reconciliation of the audit journal (storage types.ts JournalRow): a commit's audit
// entry is stored in the commit's transaction and removed once the edge has appended it, so a
// row still there is an entry that may never have been appended. Each is appended now, marked
// `recovered`, unless the log already holds an entry with its journal id. With the audit log in
// PostgreSQL (audit/pg.ts) an entry and the removal of its row are one transaction, so a row
// left is one whose entry is missing, and any instance may settle it under the log's lock.
import { hostname } from 'node:os';
import type { Logger } from '../observability/log.js';
import type { MetadataStore } from '../storage/types.js';
import type { AuditInput } from '../audit/log.js';
import type { AuditTrail, Recovered } from '../audit/trail.js';

/** Rows read per pass. */
const PAGE = 500;
/** How far before the oldest row the log is read back (clocks of processes on one machine may differ a little). */
const CLOCK_SLACK_MS = 5 * 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A row of another machine this old is settled here: that machine may never start again under its name. */
export const FOREIGN_ROW_AGE_MS = 10 * 60_000;

/**
 * Rows this process may settle: written on this machine by a process that is gone, or on another
 * machine long ago. A live local writer appends its own (it may be between commit and append
 * right now); another machine's recent rows belong to its own audit log.
 */
function orphaned(writer: string, at: Date, host: string, now: number): boolean {
  const [h, p] = writer.split(' ');
  if (h !== host) return now - at.getTime() >= FOREIGN_ROW_AGE_MS;
  const pid = Number(p);
  return Number.isSafeInteger(pid) && pid !== process.pid && !alive(pid);
}

/** Appends the entries of orphaned journal rows that the log lacks, then removes the rows. Resolves to how many were appended. */
export async function reconcileJournal(store: MetadataStore, audit: AuditTrail, log: Logger): Promise<number> {
  const host = hostname();
  let appended = 0;
  for (let pass = 0; pass < 1000; pass++) {
    const rows = await store.journal(PAGE);
    const now = Date.now();
    const mine = rows.filter((r) => orphaned(r.writer, r.at, host, now));
    if (mine.length === 0) break;
    const since = Math.min(...mine.map((r) => r.at.getTime())) - CLOCK_SLACK_MS;
    const items = mine.map((r): Recovered => {
      let entry: AuditInput;
      try {
        entry = JSON.parse(r.entry) as AuditInput;
      } catch {
        entry = { actor: { id: 'unknown', name: 'unknown' }, action: 'journal.damaged', outcome: 'success', gun: r.gun, detail: {} };
      }
      return {
        journal: r.id,
        input: { ...entry, detail: { ...entry.detail, journal: r.id, recovered: true, committedAt: r.at.toISOString(), writer: r.writer } },
      };
    });
    // Each entry once, even when two processes start together (AuditTrail.recover).
    appended += await audit.recover(items, since);
    await store.acknowledge(mine.map((r) => r.id));
    if (rows.length < PAGE) break;
  }
  if (appended > 0) log('warn', 'appended audit entries of changes committed before the last stop without them', { entries: appended });
  return appended;
}
