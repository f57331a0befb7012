// The default keystore: one encrypted JSON file per key in a directory (0700, files 0600), plus
// keystore.json holding the KDF salt and a check value that detects a wrong passphrase at start.
// Private keys are decrypted only for the moment they sign or are exported. Sealed keys stay in
// memory (re-sealed as JWK, which node imports faster than PKCS#8) until their file changes.
import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { chmodSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { keyId, type TufKey } from '../core/crypto/keys.js';
import { generateSigner, signWith, tufKeyFromPublic, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { createFileDurable, fsyncDir, writeFileDurable } from '../state/durable.js';
import { deriveKek, newKdfParams, seal, unseal, type KdfParams, type SealedBlob } from './sealed.js';
import { KeyStoreError, type KeyRecord, type KeyStore } from './types.js';

interface KeyFile extends KeyRecord {
  sealed: SealedBlob;
}
interface StoreFile {
  version: 1;
  kdf: KdfParams;
  check: SealedBlob;
}

/** A key file's sealed blob as last read, with what identifies that version of the file. */
interface CachedBlob {
  ino: number;
  size: number;
  mtimeMs: number;
  sealed: SealedBlob;
  /** The same private key as JWK, sealed under the same KEK (in memory only); absent if the key has no JWK form. */
  jwk?: SealedBlob;
}

const CHECK_AAD = 'trustgate keystore check';
const JWK_AAD_SUFFIX = '\njwk';
const ID_RE = /^[0-9a-f]{64}$/;
const ONLINE_ROLES = new Set(['timestamp', 'snapshot']);
/** Opened online keys kept at most (one timestamp and one snapshot key per repository in use). */
const MAX_OPENED_KEYS = 4096;

export function algorithmOf(k: KeyObject): Algorithm {
  switch (k.asymmetricKeyType) {
    case 'ec':
      return 'ecdsa';
    case 'ed25519':
      return 'ed25519';
    case 'rsa':
      return 'rsa';
    default:
      throw new KeyStoreError(`unsupported key algorithm ${k.asymmetricKeyType}`);
  }
}

/** The record of a software key a keystore of `held` kind is about to store, made now. */
export function softwareKeyRecord(held: KeyRecord['held'], gun: string, role: string, privateKey: KeyObject, pub: TufKey): KeyRecord {
  return { id: keyId(pub), gun, role, algorithm: algorithmOf(privateKey), public: pub, createdAt: new Date().toISOString(), held };
}

export class FileKeyStore implements KeyStore {
  readonly kind = 'file';
  private index = new Map<string, KeyRecord>();
  private blobs = new Map<string, CachedBlob>();
  private opened = new Map<string, { entry: CachedBlob; key: KeyObject }>();

  private constructor(
    private dir: string,
    private kek: Buffer,
  ) {}

  /** Opens (or creates) the keystore in `dir`, checking the passphrase against the stored check value. */
  static open(dir: string, passphrase: string): FileKeyStore {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const metaPath = join(dir, 'keystore.json');
    if (!existsSync(metaPath)) {
      const kdf = newKdfParams();
      const fresh: StoreFile = { version: 1, kdf, check: seal(deriveKek(passphrase, kdf), Buffer.from(CHECK_AAD), CHECK_AAD) };
      // Created only if missing: when two processes start on an empty directory, exactly one
      // file wins and both then read it, so neither ends up with keys the other cannot open.
      createFileDurable(metaPath, JSON.stringify(fresh, null, 2) + '\n');
    }
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as StoreFile;
    const kek = deriveKek(passphrase, meta.kdf);
    unseal(kek, meta.check, CHECK_AAD); // throws on a wrong passphrase
    const store = new FileKeyStore(dir, kek);
    store.rescan();
    return store;
  }

  private rescan(): void {
    for (const name of readdirSync(this.dir)) {
      const m = /^([0-9a-f]{64})\.key\.json$/.exec(name);
      if (!m || this.index.has(m[1]!)) continue;
      const f = JSON.parse(readFileSync(join(this.dir, name), 'utf8')) as KeyFile;
      const { sealed: _sealed, ...rec } = f;
      this.index.set(rec.id, rec);
    }
  }

  private path(id: string): string {
    if (!ID_RE.test(id)) throw new KeyStoreError('malformed key ID');
    return join(this.dir, `${id}.key.json`);
  }

  private aad(rec: KeyRecord): string {
    return `${rec.id}\n${rec.gun}\n${rec.role}`;
  }

  private store(gun: string, role: string, privateKey: KeyObject, pub: TufKey): KeyRecord {
    const rec = softwareKeyRecord(this.kind, gun, role, privateKey, pub);
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const sealed = seal(this.kek, der, this.aad(rec));
    der.fill(0);
    const path = this.path(rec.id);
    // Durable before the key is used or reported: a crash never leaves half a key file, or none.
    writeFileDurable(path, JSON.stringify({ ...rec, sealed } satisfies KeyFile, null, 2) + '\n');
    this.index.set(rec.id, rec);
    this.remember(rec, path, sealed, privateKey);
    return rec;
  }

  /** Caches a key file's sealed blob (and its JWK re-sealing) under the file's current identity. */
  private remember(rec: KeyRecord, path: string, sealed: SealedBlob, key: KeyObject): CachedBlob {
    const st = statSync(path);
    const entry: CachedBlob = { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, sealed };
    try {
      const json = Buffer.from(JSON.stringify(key.export({ format: 'jwk' })), 'utf8');
      entry.jwk = seal(this.kek, json, this.aad(rec) + JWK_AAD_SUFFIX);
      json.fill(0);
    } catch {
      // No JWK form for this key type: signing decodes the PKCS#8 blob instead.
    }
    this.blobs.set(rec.id, entry);
    return entry;
  }

  /** The sealed blob of a key file: from memory while the file is unchanged, else read again. */
  private sealedBlob(rec: KeyRecord): CachedBlob | SealedBlob {
    const path = this.path(rec.id);
    const st = statSync(path); // throws as reading would when the file is gone
    const hit = this.blobs.get(rec.id);
    if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit;
    this.blobs.delete(rec.id);
    return (JSON.parse(readFileSync(path, 'utf8')) as KeyFile).sealed;
  }

  /** Decrypts the PKCS#8 form; the caller zeroes the result. */
  private decryptDer(rec: KeyRecord, blob: CachedBlob | SealedBlob): Buffer {
    return unseal(this.kek, 'sealed' in blob ? blob.sealed : blob, this.aad(rec));
  }

  /** The private key, opened from its sealed JWK form when there is one (else PKCS#8). */
  private openKey(rec: KeyRecord, entry: CachedBlob): KeyObject {
    if (!entry.jwk) {
      const der = this.decryptDer(rec, entry);
      try {
        return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      } finally {
        der.fill(0);
      }
    }
    const json = unseal(this.kek, entry.jwk, this.aad(rec) + JWK_AAD_SUFFIX);
    try {
      return createPrivateKey({ key: JSON.parse(json.toString('utf8')) as JsonWebKey, format: 'jwk' });
    } finally {
      json.fill(0);
    }
  }

  /** The cache entry for a key, reading and decrypting the file once when it is new or changed. */
  private entryFor(rec: KeyRecord): CachedBlob {
    const blob = this.sealedBlob(rec);
    if ('sealed' in blob) return blob;
    const der = unseal(this.kek, blob, this.aad(rec));
    try {
      return this.remember(rec, this.path(rec.id), blob, createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
    } finally {
      der.fill(0);
    }
  }

  async generate(gun: string, role: string, alg: Algorithm): Promise<KeyRecord> {
    const s = generateSigner(alg);
    return this.store(gun, role, s.privateKey, s.key);
  }

  async importKey(gun: string, role: string, privateKey: KeyObject, publicKey?: TufKey): Promise<KeyRecord> {
    return this.store(gun, role, privateKey, publicKey ?? tufKeyFromPublic(createPublicKey(privateKey)));
  }

  async ping(): Promise<void> {
    await access(join(this.dir, 'keystore.json'), constants.R_OK);
  }

  async get(id: string): Promise<KeyRecord | undefined> {
    if (!this.index.has(id) && ID_RE.test(id) && existsSync(this.path(id))) this.rescan();
    return this.index.get(id);
  }

  async list(filter: { gun?: string; role?: string } = {}): Promise<KeyRecord[]> {
    this.rescan();
    return [...this.index.values()]
      .filter((r) => (filter.gun === undefined || r.gun === filter.gun) && (filter.role === undefined || r.role === filter.role))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async exportPrivate(id: string): Promise<KeyObject> {
    const rec = await this.get(id);
    if (!rec) throw new KeyStoreError(`no key ${id}`);
    const der = this.decryptDer(rec, this.sealedBlob(rec));
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  }

  /**
   * A Signer for a stored key. The file is checked (and on first use decrypted) now, so a wrong
   * passphrase or a damaged file fails here. Except for online roles (see onlineKey), the private
   * key itself is decrypted and built again inside each sign() call and dropped at its end.
   */
  async signer(id: string): Promise<Signer | undefined> {
    const rec = await this.get(id);
    if (!rec) return undefined;
    const entry = this.entryFor(rec);
    const key = rec.public;
    const online = ONLINE_ROLES.has(rec.role);
    return {
      key,
      id: keyId(key),
      sign: async (message: Buffer) => signWith(online ? this.onlineKey(rec, entry) : this.openKey(rec, entry), key.keytype, message),
    };
  }

  /**
   * Timestamp and snapshot keys sign on every publish and every refresh, so, as in notary-signer,
   * they stay opened (an OpenSSL key object, outside the JavaScript heap) while their file is
   * unchanged. Root, targets and delegation keys are still opened for each signature only.
   */
  private onlineKey(rec: KeyRecord, entry: CachedBlob): KeyObject {
    const hit = this.opened.get(rec.id);
    if (hit && hit.entry === entry) return hit.key;
    const key = this.openKey(rec, entry);
    this.opened.delete(rec.id);
    if (this.opened.size >= MAX_OPENED_KEYS) this.opened.delete(this.opened.keys().next().value!);
    this.opened.set(rec.id, { entry, key });
    return key;
  }

  async delete(id: string): Promise<boolean> {
    if (!(await this.get(id))) return false;
    unlinkSync(this.path(id));
    fsyncDir(this.dir);
    this.index.delete(id);
    this.blobs.delete(id);
    this.opened.delete(id);
    return true;
  }
}
