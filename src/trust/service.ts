// The trust service: the application layer between the Notary HTTP routes (and the management
// API, signer and proxy) and the pure TUF core. It resolves "current" metadata through the
// timestamp → snapshot → role hash chain, validates and commits publishes, re-signs expired
// timestamps and server-held snapshots lazily, and hands out server-held keys.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { AuditActor, AuditInput } from '../audit/log.js';
import type { Algorithm, Signer } from '../core/crypto/signer.js';
import { Metadata, metaSha256Hex, type RootBody, type SnapshotBody, type TimestampBody } from '../core/tuf/metadata.js';
import {
  DEFAULT_LIFETIMES,
  planPublish,
  planRefresh,
  type Lifetimes,
  type PlannedFile,
  type RepoState,
  type ServerKeyring,
} from '../core/tuf/update.js';
import type { KeyRecord, KeyStore } from '../keystore/types.js';
import {
  VersionConflictError,
  type ChangeFeed,
  type ChangeQuery,
  type JournalWrite,
  type MetadataStore,
  type StoredFile,
} from '../storage/types.js';

export interface TrustServiceOptions {
  lifetimes?: Lifetimes;
  serverKeyAlgorithm?: Algorithm;
  now?: () => number;
}

export type ServerRole = 'snapshot' | 'timestamp';

export interface ChangeEvent {
  gun: string;
  kind: 'update' | 'deletion';
  /** Heard from the store's change feed (every process sharing the database hears it too). */
  fromFeed?: boolean;
}

/** The current timestamp, the snapshot it names, and that snapshot's parsed body. */
interface ChainHead {
  ts: StoredFile;
  snap?: StoredFile;
  snapMd?: Metadata<SnapshotBody>;
  /** Expiry instants of the timestamp and snapshot, parsed once (NaN never counts as expired). */
  tsExpiresMs: number;
  snapExpiresMs: number;
  /** Role files found through this head's snapshot hashes; immutable while the head is current. */
  roles: Map<string, StoredFile>;
  /** Whether this head sits in the per-GUN cache (only complete heads do). */
  cached: boolean;
}

/**
 * Who made a change and how, for its audit entry: a commit given one journals that entry in its
 * own transaction, so a process that dies before appending it leaves it for the next start.
 * After appending (with `detail.journal` = `id`), the caller calls TrustService.acknowledge(id).
 */
export interface AuditNote {
  id: string;
  actor: AuditActor;
  action: string;
  role?: string;
  keyId?: string;
  detail?: AuditInput['detail'];
}

export const auditNote = (actor: AuditActor, action: string, more: Omit<AuditNote, 'id' | 'actor' | 'action'> = {}): AuditNote => ({
  id: randomUUID(),
  actor,
  action,
  ...more,
});

/**
 * The audit entry of a change: the note's facts, the GUN, the files stored (`role@version`), and
 * the journal id. `detail` keys the note sets win over `files`.
 */
export function journalEntry(gun: string, note: AuditNote, files?: readonly { role: string; version: number }[]): AuditInput {
  return {
    actor: note.actor,
    action: note.action,
    outcome: 'success',
    gun,
    ...(note.role !== undefined ? { role: note.role } : {}),
    ...(note.keyId !== undefined ? { keyId: note.keyId } : {}),
    detail: { ...(files ? { files: files.map((f) => `${f.role}@${f.version}`) } : {}), ...note.detail, journal: note.id },
  };
}

/** This process, as journal rows name their writer: only it may append their entries while it lives. */
export const JOURNAL_WRITER = `${hostname()} ${process.pid}`;

/** Acknowledgements ride on the next commit's transaction, or are written alone after this long. */
const ACK_FLUSH_MS = 1000;
/** At most this many acknowledgements ride on one commit. */
const ACK_BATCH = 256;

/** How many GUNs' chain heads the read path keeps in memory. */
const MAX_CACHED_HEADS = 512;

/** Parsed metadata is immutable per hash, so parses are cached by sha256 (bounded). */
class ParseCache {
  private m = new Map<string, Metadata>();
  constructor(private max = 2048) {}
  get<T extends Metadata['body']>(f: StoredFile): Metadata<T> {
    const hit = this.peek<T>(f);
    if (hit) return hit;
    const md = Metadata.parse<T>(f.role, f.bytes);
    if (this.m.size >= this.max) this.m.delete(this.m.keys().next().value!);
    this.m.set(f.sha256, md);
    return md;
  }
  /** The cached parse of `f`, without parsing. */
  peek<T extends Metadata['body']>(f: StoredFile): Metadata<T> | undefined {
    return this.m.get(f.sha256) as Metadata<T> | undefined;
  }
}

export class TrustService {
  /** `change`: a GUN's trust data changed; `resync`: changes may have been missed, drop everything cached. */
  readonly events = new EventEmitter<{ change: [ChangeEvent]; resync: [] }>();
  private feed: ChangeFeed | undefined;
  private parses = new ParseCache();
  /**
   * Chain heads by GUN, so a GET does not walk timestamp → snapshot → role in the store each
   * time. The store stays the source of truth: every read still fetches the newest timestamp
   * and uses a head only while that timestamp is the one it was built from (so commits by other
   * processes are seen by any request sent after they were answered: see the SQLite store's
   * latestNow); this process's own commits and deletions also drop it.
   */
  private heads = new Map<string, ChainHead>();
  private refreshing = new Map<string, Promise<void>>();
  private lifetimes: Lifetimes;
  /** Journal rows whose audit entries are appended, not yet removed. */
  private acks: string[] = [];
  private ackTimer: NodeJS.Timeout | undefined;
  private algorithm: Algorithm;
  private now: () => number;

  constructor(
    readonly store: MetadataStore,
    readonly keys: KeyStore,
    opts: TrustServiceOptions = {},
  ) {
    this.lifetimes = opts.lifetimes ?? DEFAULT_LIFETIMES;
    this.algorithm = opts.serverKeyAlgorithm ?? 'ecdsa';
    this.now = opts.now ?? Date.now;
    this.events.on('change', (e) => this.heads.delete(e.gun));
    // Changes made by other instances (and this one) on a shared database.
    this.feed = store.follow?.({
      change: (gun, kind) => this.events.emit('change', { gun, kind, fromFeed: true }),
      resync: () => {
        this.heads.clear();
        this.events.emit('resync');
      },
    });
  }

  /**
   * Whether data cached here may still be served without asking the store: always for a store
   * without a change feed (one instance), else while the feed is known to deliver every change
   * within a second.
   */
  fresh(): boolean {
    return this.feed?.fresh() ?? true;
  }

  /** Signers for a GUN's server-held keys; a key of another GUN is never used. */
  keyring(gun: string): ServerKeyring {
    return {
      signersFor: (role, keyids) => this.heldSigners(gun, keyids, role),
    };
  }

  /**
   * Signers the keystore holds among `keyids`, limited to keys stored for this GUN (and, when
   * given, this role): a key of another repository is never used.
   */
  async heldSigners(gun: string, keyids: readonly string[], role?: string): Promise<Signer[]> {
    const out: Signer[] = [];
    for (const id of keyids) {
      const rec = await this.keys.get(id);
      if (!rec || rec.gun !== gun || (role !== undefined && rec.role !== role)) continue;
      const s = await this.keys.signer(id);
      if (s) out.push(s);
    }
    return out;
  }

  /** Keeps `head` as the GUN's newest, dropping the least recently cached GUN when full. */
  private cacheHead(gun: string, head: ChainHead): void {
    this.heads.delete(gun);
    if (this.heads.size >= MAX_CACHED_HEADS) this.heads.delete(this.heads.keys().next().value!);
    this.heads.set(gun, head);
  }

  /** The cached head of a GUN if it was built from timestamp `ts`. */
  private cachedHead(gun: string, ts: StoredFile): ChainHead | undefined {
    const hit = this.heads.get(gun);
    // The store may hand back the very row object it gave before (while its database is unchanged).
    if (
      hit &&
      (hit.ts === ts ||
        (hit.ts.sha256 === ts.sha256 && hit.ts.version === ts.version && hit.ts.createdAt.getTime() === ts.createdAt.getTime()))
    )
      return hit;
    return undefined;
  }

  /** The current timestamp, the snapshot it names, and that snapshot's parsed body. */
  private async chainHead(gun: string): Promise<ChainHead | undefined> {
    const ts = await this.store.latest(gun, 'timestamp');
    const hit = this.heads.get(gun);
    if (!ts) {
      if (hit) this.heads.delete(gun);
      return undefined;
    }
    const cached = this.cachedHead(gun, ts);
    if (cached) return cached;
    const tsMd = this.parses.get<TimestampBody>(ts);
    const sha = metaSha256Hex(tsMd.body.meta.snapshot);
    const snap = sha ? await this.store.byChecksum(gun, 'snapshot', sha) : undefined;
    const snapMd = snap && this.parses.get<SnapshotBody>(snap);
    const head: ChainHead = {
      ts,
      ...(snap ? { snap, snapMd } : {}),
      tsExpiresMs: tsMd.expiresMs,
      snapExpiresMs: snapMd ? snapMd.expiresMs : NaN,
      roles: new Map(),
      // A timestamp whose snapshot is missing is not cached: the next read looks again.
      cached: snap !== undefined,
    };
    if (head.cached) this.cacheHead(gun, head);
    else if (hit) this.heads.delete(gun);
    return head;
  }

  /** A role's current file by the hash chain; falls back to the newest version when the chain lacks it. */
  private async resolve(gun: string, role: string, head?: ChainHead): Promise<StoredFile | undefined> {
    if (role === 'timestamp') return head?.ts;
    if (role === 'snapshot') return head?.snap;
    const known = head?.roles.get(role);
    if (known) return known;
    const sha = metaSha256Hex(head?.snapMd?.body.meta[role]);
    if (sha) {
      const f = await this.store.byChecksum(gun, role, sha);
      if (f && head!.cached) head!.roles.set(role, f);
      return f;
    }
    return role === 'root' ? this.store.latest(gun, role) : undefined;
  }

  /** Everything publish validation needs to know about the stored repository. */
  async state(gun: string): Promise<RepoState> {
    const head = await this.chainHead(gun);
    const targets = new Map<string, Buffer>();
    const parsed = new Map<Buffer, Metadata>();
    for (const role of Object.keys(head?.snapMd?.body.meta ?? {})) {
      if (role === 'root') continue;
      const f = await this.resolve(gun, role, head);
      if (f) {
        targets.set(role, f.bytes);
        // Planning needs a targets file only as the parent of an uploaded delegation: reuse a
        // parse the cache already has, but do not parse one (targets.json lists every tag).
        this.addParse(parsed, f, false);
      }
    }
    const root = await this.resolve(gun, 'root', head);
    for (const f of [root, head?.snap, head?.ts]) if (f) this.addParse(parsed, f, true);
    return {
      root: root?.bytes,
      snapshot: head?.snap?.bytes,
      timestamp: head?.ts.bytes,
      targets,
      latestVersions: await this.store.latestVersions(gun),
      parsed,
    };
  }

  /**
   * Adds the cached parse of a stored file (parsing it first when `parse`), so a publish parses
   * only what it uploads. A file that does not parse is left out: planning then parses it
   * itself and reports the error it expects there.
   */
  private addParse(out: Map<Buffer, Metadata>, f: StoredFile, parse: boolean): void {
    let md: Metadata | undefined;
    try {
      md = parse ? this.parses.get(f) : this.parses.peek(f);
    } catch {
      return;
    }
    // The cache is by sha256; the bytes are compared too (a memcmp).
    if (md && md.role === f.role && (md.bytes === f.bytes || md.bytes.equals(f.bytes))) out.set(f.bytes, md);
  }

  /** The journal writes of a change: its entry (with a note) and the acknowledgements waiting. */
  private journalWrite(gun: string, note: AuditNote | undefined, files?: readonly PlannedFile[]): JournalWrite {
    const ack = this.acks.splice(0, ACK_BATCH);
    return {
      ...(ack.length ? { ack } : {}),
      ...(note ? { add: { id: note.id, writer: JOURNAL_WRITER, entry: JSON.stringify(journalEntry(gun, note, files)) } } : {}),
    };
  }

  /** Acknowledgements of a write that failed go back in the queue. */
  private requeue(j: JournalWrite): void {
    if (j.ack) this.acks.unshift(...j.ack);
  }

  /** The audit entry of journal row `id` is appended: the row goes, with the next commit or soon. */
  acknowledge(id: string): void {
    this.acks.push(id);
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      this.flushAcks().catch(() => undefined); // the rows stay; the next start finds their entries
    }, ACK_FLUSH_MS).unref();
  }

  /** Removes the acknowledged journal rows now (at shutdown). */
  async flushAcks(): Promise<void> {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const ids = this.acks.splice(0);
    if (ids.length === 0) return;
    try {
      await this.store.acknowledge(ids);
    } catch (e) {
      this.acks.unshift(...ids);
      throw e;
    }
  }

  private async commit(gun: string, files: PlannedFile[], note?: AuditNote): Promise<void> {
    const before = this.heads.get(gun);
    const journal = this.journalWrite(gun, note, files);
    let stored: StoredFile[];
    try {
      stored = await this.store.commit(gun, files, new Date(this.now()), journal);
    } catch (e) {
      this.requeue(journal);
      throw e;
    }
    this.events.emit('change', { gun, kind: 'update' });
    this.headAfterCommit(gun, stored, before);
  }

  /**
   * The chain head a commit has just made, built from the rows the store wrote rather than read back:
   * the next publish's state() and the next GETs then need no lookups by checksum. The next read
   * still compares it with the store's newest timestamp, so a commit by anyone else wins.
   */
  private headAfterCommit(gun: string, files: StoredFile[], before: ChainHead | undefined): void {
    const ts = files.find((f) => f.role === 'timestamp');
    if (!ts) return;
    const tsMd = this.parses.get<TimestampBody>(ts);
    const snap = files.find((f) => f.role === 'snapshot') ?? before?.snap;
    if (!snap || snap.sha256 !== metaSha256Hex(tsMd.body.meta.snapshot)) return;
    const snapMd = this.parses.get<SnapshotBody>(snap);
    const roles = new Map<string, StoredFile>();
    for (const [role, fm] of Object.entries(snapMd.body.meta)) {
      const f = files.find((x) => x.role === role) ?? before?.roles.get(role);
      if (f && f.sha256 === metaSha256Hex(fm)) roles.set(role, f);
    }
    this.cacheHead(gun, { ts, snap, snapMd, tsExpiresMs: tsMd.expiresMs, snapExpiresMs: snapMd.expiresMs, roles, cached: true });
  }

  /**
   * Validates and stores an upload; throws TufValidationError or VersionConflictError. With a
   * note, its audit entry is journaled with the files (see AuditNote).
   */
  async publish(gun: string, uploads: ReadonlyMap<string, Buffer>, note?: AuditNote): Promise<PlannedFile[]> {
    const files = await planPublish(gun, uploads, await this.state(gun), this.keyring(gun), this.now(), this.lifetimes);
    await this.commit(gun, files, note);
    return files;
  }

  /**
   * Re-signs an expired timestamp or server snapshot, once at a time per GUN. Not journaled: no
   * caller changes anything (nothing is audited for it); the changefeed records it.
   */
  private async refresh(gun: string): Promise<void> {
    const running = this.refreshing.get(gun);
    if (running) return running;
    const p = (async () => {
      const files = await planRefresh(await this.state(gun), this.keyring(gun), this.now(), this.lifetimes);
      if (files.length === 0) return;
      try {
        await this.commit(gun, files);
      } catch (e) {
        if (!(e instanceof VersionConflictError)) throw e; // another process refreshed first: use its files
      }
    })().finally(() => this.refreshing.delete(gun));
    this.refreshing.set(gun, p);
    return p;
  }

  /** Whether the current timestamp or server snapshot is due for re-signing. */
  private stale(head: ChainHead): boolean {
    const now = this.now();
    if (head.tsExpiresMs <= now) return true;
    return !head.snapMd || head.snapExpiresMs <= now;
  }

  /** Current metadata for GET `role.json`; timestamp and snapshot are refreshed first if due. */
  async current(gun: string, role: string): Promise<StoredFile | undefined> {
    let head = await this.chainHead(gun);
    if (head && (role === 'timestamp' || role === 'snapshot') && this.stale(head)) {
      await this.refresh(gun);
      head = await this.chainHead(gun);
    }
    // What the head already knows is answered without another await (the hot GET path).
    if (head) {
      if (role === 'timestamp') return head.ts;
      const known = role === 'snapshot' ? head.snap : head.roles.get(role);
      if (known) return known;
      if (role === 'snapshot') return undefined;
    }
    return this.resolve(gun, role, head);
  }

  /**
   * current() answered at once when everything it needs is in memory (a store that answers
   * latestNow, this GUN's head cached and fresh, the role already resolved); `null` means "call
   * current()". The answer is the same file current() would give at this instant.
   */
  currentNow(gun: string, role: string): StoredFile | null {
    const ts = this.store.latestNow?.(gun, 'timestamp');
    if (!ts) return null;
    const head = this.cachedHead(gun, ts);
    if (!head) return null;
    if (role === 'timestamp' || role === 'snapshot') {
      if (this.stale(head)) return null;
      return (role === 'timestamp' ? head.ts : head.snap) ?? null;
    }
    return head.roles.get(role) ?? null;
  }

  byVersion(gun: string, role: string, version: number) {
    return this.store.byVersion(gun, role, version);
  }
  byChecksum(gun: string, role: string, sha256: string) {
    return this.store.byChecksum(gun, role, sha256);
  }

  /**
   * The server-held key for GET `snapshot.key`/`timestamp.key`: the first key of the root's role
   * that the server holds; otherwise the newest key made for this GUN and role (so repeated GETs
   * do not pile up keys, unlike Go notary); else a new key.
   */
  async serverKey(gun: string, role: ServerRole): Promise<KeyRecord> {
    return (await this.serverKeyOrNew(gun, role)).key;
  }

  /** serverKey(), and whether it made the key just now. */
  async serverKeyOrNew(gun: string, role: ServerRole): Promise<{ key: KeyRecord; created: boolean }> {
    const rootFile = await this.current(gun, 'root');
    const held = await this.keys.list({ gun, role });
    if (rootFile) {
      const root = this.parses.get<RootBody>(rootFile).body;
      for (const id of root.roles[role].keyids) {
        const rec = held.find((k) => k.id === id);
        if (rec) return { key: rec, created: false };
      }
    }
    const last = held.at(-1);
    return last ? { key: last, created: false } : { key: await this.keys.generate(gun, role, this.algorithm), created: true };
  }

  /** POST `*.key`: always a new key, used once a published root lists it. */
  rotateServerKey(gun: string, role: ServerRole): Promise<KeyRecord> {
    return this.keys.generate(gun, role, this.algorithm);
  }

  /** Deletes a GUN's metadata; with a note, its audit entry is journaled when anything went. */
  async deleteGun(gun: string, note?: AuditNote): Promise<boolean> {
    const journal = this.journalWrite(gun, note);
    let removed: boolean;
    try {
      removed = await this.store.deleteGun(gun, new Date(this.now()), journal);
    } catch (e) {
      this.requeue(journal);
      throw e;
    }
    if (removed) this.events.emit('change', { gun, kind: 'deletion' });
    return removed;
  }

  changes(q: ChangeQuery) {
    return this.store.changes(q);
  }
}
