// Management API bearer tokens. A token is `tgt_` + 32 random bytes (base64url); only its
// sha256 is stored, in `<dataDir>/tokens.json` (0600). Scopes:
//   admin               everything
//   signer:<pattern>    read, and sign targets and delegations, in repositories the pattern matches
//   reader[:<pattern>]  read (all repositories, or those the pattern matches)
// A signer token may also name keystore key IDs (`keyIds`) it may sign with; without them it can
// only upload signatures made elsewhere. Admin tokens may sign with every key the server holds.
//
// GUN patterns are those of src/core/tuf/gun-pattern.ts: fully anchored, `*` inside one path
// segment, a segment that is exactly `**` for one or more whole segments. GUNs that are not valid
// (`..`, empty segments) never reach the matcher.
//
// Several processes on one machine may share the data directory: creates and revokes run under
// the state lock (src/state/lock.ts) on the file as it is then, and every lookup first reloads
// the file if another process changed it, so a revoked token stops working everywhere on the
// next request. With TRUSTGATE_DATABASE_URL the app keeps tokens in PostgreSQL instead
// (tokens-pg.ts), behind the same `Tokens` interface, so instances on different machines share them.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isValidGun } from '../core/tuf/gun.js';
import { GunPatternError, compileGunPattern, type GunPattern } from '../core/tuf/gun-pattern.js';
import { writeFileDurable } from '../state/durable.js';
import { StateLock } from '../state/lock.js';
import { SharedFile } from '../state/shared-file.js';

export type Scope = 'admin' | 'reader' | `reader:${string}` | `signer:${string}`;

export interface TokenRecord {
  id: string;
  name: string;
  scopes: Scope[];
  /** Keystore key IDs a signer token may sign with. */
  keyIds?: string[];
  /** sha256 (hex) of the token string. */
  hash: string;
  createdAt: string;
  createdBy: string;
  expiresAt?: string;
}

export type TokenInfo = Omit<TokenRecord, 'hash'>;

interface TokenFile {
  version: 1;
  tokens: TokenRecord[];
}

export class ScopeError extends Error {
  override name = 'ScopeError';
}

/** Checks a GUN pattern (src/core/tuf/gun-pattern.ts); a bad one throws ScopeError. */
export function validatePattern(pattern: string): void {
  compilePattern(pattern);
}

function compilePattern(pattern: string): GunPattern {
  try {
    return compileGunPattern(pattern);
  } catch (e) {
    if (e instanceof GunPatternError) throw new ScopeError(e.message);
    throw e;
  }
}

export function matchGun(pattern: string, gun: string): boolean {
  return compilePattern(pattern).test(gun);
}

export function validateScope(s: string): Scope {
  if (s === 'admin' || s === 'reader') return s;
  const m = /^(reader|signer):(.+)$/.exec(s);
  if (!m) throw new ScopeError(`unknown scope ${JSON.stringify(s)}: use admin, reader, reader:<pattern> or signer:<pattern>`);
  validatePattern(m[2]!);
  return s as Scope;
}

export type Permission = 'admin' | 'sign' | 'read';

/** Whether scopes grant `perm` (on `gun`, for sign and read). Admin needs the `admin` scope. */
export function allows(scopes: readonly Scope[], perm: Permission, gun?: string): boolean {
  if (scopes.includes('admin')) return true;
  if (gun !== undefined && !isValidGun(gun)) return false; // `..` and friends never match a pattern
  if (perm === 'admin') return false;
  for (const s of scopes) {
    if (s === 'reader') {
      if (perm === 'read') return true;
      continue;
    }
    const i = s.indexOf(':');
    const kind = s.slice(0, i);
    const pattern = s.slice(i + 1);
    if (gun === undefined || !matchGun(pattern, gun)) continue;
    if (kind === 'signer') return true;
    if (kind === 'reader' && perm === 'read') return true;
  }
  return false;
}

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export function newTokenString(): string {
  return `tgt_${randomBytes(32).toString('base64url')}`;
}

export class LastAdminTokenError extends Error {
  override name = 'LastAdminTokenError';
}

export type NewToken = { name: string; scopes: Scope[]; keyIds?: string[]; expiresInSeconds?: number; createdBy: string };

/** The app's token store: the data directory's file (fileTokens) or PostgreSQL (PgTokens). */
export interface Tokens {
  /** Makes a token; the returned `token` string is the only copy of the secret. */
  create(opts: NewToken): Promise<{ token: string; info: TokenInfo }>;
  /** The record of a presented token, if it exists and has not expired, as stored now. */
  authenticate(token: string): Promise<TokenRecord | undefined>;
  list(): Promise<TokenInfo[]>;
  get(id: string): Promise<TokenInfo | undefined>;
  /**
   * Revokes token `id`; false when there is none. With `keepAnAdmin`, throws LastAdminTokenError
   * instead when it is the last active admin token (checked and revoked atomically).
   */
  revoke(id: string, opts?: { keepAnAdmin?: boolean }): Promise<boolean>;
  /**
   * Makes an admin token when there is no token at all, once among every process sharing the
   * store; `persist` (writing the token to a file) runs before that is final. Resolves to the
   * token made, or undefined.
   */
  bootstrap(persist: (token: string) => void): Promise<{ token: string; info: TokenInfo } | undefined>;
  /**
   * Revokes every admin token and makes a new one, in one step among every process sharing the
   * store; `persist` runs before that is final. Resolves to the new token and the revoked IDs.
   */
  resetAdmins(opts: NewToken, persist: (token: string) => void): Promise<AdminReset>;
  close?(): Promise<void>;
}

export interface AdminReset {
  token: string;
  info: TokenInfo;
  revoked: string[];
}

/** A new token record and its secret. */
export function newTokenRecord(opts: NewToken, nowMs: number): { token: string; rec: TokenRecord } {
  const token = newTokenString();
  const rec: TokenRecord = {
    id: randomBytes(8).toString('hex'),
    name: opts.name,
    scopes: [...opts.scopes],
    ...(opts.keyIds && opts.keyIds.length ? { keyIds: [...opts.keyIds] } : {}),
    hash: hashToken(token),
    createdAt: new Date(nowMs).toISOString(),
    createdBy: opts.createdBy,
    ...(opts.expiresInSeconds ? { expiresAt: new Date(nowMs + opts.expiresInSeconds * 1000).toISOString() } : {}),
  };
  return { token, rec };
}

export const expired = (rec: { expiresAt?: string }, nowMs: number) => rec.expiresAt !== undefined && Date.parse(rec.expiresAt) <= nowMs;

export const isTokenShaped = (token: string) => /^tgt_[A-Za-z0-9_-]{43}$/.test(token);

/** The data directory's token file as the app's `Tokens`. */
export function fileTokens(store: TokenStore, dataDir: string): Tokens {
  return {
    create: async (opts) => store.create(opts),
    authenticate: async (t) => store.authenticate(t),
    list: async () => store.list(),
    get: async (id) => store.get(id),
    revoke: async (id, opts = {}) =>
      // Checked and revoked under the state lock: two processes must not revoke the last two admins.
      store.lock.run(() => {
        const admins = store.activeAdmins();
        if (opts.keepAnAdmin && admins.length === 1 && admins[0]!.id === id) throw new LastAdminTokenError('this is the last admin token');
        return store.revoke(id);
      }),
    resetAdmins: async (opts, persist) => store.resetAdmins(opts, persist),
    bootstrap: async (persist) => {
      const made = bootstrapAdminToken(store, dataDir, persist);
      return made.token ? { token: made.token, info: made.info! } : undefined;
    },
  };
}

export class TokenStore {
  private file: SharedFile<TokenFile>;
  readonly path: string;
  /** The state lock its writes take (shared with the audit log and pending changes in the app). */
  readonly lock: StateLock;

  constructor(
    dir: string,
    private now: () => number = Date.now,
    lock?: StateLock,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, 'tokens.json');
    this.lock = lock ?? new StateLock(dir);
    this.file = new SharedFile<TokenFile>(this.path, this.lock, {
      empty: () => ({ version: 1, tokens: [] }),
      parse: (text) => JSON.parse(text) as TokenFile,
      format: (f) => JSON.stringify({ version: 1, tokens: f.tokens } satisfies TokenFile, null, 2) + '\n',
    });
  }

  /** The tokens as they are on disk now (reloaded when another process changed them). */
  private get tokens(): readonly TokenRecord[] {
    return this.file.read().tokens;
  }

  get size(): number {
    return this.tokens.length;
  }

  /** Makes a token; the returned `token` string is the only copy of the secret. */
  create(opts: NewToken): {
    token: string;
    info: TokenInfo;
  } {
    const { token, rec } = newTokenRecord(opts, this.now());
    this.file.update((f) => {
      f.tokens.push(rec);
      return { changed: true, result: undefined };
    });
    return { token, info: TokenStore.info(rec) };
  }

  static info(rec: TokenRecord): TokenInfo {
    const { hash: _hash, ...info } = rec;
    return info;
  }

  /** The record of a presented token, if it exists and has not expired. */
  authenticate(token: string): TokenRecord | undefined {
    if (!isTokenShaped(token)) return undefined;
    const h = Buffer.from(hashToken(token), 'hex');
    const rec = this.tokens.find((t) => timingSafeEqual(Buffer.from(t.hash, 'hex'), h));
    if (!rec) return undefined;
    if (expired(rec, this.now())) return undefined;
    return rec;
  }

  list(): TokenInfo[] {
    return this.tokens.map(TokenStore.info);
  }

  get(id: string): TokenInfo | undefined {
    const rec = this.tokens.find((t) => t.id === id);
    return rec && TokenStore.info(rec);
  }

  /** Tokens that still grant admin (not expired). */
  activeAdmins(): TokenInfo[] {
    return this.tokens.filter((t) => t.scopes.includes('admin') && !expired(t, this.now())).map(TokenStore.info);
  }

  /** Tokens.resetAdmins, under the state lock (a caller may hold it to audit in the same step). */
  resetAdmins(opts: NewToken, persist: (token: string) => void): AdminReset {
    return this.lock.run(() => {
      const { token, rec } = newTokenRecord(opts, this.now());
      persist(token);
      const revoked = this.file.update((f) => {
        const gone = f.tokens.filter((t) => t.scopes.includes('admin')).map((t) => t.id);
        f.tokens = [...f.tokens.filter((t) => !t.scopes.includes('admin')), rec];
        return { changed: true, result: gone };
      });
      return { token, info: TokenStore.info(rec), revoked };
    });
  }

  revoke(id: string): boolean {
    return this.file.update((f) => {
      const n = f.tokens.length;
      f.tokens = f.tokens.filter((t) => t.id !== id);
      const changed = f.tokens.length !== n;
      return { changed, result: changed };
    });
  }
}

export interface BootstrapResult {
  /** The new admin token, only when one was created. */
  token?: string;
  info?: TokenInfo;
  file?: string;
}

/**
 * On first start (no tokens at all), creates an admin token and writes it to
 * `<dataDir>/admin-token` (0600). The caller logs where it is, never what it is. Decided under
 * the state lock, so of several processes starting together on one data directory exactly one
 * makes it.
 */
export function bootstrapAdminToken(
  store: TokenStore,
  dataDir: string,
  persist: (token: string) => void = (t) => writeAdminTokenFile(dataDir, t),
): BootstrapResult {
  if (store.size > 0) return {}; // the usual restart: no need to wait for the lock
  return store.lock.run(() => {
    if (store.size > 0) return {};
    const { token, info } = store.create(INITIAL_ADMIN);
    persist(token);
    return { token, info, file: adminTokenFile(dataDir) };
  });
}

export const INITIAL_ADMIN: NewToken = { name: 'initial-admin', scopes: ['admin'], createdBy: 'system' };

export const adminTokenFile = (dataDir: string) => join(dataDir, 'admin-token');

/** Writes the first-start admin token to `<dataDir>/admin-token` (0600), durably. */
export function writeAdminTokenFile(dataDir: string, token: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileDurable(adminTokenFile(dataDir), token + '\n');
}
