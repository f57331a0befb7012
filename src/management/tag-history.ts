// When each tag of a targets role was signed as it is now. Metadata records no signing time, so
// it is derived from the stored versions of the role: the time the server stored the first
// version of the unbroken run (ending at the current one) that lists the tag with the same
// hashes and length. Found by reading older versions back until every tag is placed, within a
// bound; a run that reaches past the bound (or past a version no longer stored) is reported as
// "at or before" the oldest version read. Kept per role file, and extended from the kept answer
// when a newer version appears, so a repository is read back once, not on every page.
import { BoundedMap } from '../core/bounded-map.js';
import type { FileMeta } from '../core/tuf/metadata.js';
import type { StoredFile } from '../storage/types.js';
import type { TrustService } from '../trust/service.js';

/** How far back one derivation reads: this many older versions, or this many bytes of them. */
export const HISTORY_MAX_VERSIONS = 200;
export const HISTORY_MAX_BYTES = 32 * 1024 * 1024;
/** Role files whose answers are kept. */
const MAX_KEPT = 4096;

export interface SignedSince {
  /** Milliseconds since the epoch. */
  at: number;
  /** false: signed at or before `at` (the run reaches past what was read). */
  exact: boolean;
}

interface Kept {
  sha256: string;
  version: number;
  /** Per tag: its fingerprint in that file, and since when. */
  tags: Map<string, { fp: string; since: SignedSince }>;
}

/** What a target must keep to count as the same signature: its length and hashes. */
function fingerprint(fm: FileMeta | undefined): string | undefined {
  if (!fm || typeof fm !== 'object') return undefined;
  const hashes = Object.entries(fm.hashes ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  return `${fm.length}|${hashes.join(',')}`;
}

/** The targets of an older stored version (trusted when it was published; only read here). */
function targetsOf(f: StoredFile): Record<string, FileMeta> | undefined {
  try {
    const doc = JSON.parse(f.bytes.toString('utf8')) as { signed?: { targets?: Record<string, FileMeta> } };
    const t = doc.signed?.targets;
    return t && typeof t === 'object' ? t : undefined;
  } catch {
    return undefined;
  }
}

export class TagHistory {
  private kept = new BoundedMap<string, Kept>(MAX_KEPT);

  constructor(private trust: TrustService) {}

  /** Since when each target of `current` (the role's current file) is signed as it is. */
  async signedSince(gun: string, current: StoredFile): Promise<Map<string, SignedSince>> {
    const key = `${gun}\n${current.role}`;
    const prev = this.kept.get(key);
    if (prev?.sha256 === current.sha256) return new Map([...prev.tags].map(([t, e]) => [t, e.since]));
    const targets = targetsOf(current) ?? {};
    const open = new Map<string, string>();
    for (const [tag, fm] of Object.entries(targets)) open.set(tag, fingerprint(fm)!);
    const found = new Map<string, { fp: string; since: SignedSince }>();
    const place = (tag: string, since: SignedSince) => {
      found.set(tag, { fp: open.get(tag)!, since });
      open.delete(tag);
    };
    /** The oldest version read so far in which every open tag is still as it is now. */
    let newer = current;
    let read = 0;
    let bytes = 0;
    let exactAtEnd = false;
    for (let v = current.version - 1; open.size > 0; v--) {
      if (v < 1) {
        exactAtEnd = true; // the run starts at the role's first version
        break;
      }
      if (read >= HISTORY_MAX_VERSIONS || bytes >= HISTORY_MAX_BYTES) break;
      const f = await this.trust.byVersion(gun, current.role, v);
      if (!f) break; // not stored (any more): only "at or before" is known
      read++;
      bytes += f.bytes.length;
      if (prev && prev.version === f.version && prev.sha256 === f.sha256) {
        // The answer kept for this very file: a tag unchanged since then keeps its time.
        for (const [tag, fp] of [...open]) {
          const k = prev.tags.get(tag);
          place(tag, k && k.fp === fp ? k.since : { at: newer.createdAt.getTime(), exact: true });
        }
        break;
      }
      const older = targetsOf(f);
      if (!older) break;
      for (const [tag, fp] of [...open]) if (fingerprint(older[tag]) !== fp) place(tag, { at: newer.createdAt.getTime(), exact: true });
      newer = f;
    }
    for (const tag of [...open.keys()]) place(tag, { at: newer.createdAt.getTime(), exact: exactAtEnd });
    this.kept.set(key, { sha256: current.sha256, version: current.version, tags: found });
    return new Map([...found].map(([t, e]) => [t, e.since]));
  }
}
