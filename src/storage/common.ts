// Checks and helpers both store adapters share, so SQLite and PostgreSQL accept and reject
// exactly the same batches.
import { createHash } from 'node:crypto';
import { VersionConflictError, type ChangeQuery, type NewFile, type TrustPin } from './types.js';

export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Rejects a batch before any database work: a version that is not a positive safe integer is a
 * caller bug (RangeError); two files with one role and version are a conflict (spec §3.6).
 */
export function checkBatch(files: readonly NewFile[]): void {
  const seen = new Set<string>();
  for (const f of files) {
    if (!Number.isSafeInteger(f.version) || f.version < 1)
      throw new RangeError(`version of ${f.role} must be a positive safe integer, got ${f.version}`);
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

/** Refuses a pin no verification could have produced (a caller bug). */
export function checkPin(p: TrustPin): void {
  if (!Buffer.isBuffer(p.root) || p.root.length === 0) throw new TypeError('a pin needs the root bytes');
  for (const [role, v] of Object.entries(p.versions)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`pinned version of ${role} must be a positive safe integer, got ${v}`);
  }
}

const maxVersions = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
  Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])].sort().map((r) => [r, Math.max(a[r] ?? 0, b[r] ?? 0)]));

/**
 * What advancePin writes over `stored`: `next` with versions merged by maximum, if `stored` is
 * still the pin the caller verified from (`from`) or already on `next.root`; else undefined.
 */
export function pinAdvance(stored: TrustPin | undefined, from: Buffer | undefined, next: TrustPin): TrustPin | undefined {
  if (stored?.root.equals(next.root)) return { root: stored.root, versions: maxVersions(stored.versions, next.versions) };
  const current = from === undefined ? stored === undefined : stored !== undefined && stored.root.equals(from);
  if (!current) return undefined;
  return { root: next.root, versions: maxVersions(stored?.versions ?? {}, next.versions) };
}

/** Pinned versions as stored (JSON text), and back. */
export const versionsText = (v: Record<string, number>): string => JSON.stringify(maxVersions(v, {}));
export function parseVersions(text: string): Record<string, number> {
  const v = JSON.parse(text) as unknown;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new TypeError('stored pin versions are not an object');
  for (const [role, n] of Object.entries(v))
    if (!Number.isSafeInteger(n)) throw new TypeError(`stored pin version of ${role} is not an integer`);
  return { ...(v as Record<string, number>) };
}
