// Checks and helpers both store adapters share, so SQLite and PostgreSQL accept and reject
// exactly the same batches.
import { createHash } from 'node:crypto';
import { VersionConflictError, type ChangeQuery, type NewFile } from './types.js';

export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Rejects a batch before any database work: a version that is not a positive safe integer is a
 * caller bug (RangeError); two files with one role and version are a conflict (spec §3.6).
 */
export function checkBatch(files: readonly NewFile[]): void {
  const seen = new Set<string>();
  for (const f of files) {
    if (!Number.isSafeInteger(f.version) || f.version < 1) throw new RangeError(`version of ${f.role} must be a positive safe integer, got ${f.version}`);
    if (!Buffer.isBuffer(f.bytes)) throw new TypeError(`bytes of ${f.role} must be a Buffer`);
    const key = `${f.role}\0${f.version}`;
    if (seen.has(key)) throw new VersionConflictError(f.role, f.version);
    seen.add(key);
  }
}

/**
 * How a changefeed query runs, Go notary's `GetChanges` semantics (spec §2.8): any negative
 * change id, or a negative record count, reads backwards from change id (from the newest when
 * change id is not positive); otherwise forwards after it. `after`/`before` are exclusive.
 */
export function changePlan(q: ChangeQuery): { backwards: boolean; after?: number; before?: number; limit: number } {
  const backwards = q.changeId < 0 || q.records < 0;
  const limit = Math.abs(Math.trunc(q.records));
  if (backwards) return q.changeId > 0 ? { backwards, before: q.changeId, limit } : { backwards, limit };
  return q.changeId > 0 ? { backwards, after: q.changeId, limit } : { backwards, limit };
}
