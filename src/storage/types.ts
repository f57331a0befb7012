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

/** A commit lost a race or replayed an old version: the caller answers 400 VERSION. */
export class VersionConflictError extends Error {
  override name = 'VersionConflictError';
  constructor(readonly role: string, readonly version: number) {
    super(`a newer version of ${role} than ${version} is already stored`);
  }
}

export interface MetadataStore {
  readonly kind: string;
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
   * the stored rows, as the read methods would return them.
   */
  commit(gun: string, files: readonly NewFile[], now: Date): Promise<StoredFile[]>;
  /** Removes every version of every role of exactly this GUN; records a deletion if anything went. */
  deleteGun(gun: string, now: Date): Promise<boolean>;
  changes(q: ChangeQuery): Promise<Change[]>;
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
