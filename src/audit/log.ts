// The audit log: an append-only JSON Lines file in the data directory. Every entry carries the
// hash of the entry before it (`prev`) and its own hash over its canonical JSON (`hash`), so an
// edited, inserted or removed entry breaks the chain that `verify()` walks. The newest sequence
// number and hash are also kept in a small head file, which catches a truncated tail (a
// fixed-size record, rewritten in place after each append: see overwriteDurable); an
// operator who wants protection against someone rewriting both should record `verify().head`
// somewhere else (the verify endpoint returns it).
//
// Entries never carry secrets: the writer takes typed fields only, and callers pass IDs, names
// and outcomes, never key bytes, passphrases or tokens.
//
// Several processes on one machine may append to one data directory's log: an append runs under
// the state lock (src/state/lock.ts) and takes its sequence number and `prev` from the log's last
// line as it is on disk then, so all appends form one chain. With TRUSTGATE_DATABASE_URL the app
// keeps the chain in PostgreSQL instead (audit/pg.ts), behind the same AuditTrail (audit/trail.ts).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalBytes } from '../core/json/canonical.js';
import { appendFileDurable, overwriteDurable, writeFileDurable } from '../state/durable.js';
import { StateLock } from '../state/lock.js';

export type AuditOutcome = 'success' | 'denied' | 'failure' | 'pending';

export interface AuditActor {
  /** Token ID, or `system` / `anonymous`. */
  id: string;
  name: string;
}

export interface AuditInput {
  actor: AuditActor;
  /** Dotted verb, e.g. `key.export`, `repository.create`, `auth.denied`. */
  action: string;
  outcome: AuditOutcome;
  gun?: string;
  role?: string;
  keyId?: string;
  /** Small, secret-free facts: versions, new key IDs, error codes, pending change IDs. */
  detail?: Record<string, string | number | boolean | string[] | null>;
}

export interface AuditEntry extends AuditInput {
  seq: number;
  time: string;
  /** Hash of the previous entry (64 zeros for the first). */
  prev: string;
  /** sha256 (hex) of the canonical JSON of this entry without `hash`. */
  hash: string;
}

export interface AuditQuery {
  gun?: string;
  /** Token ID or token name. */
  actor?: string;
  action?: string;
  since?: number;
  until?: number;
  outcome?: AuditEntry['outcome'];
  /** Only entries with a lower sequence number (paging back). */
  before?: number;
  limit?: number;
  /**
   * With `since`: read back from the newest entry only as far as the first one older than
   * `since` (the log's times follow its order but for clock steps back), not the whole log.
   */
  recent?: boolean;
}

export interface AuditVerifyResult {
  ok: boolean;
  entries: number;
  head: { seq: number; hash: string };
  /** First sequence number (1-based line) where the chain breaks. */
  brokenAt?: number;
  reason?: string;
}

export const GENESIS = '0'.repeat(64);

export function entryHash(e: Omit<AuditEntry, 'hash'>): string {
  return createHash('sha256').update(canonicalBytes(e)).digest('hex');
}

/** The last line of a file without reading all of it. */
function lastLine(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const size = fstatSync(fd).size;
    let pos = size;
    let tail = '';
    while (pos > 0) {
      const n = Math.min(64 * 1024, pos);
      pos -= n;
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, pos);
      tail = buf.toString('utf8') + tail;
      const lines = tail.split('\n').filter((l) => l.length > 0);
      if (lines.length >= 2 || (pos === 0 && lines.length > 0)) return lines.at(-1);
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Sequence number and hash of the newest entry of a log whose last line is `line`. */
function headOf(line: string | undefined, countLines: () => number): { seq: number; hash: string } {
  if (!line) return { seq: 0, hash: GENESIS };
  try {
    const e = JSON.parse(line) as AuditEntry;
    return { seq: e.seq, hash: e.hash };
  } catch {
    // A damaged tail: keep appending after it; verify() reports the break.
    return { seq: countLines(), hash: createHash('sha256').update(line).digest('hex') };
  }
}

/** The head file's length: its JSON padded with spaces, so each new head overwrites the last in place. */
const HEAD_BYTES = 128;

const splitLines = (text: string) => text.split('\n').filter((l) => l.length > 0);

/** How long repeated refusals of one kind are counted rather than written one by one. */
export const DENIAL_WINDOW_MS = 60_000;
/** Kinds of refusal counted at once; past this, a new kind is counted under one shared entry. */
export const MAX_DENIAL_KINDS = 1024;
/** Longest string a refusal's entry keeps (paths and GUNs come from whoever sent the request). */
export const MAX_DENIAL_STRING = 256;

/** What makes two refusals "the same": fixed, low-cardinality facts (never a path or a GUN). */
export type DenialKind = Record<string, string>;

interface DenialWindow {
  actor: AuditActor;
  action: string;
  kind: DenialKind;
  /** When the window's written entry was appended. */
  start: number;
  /** Refusals counted since, not written. */
  count: number;
  first: number;
  last: number;
}

const clip = (v: string) => (v.length > MAX_DENIAL_STRING ? `${v.slice(0, MAX_DENIAL_STRING)}…` : v);

function clipped(input: AuditInput): AuditInput {
  const out: AuditInput = { ...input, actor: { id: clip(input.actor.id), name: clip(input.actor.name) } };
  if (input.gun !== undefined) out.gun = clip(input.gun);
  if (input.detail) {
    out.detail = Object.fromEntries(
      Object.entries(input.detail).map(([k, v]) => [k, typeof v === 'string' ? clip(v) : Array.isArray(v) ? v.slice(0, 16).map(clip) : v]),
    );
  }
  return out;
}

/**
 * Refusals counted rather than written one by one: at most one entry of each kind (actor, action
 * and `kind`) per DENIAL_WINDOW_MS. Later refusals in the window are counted, and the count is
 * written as one entry (`detail.repeated`, `detail.from`, `detail.to`) once the window is over.
 * Refusals come from whoever can reach the port, with or without a valid token: writing each one
 * would let them grow the log, and hold its lock, as fast as they can send. Counts are per process.
 */
export class DenialWindows {
  private denials = new Map<string, DenialWindow>();
  private timer: NodeJS.Timeout | undefined;

  /** `tick` writes what `due` returns; it is called while windows are open. */
  constructor(private tick: () => void) {}

  /** The entry to write now for this refusal, or undefined when it is only counted. */
  record(input: AuditInput, kind: DenialKind, now: number): AuditInput | undefined {
    let key = JSON.stringify([input.actor.id, input.actor.name, input.action, kind]);
    let entry = input;
    if (!this.denials.has(key) && this.denials.size >= MAX_DENIAL_KINDS) {
      // One shared window, naming no actor or kind: those are what made the table overflow.
      key = '*';
      entry = { ...input, actor: { id: 'various', name: 'various' }, detail: { overflow: true } };
      kind = { overflow: 'true' };
    }
    const w = this.denials.get(key);
    if (w) {
      if (w.count === 0) w.first = now;
      w.count++;
      w.last = now;
      return undefined;
    }
    const written = clipped(entry);
    this.denials.set(key, { actor: written.actor, action: written.action, kind, start: now, count: 0, first: 0, last: 0 });
    if (!this.timer) {
      // Closes windows nobody refuses into again; unref'd, so it never keeps the process alive.
      this.timer = setInterval(() => this.tick(), DENIAL_WINDOW_MS / 4);
      this.timer.unref();
    }
    return written;
  }

  /** The count entries of windows over at `now` (all with no `now`, as at shutdown); forgets them. */
  due(now?: number): AuditInput[] {
    const out: AuditInput[] = [];
    for (const [key, w] of this.denials) {
      if (now !== undefined && now - w.start < DENIAL_WINDOW_MS) continue;
      this.denials.delete(key);
      if (w.count === 0) continue;
      out.push({
        actor: w.actor,
        action: w.action,
        outcome: 'denied',
        detail: { ...w.kind, repeated: w.count, from: new Date(w.first).toISOString(), to: new Date(w.last).toISOString() },
      });
    }
    if (this.denials.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    return out;
  }
}

/** The entry that follows `head` for `input`. */
export function nextEntry(head: { seq: number; hash: string }, input: AuditInput, time: string): AuditEntry {
  const base: Omit<AuditEntry, 'hash'> = {
    seq: head.seq + 1,
    time,
    actor: { id: input.actor.id, name: input.actor.name },
    action: input.action,
    outcome: input.outcome,
    ...(input.gun !== undefined ? { gun: input.gun } : {}),
    ...(input.role !== undefined ? { role: input.role } : {}),
    ...(input.keyId !== undefined ? { keyId: input.keyId } : {}),
    ...(input.detail !== undefined ? { detail: input.detail } : {}),
    prev: head.hash,
  };
  return { ...base, hash: entryHash(base) };
}

/** Whether entry `e` (as read) matches query `q`'s filters, all but `limit`. */
export function matches(e: AuditEntry, q: AuditQuery): boolean {
  if (q.gun !== undefined && e.gun !== q.gun) return false;
  if (q.actor !== undefined && e.actor.id !== q.actor && e.actor.name !== q.actor) return false;
  if (q.action !== undefined && e.action !== q.action && !e.action.startsWith(`${q.action}.`)) return false;
  if (q.outcome !== undefined && e.outcome !== q.outcome) return false;
  if (q.before !== undefined && e.seq >= q.before) return false;
  const t = Date.parse(e.time);
  if (q.since !== undefined && t < q.since) return false;
  if (q.until !== undefined && t > q.until) return false;
  return true;
}

/** Walks a chain: every hash recomputed, every `prev` linked, sequence unbroken. */
export function walkChain(lines: readonly string[]): { n: number; prev: string; fail?: string } {
  let prev = GENESIS;
  let n = 0;
  for (const line of lines) {
    let e: AuditEntry;
    try {
      e = JSON.parse(line) as AuditEntry;
    } catch {
      return { n, prev, fail: 'entry is not JSON' };
    }
    if (e.seq !== n + 1) return { n, prev, fail: `expected sequence number ${n + 1}, found ${e.seq}` };
    if (e.prev !== prev) return { n, prev, fail: 'entry does not link to the previous entry' };
    const { hash, ...rest } = e;
    if (entryHash(rest) !== hash) return { n, prev, fail: 'entry hash does not match its content' };
    prev = hash;
    n++;
  }
  return { n, prev };
}

export class AuditLog {
  readonly path: string;
  private headPath: string;
  /** The state lock appends take (shared with tokens and pending changes in the app). */
  readonly lock: StateLock;
  private windows: DenialWindows;
  /** The log's file as this process left it after its last append, and the head it holds then. */
  private appended: { ino: number; size: number; mtimeMs: number; seq: number; hash: string } | undefined;

  constructor(
    dir: string,
    private now: () => number = Date.now,
    lock?: StateLock,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, 'audit.jsonl');
    this.headPath = join(dir, 'audit.head');
    this.lock = lock ?? new StateLock(dir);
    this.windows = new DenialWindows(() => {
      try {
        this.flushDenials(this.now());
      } catch {
        // A log that cannot be written now (disk full) loses these counts, not the process.
      }
    });
  }

  /**
   * Appends a refusal, windowed (DenialWindows). Returns the entry written, or undefined when the
   * refusal was only counted.
   */
  appendDenial(input: AuditInput, kind: DenialKind): AuditEntry | undefined {
    const now = this.now();
    this.flushDenials(now);
    const write = this.windows.record(input, kind, now);
    return write && this.append(write);
  }

  /**
   * Writes the counts of refusal windows that are over at `now` (all of them with no `now`, as
   * at shutdown) and forgets those windows.
   */
  flushDenials(now?: number): void {
    for (const e of this.windows.due(now)) this.append(e);
  }

  append(input: AuditInput): AuditEntry {
    return this.lock.run(() => {
      // The newest entry as it is on disk now: another process may have appended since (then the
      // file is not as this process left it, and its last line is read).
      const st = statSync(this.path, { throwIfNoEntry: false });
      const mine = this.appended;
      const head =
        st && mine && st.ino === mine.ino && st.size === mine.size && st.mtimeMs === mine.mtimeMs
          ? mine
          : headOf(lastLine(this.path), () => this.readAll().length);
      const entry = nextEntry(head, input, new Date(this.now()).toISOString());
      // On disk before the request is answered; the log before the head, so the head is never ahead.
      appendFileDurable(this.path, JSON.stringify(entry) + '\n');
      const after = statSync(this.path);
      this.appended = { ino: after.ino, size: after.size, mtimeMs: after.mtimeMs, seq: entry.seq, hash: entry.hash };
      const headText = JSON.stringify({ seq: entry.seq, hash: entry.hash }).padEnd(HEAD_BYTES - 1) + '\n';
      if (!overwriteDurable(this.headPath, headText)) writeFileDurable(this.headPath, headText);
      return entry;
    });
  }

  /**
   * The `detail.journal` ids of the entries written at or after `sinceMs`, reading the log
   * backwards only as far as the first entry older than that.
   */
  journalIdsSince(sinceMs: number): Set<string> {
    const out = new Set<string>();
    for (const e of this.newestFirst()) {
      if (Date.parse(e.time) < sinceMs) break;
      const id = e.detail?.journal;
      if (typeof id === 'string') out.add(id);
    }
    return out;
  }

  /** The log's entries newest first, read backwards a chunk at a time (lines not JSON skipped). */
  private *newestFirst(): Generator<AuditEntry> {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    try {
      let pos = fstatSync(fd).size;
      // Bytes of a line whose start is in the part not read yet.
      let carry = Buffer.alloc(0);
      while (pos > 0) {
        const n = Math.min(64 * 1024, pos);
        pos -= n;
        const buf = Buffer.alloc(n);
        readSync(fd, buf, 0, n, pos);
        let chunk = Buffer.concat([buf, carry]);
        if (pos > 0) {
          const nl = chunk.indexOf(10);
          if (nl < 0) {
            carry = chunk;
            continue;
          }
          carry = chunk.subarray(0, nl);
          chunk = chunk.subarray(nl + 1);
        }
        for (const line of splitLines(chunk.toString('utf8')).reverse()) {
          try {
            yield JSON.parse(line) as AuditEntry;
          } catch {
            continue;
          }
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  private readAll(): string[] {
    if (!existsSync(this.path)) return [];
    return splitLines(readFileSync(this.path, 'utf8'));
  }

  /** The log's first `size` bytes (fewer if it shrank, e.g. edited by hand: verify what is there). */
  private readPrefix(size: number): string {
    return readFileSync(this.path).subarray(0, size).toString('utf8');
  }

  query(q: AuditQuery = {}): AuditEntry[] {
    const out: AuditEntry[] = [];
    if (q.recent && q.since !== undefined) {
      for (const e of this.newestFirst()) {
        if (Date.parse(e.time) < q.since) break;
        if (matches(e, q)) out.push(e);
      }
      out.reverse();
      return q.limit !== undefined ? out.slice(-q.limit) : out;
    }
    for (const line of this.readAll()) {
      let e: AuditEntry;
      try {
        e = JSON.parse(line) as AuditEntry;
      } catch {
        continue;
      }
      if (matches(e, q)) out.push(e);
    }
    return q.limit !== undefined ? out.slice(-q.limit) : out;
  }

  /** Walks the whole chain: every hash recomputed, every `prev` linked, sequence unbroken, head matched. */
  verify(): AuditVerifyResult {
    // The head file and the log's length, read together under the lock (an append writes the log,
    // then the head); the log is append-only, so its first `size` bytes can be read after.
    const snap = this.lock.run(() => ({
      size: statSync(this.path, { throwIfNoEntry: false })?.size ?? 0,
      head: existsSync(this.headPath) ? readFileSync(this.headPath, 'utf8') : undefined,
    }));
    const lines = snap.size > 0 ? splitLines(this.readPrefix(snap.size)) : [];
    const last = headOf(lines.at(-1), () => lines.length);
    const { n, prev, fail } = walkChain(lines);
    if (fail) return { ok: false, entries: lines.length, head: last, brokenAt: n + 1, reason: fail };
    if (snap.head !== undefined) {
      try {
        const head = JSON.parse(snap.head) as { seq: number; hash: string };
        if (head.seq !== n || head.hash !== prev) {
          return {
            ok: false,
            entries: n,
            head: { seq: n, hash: prev },
            brokenAt: n + 1,
            reason: `the log ends at entry ${n} but its head records entry ${head.seq}`,
          };
        }
      } catch {
        return { ok: false, entries: n, head: { seq: n, hash: prev }, brokenAt: n + 1, reason: 'head file is damaged' };
      }
    } else if (n > 0) {
      return { ok: false, entries: n, head: { seq: n, hash: prev }, brokenAt: n + 1, reason: 'head file is missing' };
    }
    return { ok: true, entries: n, head: { seq: n, hash: prev } };
  }
}
