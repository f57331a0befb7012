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
// next request. Instances on different machines sharing only a database keep their own tokens.
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
  create(opts: { name: string; scopes: Scope[]; keyIds?: string[]; expiresInSeconds?: number; createdBy: string }): {
    token: string;
    info: TokenInfo;
  } {
    const token = newTokenString();
    const rec: TokenRecord = {
      id: randomBytes(8).toString('hex'),
      name: opts.name,
      scopes: [...opts.scopes],
      ...(opts.keyIds && opts.keyIds.length ? { keyIds: [...opts.keyIds] } : {}),
      hash: hashToken(token),
      createdAt: new Date(this.now()).toISOString(),
      createdBy: opts.createdBy,
      ...(opts.expiresInSeconds ? { expiresAt: new Date(this.now() + opts.expiresInSeconds * 1000).toISOString() } : {}),
    };
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
    if (!/^tgt_[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
    const h = Buffer.from(hashToken(token), 'hex');
    const rec = this.tokens.find((t) => timingSafeEqual(Buffer.from(t.hash, 'hex'), h));
    if (!rec) return undefined;
    if (rec.expiresAt && Date.parse(rec.expiresAt) <= this.now()) return undefined;
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
    return this.tokens
      .filter((t) => t.scopes.includes('admin') && !(t.expiresAt && Date.parse(t.expiresAt) <= this.now()))
      .map(TokenStore.info);
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
export function bootstrapAdminToken(store: TokenStore, dataDir: string): BootstrapResult {
  if (store.size > 0) return {}; // the usual restart: no need to wait for the lock
  return store.lock.run(() => {
    if (store.size > 0) return {};
    const { token, info } = store.create({ name: 'initial-admin', scopes: ['admin'], createdBy: 'system' });
    const file = join(dataDir, 'admin-token');
    writeFileDurable(file, token + '\n');
    return { token, info, file };
  });
}
