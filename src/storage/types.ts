// The metadata store port: what the trust service needs from a database. Adapters (SQLite,
// PostgreSQL) implement it; nothing above this line knows SQL.

export interface StoredFile {
  gun: string;
  role: string;
  version: number;
  /** Hex sha256 of `bytes`. */
  sha256: string;
  /** Exactly the bytes that were uploaded or generated. */
  bytes: Buffer;
  createdAt: Date;
}

export interface NewFile {
  role: string;
  version: number;
  bytes: Buffer;
}

export interface Change {
  id: number;
  gun: string;
  version: number;
  sha256: string;
  category: 'update' | 'deletion';
  createdAt: Date;
}

export interface ChangeQuery {
  gun?: string;
  /** 0: from the start; -1: from the newest backwards; otherwise records after (or before) this id. */
  changeId: number;
  /** Positive: that many after changeId; negative: that many before it. */
  records: number;
}

/**
 * What the verifier trusts for a GUN: the root it last verified and the highest version it has
 * verified of each role. It moves only forward (TUF rules) or by an audited trust reset, and a
 * deletion of the GUN's metadata leaves it in place.
 */
export interface TrustPin {
  /** The exact bytes of the pinned root. */
  root: Buffer;
  /** Highest verified version per role (root, timestamp, snapshot, targets, delegations). */
  versions: Record<string, number>;
}

export interface StoredPin extends TrustPin {
  gun: string;
  updatedAt: Date;
}

/**
 * The audit entry of a commit, stored in the commit's own transaction: the edge appends it to
 * the audit log after the commit and then acknowledges it; one left behind (the process died in
 * between) is appended at the next start (src/trust/audit-journal.ts).
 */
export interface JournalRow {
  /** Random, unique; the audit entry carries it as `detail.journal`. */
  id: string;
  gun: string;
  at: Date;
  /** Who wrote it: `host pid` of the process that must append it. */
  writer: string;
  /** The audit entry, as JSON. */
  entry: string;
}

/** What a commit writes to the journal besides its files, in the same transaction. */
export interface JournalWrite {
  add?: Omit<JournalRow, 'gun' | 'at'>;
  /** Rows whose audit entries are appended: removed in the same transaction. */
  ack?: readonly string[];
}

// The database cannot be reached (503); defined with the shared state's pool, which throws it too.
export { StoreUnavailableError } from '../state/pg.js';

/** A commit lost a race or replayed an old version: the caller answers 400 VERSION. */
export class VersionConflictError extends Error {
  override name = 'VersionConflictError';
  constructor(
    readonly role: string,
    readonly version: number,
  ) {
    super(`a newer version of ${role} than ${version} is already stored`);
  }
}

/** What a store's change feed reports (see MetadataStore.follow). */
export interface ChangeFeedListener {
  /** A GUN's trust data (files, or its pin) changed, in this process or another. */
  change(gun: string, kind: 'update' | 'deletion'): void;
  /** Changes may have been missed (the feed was away): drop everything cached. */
  resync(): void;
}

export interface ChangeFeed {
  /** Whether every change committed more than a second ago has been reported. */
  fresh(): boolean;
  close(): void;
}

export interface MetadataStore {
  readonly kind: string;
  /**
   * Changes committed by every process that shares this database, as they commit; only stores
   * made for several instances (PostgreSQL) have it.
   */
  follow?(l: ChangeFeedListener): ChangeFeed;
  /**
   * Runs `fn` holding the lock named `key` across every process that shares this database (only
   * stores made for several instances have it). Released when `fn` settles or the process dies.
   */
  exclusive?<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Highest stored version of a role. */
  latest(gun: string, role: string): Promise<StoredFile | undefined>;
  /**
   * latest() answered at once, for stores that can without I/O (embedded SQLite); `null` when
   * this store cannot. Lets the hot GET path run without a promise per request.
   */
  latestNow?(gun: string, role: string): StoredFile | undefined | null;
  /**
   * Told that another process has committed (a cluster worker's relayed change): the next read
   * looks at the database again, even within a turn whose look it would otherwise reuse.
   */
  committedElsewhere?(): void;
  byVersion(gun: string, role: string, version: number): Promise<StoredFile | undefined>;
  byChecksum(gun: string, role: string, sha256: string): Promise<StoredFile | undefined>;
  /** Highest stored version of every role of a GUN. */
  latestVersions(gun: string): Promise<Map<string, number>>;
  /**
   * Stores all files or none. Each version must be strictly greater than every stored version of
   * its role (else VersionConflictError). Each timestamp appends an `update` change. Resolves to
   * the stored rows, as the read methods would return them. `journal.add` is stored, and the
   * rows `journal.ack` names removed, in the same transaction: all of it or none.
   */
  commit(gun: string, files: readonly NewFile[], now: Date, journal?: JournalWrite): Promise<StoredFile[]>;
  /**
   * Removes every version of every role of exactly this GUN; records a deletion if anything went.
   * The journal is written (as in commit) only when something went.
   */
  deleteGun(gun: string, now: Date, journal?: JournalWrite): Promise<boolean>;
  /** Journal rows not yet acknowledged, oldest first, at most `limit`. */
  journal(limit: number): Promise<JournalRow[]>;
  /** Removes these journal rows (their audit entries are appended). */
  acknowledge(ids: readonly string[]): Promise<void>;
  changes(q: ChangeQuery): Promise<Change[]>;
  /** The GUN's pin; deleteGun leaves it in place. */
  pin(gun: string): Promise<StoredPin | undefined>;
  /**
   * Moves the pin to `next`, atomically, if the stored one is still what the caller verified
   * from: no pin when `from` is undefined, else a pin whose root bytes equal `from`; or a pin
   * already on `next.root`. Versions are merged by maximum, so none ever goes down. Resolves
   * false (nothing written) when another writer moved or reset the pin meanwhile.
   */
  advancePin(gun: string, from: Buffer | undefined, next: TrustPin, now: Date): Promise<boolean>;
  /** The trust reset: replaces the pin with `next`, or removes it; resolves to the pin it replaced. */
  resetPin(gun: string, next: TrustPin | undefined, now: Date): Promise<StoredPin | undefined>;
  /** GUNs with any stored metadata. */
  listGuns(): Promise<string[]>;
  /** Throws when the database cannot be reached. */
  ping(): Promise<void>;
  /**
   * Writes a consistent copy of the whole store to `dest`, a new SQLite file, while it stays in
   * use. Only the embedded store has it; PostgreSQL is backed up with its own tools (pg_dump).
   */
  backup?(dest: string): Promise<void>;
  close(): Promise<void>;
}
