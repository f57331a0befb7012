// Pending changes: a trust change whose roles still need signatures from other key holders.
// Persisted as one JSON file in the data directory (`pending.json`, 0600, replaced atomically),
// so they survive a restart. Nothing secret is stored: role bodies, signatures and public keys
// only. Several processes on one machine may share the file: every change to it runs under the
// state lock (src/state/lock.ts) on the file as it is then, and reads reload it when another
// process changed it. With TRUSTGATE_DATABASE_URL the app keeps them in PostgreSQL instead
// (state/pending-records.ts), behind the same `PendingChangeStore` interface.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TufKey } from '../core/crypto/keys.js';
import { canonicalBytes } from '../core/json/canonical.js';
import { countValidSignatures, type RootBody, type Signature, type TargetsBody } from '../core/tuf/metadata.js';
import { StateLock } from '../state/lock.js';
import type { PendingRecords } from '../state/pending-records.js';
import { SharedFile } from '../state/shared-file.js';

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

/** Distinct valid signatures `p` still lacks (the largest shortfall of its requirements). */
export function partMissing(p: ChangePart, message: Buffer = canonicalBytes(p.body)): number {
  let missing = 0;
  for (const r of p.requirements) {
    const valid = countValidSignatures(message, p.signatures, r.keys, r.keyids);
    missing = Math.max(missing, r.threshold - valid.size);
  }
  return Math.max(0, missing);
}

/** Every key whose signature counts for some requirement of `p`. */
export function requiredKeyIds(p: ChangePart): string[] {
  return [...new Set(p.requirements.flatMap((r) => r.keyids))];
}

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

/** Where the change pipeline keeps pending changes: the data directory (filePending) or PostgreSQL. */
export type PendingChangeStore = PendingRecords<PendingChange>;

/** The data directory's `pending.json` as a PendingChangeStore. */
export function filePending(store: PendingStore): PendingChangeStore {
  return {
    put: async (c) => store.put(c),
    update: async (id, fn) => store.update(id, fn),
    get: async (id) => store.get(id),
    list: async (filter) => store.list(filter),
    remove: async (id) => store.remove(id),
    takeExpired: async () => store.takeExpired(),
  };
}

interface PendingFile {
  version: 1;
  changes: PendingChange[];
}

export class PendingStore {
  private file: SharedFile<Map<string, PendingChange>>;
  readonly path: string;
  /** The state lock its writes take (shared with tokens and the audit log in the app). */
  readonly lock: StateLock;

  constructor(
    dir: string,
    private now: () => number = Date.now,
    lock?: StateLock,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, 'pending.json');
    this.lock = lock ?? new StateLock(dir);
    this.file = new SharedFile<Map<string, PendingChange>>(this.path, this.lock, {
      empty: () => new Map(),
      parse: (text) => new Map((JSON.parse(text) as PendingFile).changes.map((c) => [c.id, c])),
      format: (m) => JSON.stringify({ version: 1, changes: [...m.values()] } satisfies PendingFile) + '\n',
    });
  }

  private get changes(): ReadonlyMap<string, PendingChange> {
    return this.file.read();
  }

  static newId(): string {
    return randomBytes(12).toString('hex');
  }

  /** Adds `c`, or replaces the change with its ID. */
  put(c: PendingChange): void {
    const copy = structuredClone(c);
    this.file.update((m) => {
      m.set(copy.id, copy);
      return { changed: true, result: undefined };
    });
  }

  /**
   * Replaces change `id` with what `fn` makes of it as it is on disk now (under the lock, so a
   * change another process made meanwhile is seen); undefined, and nothing written, when the
   * change is gone (published, cancelled or expired elsewhere) or `fn` returns undefined.
   */
  update(id: string, fn: (current: PendingChange) => PendingChange | undefined): PendingChange | undefined {
    return this.file.update((m) => {
      const cur = m.get(id);
      const next = cur && fn(structuredClone(cur));
      if (!next) return { changed: false, result: undefined };
      m.set(id, structuredClone({ ...next, id }));
      return { changed: true, result: structuredClone(next) };
    });
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

  /** Removes change `id`; returns it, or undefined when it was not there (so of several processes one gets it). */
  remove(id: string): PendingChange | undefined {
    return this.file.update((m) => {
      const c = m.get(id);
      if (!c) return { changed: false, result: undefined };
      m.delete(id);
      return { changed: true, result: c };
    });
  }

  /** Removes and returns every change whose time is up (each to one process only). */
  takeExpired(): PendingChange[] {
    const t = this.now();
    // Every pending read sweeps first: take the lock only when something is due.
    if (![...this.changes.values()].some((c) => Date.parse(c.expiresAt) <= t)) return [];
    return this.file.update((m) => {
      const out = [...m.values()].filter((c) => Date.parse(c.expiresAt) <= t);
      for (const c of out) m.delete(c.id);
      return { changed: out.length > 0, result: out };
    });
  }
}
