// The default keystore: one encrypted JSON file per key in a directory (0700, files 0600), plus
// keystore.json holding the KDF salt and a check value that detects a wrong passphrase at start.
// Private keys are decrypted only for the moment they sign or are exported.
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keyId, type TufKey } from '../core/crypto/keys.js';
import { generateSigner, LocalSigner, tufKeyFromPublic, type Algorithm, type Signer } from '../core/crypto/signer.js';
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

const CHECK_AAD = 'trustgate keystore check';
const ID_RE = /^[0-9a-f]{64}$/;

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

/** Writes via a temp file and rename, so a crash never leaves half a key file. */
function writePrivateFile(path: string, data: string): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

export class FileKeyStore implements KeyStore {
  readonly kind = 'file';
  private index = new Map<string, KeyRecord>();

  private constructor(
    private dir: string,
    private kek: Buffer,
  ) {}

  /** Opens (or creates) the keystore in `dir`, checking the passphrase against the stored check value. */
  static open(dir: string, passphrase: string): FileKeyStore {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const metaPath = join(dir, 'keystore.json');
    let meta: StoreFile;
    if (existsSync(metaPath)) {
      meta = JSON.parse(readFileSync(metaPath, 'utf8')) as StoreFile;
    } else {
      const kdf = newKdfParams();
      meta = { version: 1, kdf, check: seal(deriveKek(passphrase, kdf), Buffer.from(CHECK_AAD), CHECK_AAD) };
      writePrivateFile(metaPath, JSON.stringify(meta, null, 2) + '\n');
    }
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
    const rec: KeyRecord = { id: keyId(pub), gun, role, algorithm: algorithmOf(privateKey), public: pub, createdAt: new Date().toISOString(), held: this.kind };
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const sealed = seal(this.kek, der, this.aad(rec));
    der.fill(0);
    writePrivateFile(this.path(rec.id), JSON.stringify({ ...rec, sealed } satisfies KeyFile, null, 2) + '\n');
    this.index.set(rec.id, rec);
    return rec;
  }

  async generate(gun: string, role: string, alg: Algorithm): Promise<KeyRecord> {
    const s = generateSigner(alg);
    return this.store(gun, role, s.privateKey, s.key);
  }

  async importKey(gun: string, role: string, privateKey: KeyObject, publicKey?: TufKey): Promise<KeyRecord> {
    return this.store(gun, role, privateKey, publicKey ?? tufKeyFromPublic(createPublicKey(privateKey)));
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
    const f = JSON.parse(readFileSync(this.path(id), 'utf8')) as KeyFile;
    const der = unseal(this.kek, f.sealed, this.aad(rec));
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  }

  async signer(id: string): Promise<Signer | undefined> {
    const rec = await this.get(id);
    if (!rec) return undefined;
    return new LocalSigner(await this.exportPrivate(id), rec.public);
  }

  async delete(id: string): Promise<boolean> {
    if (!(await this.get(id))) return false;
    unlinkSync(this.path(id));
    this.index.delete(id);
    return true;
  }
}
