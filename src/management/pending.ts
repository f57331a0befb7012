// Pending changes: a trust change whose roles still need signatures from other key holders.
// Kept in memory and persisted as one JSON file in the data directory (`pending.json`, 0600,
// replaced atomically), so they survive a restart. Nothing secret is stored: role bodies,
// signatures and public keys only. One instance owns the file; several instances sharing a
// database but not a disk each see their own pending changes (documented limitation).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TufKey } from '../core/crypto/keys.js';
import type { RootBody, Signature, TargetsBody } from '../core/tuf/metadata.js';

/** Signatures that must be present: `threshold` distinct valid ones by `keyids`. */
export interface Requirement {
  /** What the requirement is, e.g. `current root`, `new root`, `targets`. */
  label: string;
  keys: Record<string, TufKey>;
  keyids: string[];
  threshold: number;
}

/** One role file of a change: its body, the signatures so far, and what it needs. */
export interface ChangePart {
  role: string;
  body: RootBody | TargetsBody;
  signatures: Signature[];
  requirements: Requirement[];
}

export interface PendingChange {
  id: string;
  gun: string;
  /** Audit verb of the change, e.g. `tag.add`, `key.rotate`. */
  action: string;
  summary: string;
  parts: ChangePart[];
  /** Keystore keys made for this change: deleted if it never publishes. */
  createdKeyIds: string[];
  /** Keystore keys to delete once it publishes (replaced or revoked keys). */
  retireKeyIds: string[];
  createdBy: { id: string; name: string };
  createdAt: string;
  expiresAt: string;
}

/** A change as it is built: what a pending change records besides who made it and when. */
export type ChangeDraft = Pick<PendingChange, 'gun' | 'action' | 'summary' | 'parts' | 'createdKeyIds' | 'retireKeyIds'>;

/** A new pending change for `draft`, made by `by` at `nowMs`, waiting `ttlMs` for signatures. */
export function pendingChange(draft: ChangeDraft, by: { id: string; name: string }, nowMs: number, ttlMs: number): PendingChange {
  return {
    id: PendingStore.newId(),
    gun: draft.gun,
    action: draft.action,
    summary: draft.summary,
    parts: draft.parts,
    createdKeyIds: draft.createdKeyIds,
    retireKeyIds: draft.retireKeyIds,
    createdBy: { id: by.id, name: by.name },
    createdAt: new Date(nowMs).toISOString(),
    expiresAt: new Date(nowMs + ttlMs).toISOString(),
  };
}

interface PendingFile {
  version: 1;
  changes: PendingChange[];
}

export class PendingStore {
  private changes = new Map<string, PendingChange>();
  readonly path: string;

  constructor(
    dir: string,
    private now: () => number = Date.now,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, 'pending.json');
    if (existsSync(this.path)) {
      for (const c of (JSON.parse(readFileSync(this.path, 'utf8')) as PendingFile).changes) this.changes.set(c.id, c);
    }
  }

  private save(): void {
    const tmp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version: 1, changes: [...this.changes.values()] } satisfies PendingFile) + '\n', { mode: 0o600 });
    renameSync(tmp, this.path);
  }

  static newId(): string {
    return randomBytes(12).toString('hex');
  }

  put(c: PendingChange): void {
    this.changes.set(c.id, structuredClone(c));
    this.save();
  }

  get(id: string): PendingChange | undefined {
    const c = this.changes.get(id);
    return c && structuredClone(c);
  }

  list(filter: { gun?: string } = {}): PendingChange[] {
    return [...this.changes.values()]
      .filter((c) => filter.gun === undefined || c.gun === filter.gun)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
      .map((c) => structuredClone(c));
  }

  remove(id: string): PendingChange | undefined {
    const c = this.changes.get(id);
    if (!c) return undefined;
    this.changes.delete(id);
    this.save();
    return c;
  }

  /** Removes and returns every change whose time is up. */
  takeExpired(): PendingChange[] {
    const t = this.now();
    const out = [...this.changes.values()].filter((c) => Date.parse(c.expiresAt) <= t);
    if (out.length === 0) return [];
    for (const c of out) this.changes.delete(c.id);
    this.save();
    return out;
  }
}
