// A keystore in a keyv backend (Redis or PostgreSQL), for several trustgate instances that share
// no disk. Records have the file store's format (KeyRecord plus the sealed private key); keys are
// sealed with the key-encryption key (scrypt of the passphrase, AES-256-GCM, sealed.ts) before
// they reach keyv, so the backend only ever sees ciphertext. The KDF salt and the check value
// live in the backend too, so every instance derives the same key-encryption key.
//
// Entries, under the keyv namespace (default `trustgate-keys`):
//   keystore       {version, kdf, check}   as keystore.json in the file store
//   key:<id>       KeyRecord + sealed       as <id>.key.json in the file store
//   index          [id, ...]                only for adapters without an iterator (see list())
// Listing uses the adapter's iterator (Redis SCAN, PostgreSQL LIKE on the key), which is always
// consistent with the key entries. Adapters without one fall back to the `index` entry,
// read-modify-written and checked again after the write (keyv has no compare-and-set).
// Backend errors throw (keyv's `throwOnErrors`): a lost connection must never look like "no key",
// or the trust service would make new keys.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import Keyv from 'keyv';
import type { TufKey } from '../core/crypto/keys.js';
import { generateSigner, LocalSigner, tufKeyFromPublic, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { softwareKeyRecord } from './file.js';
import { deriveKek, newKdfParams, seal, unseal, type KdfParams, type SealedBlob } from './sealed.js';
import { KeyStoreError, KeyStoreUnavailableError, type KeyRecord, type KeyStore } from './types.js';

interface KeyEntry extends KeyRecord {
  sealed: SealedBlob;
}
interface StoreEntry {
  version: 1;
  kdf: KdfParams;
  check: SealedBlob;
}

const CHECK_AAD = 'trustgate keystore check';
const ID_RE = /^[0-9a-f]{64}$/;
const META = 'keystore';
const INDEX = 'index';
const KEY_PREFIX = 'key:';

export interface KeyvKeyStoreOptions {
  /** `iterator` (default when the adapter has one) or `index`. */
  listing?: 'iterator' | 'index';
}

/** Error codes of a backend that cannot be reached: sockets, and PostgreSQL shutting down or starting. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', '57P01', '57P02', '57P03']);

/** Backend errors without connection strings (which may hold credentials); an unreachable backend as KeyStoreUnavailableError. */
function backendError(e: unknown): KeyStoreError {
  if (e instanceof KeyStoreError) return e;
  const msg = String((e as Error)?.message ?? e).replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '[url]');
  const code = (e as { code?: unknown })?.code;
  const down =
    (typeof code === 'string' && UNREACHABLE.has(code)) ||
    /Connection terminated|terminating connection|timeout exceeded when trying to connect|The client is (closed|offline)|Socket closed unexpectedly/i.test(
      msg,
    );
  return new (down ? KeyStoreUnavailableError : KeyStoreError)(`keyv keystore backend error: ${msg}`);
}

export class KeyvKeyStore implements KeyStore {
  readonly kind = 'keyv';
  private listing: 'iterator' | 'index';

  private constructor(
    private kv: Keyv,
    private kek: Buffer,
    opts: KeyvKeyStoreOptions,
    private onClose: () => Promise<void>,
  ) {
    this.listing = opts.listing ?? (typeof kv.iterator === 'function' ? 'iterator' : 'index');
  }

  /**
   * Connects to postgres://… (table `trustgate_keys`) or redis://…. A `namespace` query parameter
   * in the URL picks another namespace, e.g. for two deployments in one database; it is removed
   * before the URL reaches the driver.
   */
  static async connect(url: string, passphrase: string, opts: KeyvKeyStoreOptions = {}): Promise<KeyvKeyStore> {
    const u = new URL(url);
    const namespace = u.searchParams.get('namespace') ?? 'trustgate-keys';
    u.searchParams.delete('namespace');
    const clean = u.toString();
    let store: unknown;
    let disconnect: (kv: Keyv) => Promise<void> = (kv) => kv.disconnect();
    if (/^postgres(ql)?:$/.test(u.protocol)) {
      const { default: KeyvPostgres } = await import('@keyv/postgres');
      const { default: pg } = await import('pg');
      // @keyv/postgres shares one pool per process and URI, with no 'error' listener: a database
      // restart ends its idle connections, and the unhandled 'error' event ends the process. Each
      // keystore gets its own pool here, which drops such connections and opens new ones.
      class OwnPool extends KeyvPostgres {
        declare own?: InstanceType<typeof pg.Pool>;
        override async connect() {
          const pool = (this.own ??= new pg.Pool({ connectionString: clean, max: 4, connectionTimeoutMillis: 10_000 }));
          pool.on('error', () => undefined);
          return async (sql: string, values?: unknown) => (await pool.query(sql, values as unknown[])).rows;
        }
        override async disconnect() {
          await this.own?.end();
        }
      }
      store = new OwnPool({ uri: clean, table: 'trustgate_keys' });
    } else if (/^rediss?:$/.test(u.protocol)) {
      const { default: KeyvRedis } = await import('@keyv/redis');
      const redis = new KeyvRedis(
        // No offline queue: while Redis is unreachable, calls fail at once instead of waiting.
        {
          url: clean,
          disableOfflineQueue: true,
          socket: { connectTimeout: 10_000, reconnectStrategy: (n: number) => Math.min(2 ** n * 100, 2000) },
        },
        { throwOnConnectError: true, throwErrors: true, connectionTimeout: 10_000 },
      );
      // The client reports a lost connection as an 'error' event; calls fail and reconnection
      // goes on, so the event itself must not crash the process.
      redis.client.on('error', () => undefined);
      store = redis;
      // A graceful QUIT would wait for a server that may be gone; nothing is in flight at close.
      disconnect = async () => {
        if (redis.client.isOpen) await redis.disconnect(true);
      };
    } else {
      throw new KeyStoreError('TRUSTGATE_KEYSTORE_URL must be a postgres:// or redis:// URL');
    }
    const kv = new Keyv({ store: store as never, namespace, throwOnErrors: true });
    return KeyvKeyStore.open(kv, passphrase, opts, () => disconnect(kv));
  }

  /** Opens the keystore in any keyv instance, creating the KDF parameters on first use. */
  static async open(
    kv: Keyv,
    passphrase: string,
    opts: KeyvKeyStoreOptions = {},
    onClose: () => Promise<void> = async () => undefined,
  ): Promise<KeyvKeyStore> {
    // Errors are thrown to the caller as well (throwOnErrors); the listener keeps an emitted
    // error from crashing the process.
    kv.on('error', () => undefined);
    kv.throwOnErrors = true;
    let meta: StoreEntry | undefined;
    try {
      meta = (await kv.get(META)) as StoreEntry | undefined;
      if (!meta) {
        const kdf = newKdfParams();
        const created: StoreEntry = { version: 1, kdf, check: seal(deriveKek(passphrase, kdf), Buffer.from(CHECK_AAD), CHECK_AAD) };
        await kv.set(META, created);
        // Another instance may have created it at the same moment: whatever is stored wins.
        meta = ((await kv.get(META)) as StoreEntry | undefined) ?? created;
      }
    } catch (e) {
      await onClose().catch(() => undefined);
      throw backendError(e);
    }
    const kek = deriveKek(passphrase, meta.kdf);
    try {
      unseal(kek, meta.check, CHECK_AAD); // throws on a wrong passphrase
    } catch (e) {
      kek.fill(0);
      await onClose().catch(() => undefined);
      throw e;
    }
    return new KeyvKeyStore(kv, kek, opts, onClose);
  }

  async close(): Promise<void> {
    this.kek.fill(0);
    await this.onClose();
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw backendError(e);
    }
  }

  private aad(rec: KeyRecord): string {
    return `${rec.id}\n${rec.gun}\n${rec.role}`;
  }

  async ping(): Promise<void> {
    try {
      if (!(await this.kv.get(META))) throw new KeyStoreError('the keystore entry is missing');
    } catch (e) {
      throw backendError(e);
    }
  }

  private async entry(id: string): Promise<KeyEntry | undefined> {
    if (!ID_RE.test(id)) return undefined;
    const e = (await this.run(() => this.kv.get(KEY_PREFIX + id))) as KeyEntry | undefined;
    return e && e.id === id ? e : undefined;
  }

  private async updateIndex(change: (ids: Set<string>) => void, holds: (ids: Set<string>) => boolean): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ids = new Set(((await this.run(() => this.kv.get(INDEX))) as string[] | undefined) ?? []);
      change(ids);
      await this.run(() => this.kv.set(INDEX, [...ids]));
      const after = new Set(((await this.run(() => this.kv.get(INDEX))) as string[] | undefined) ?? []);
      if (holds(after)) return;
    }
    throw new KeyStoreError('keyv keystore: could not update the key index (concurrent writers)');
  }

  private async store(gun: string, role: string, privateKey: KeyObject, pub: TufKey): Promise<KeyRecord> {
    const rec = softwareKeyRecord(this.kind, gun, role, privateKey, pub);
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    let sealed: SealedBlob;
    try {
      sealed = seal(this.kek, der, this.aad(rec));
    } finally {
      der.fill(0);
    }
    await this.run(() => this.kv.set(KEY_PREFIX + rec.id, { ...rec, sealed } satisfies KeyEntry));
    if (this.listing === 'index')
      await this.updateIndex(
        (ids) => ids.add(rec.id),
        (ids) => ids.has(rec.id),
      );
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
    const e = await this.entry(id);
    if (!e) return undefined;
    const { sealed: _sealed, ...rec } = e;
    return rec;
  }

  private async allRecords(): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    if (this.listing === 'iterator' && this.kv.iterator) {
      // Some adapters (@keyv/postgres) report a failed iteration only as an 'error' event and end
      // it early: a partial listing must not pass for the whole one.
      let failed: unknown;
      const onError = (e: unknown) => (failed ??= e);
      this.kv.on('error', onError);
      try {
        await this.run(async () => {
          for await (const [k, v] of this.kv.iterator!(this.kv.namespace)) {
            if (typeof k !== 'string' || !k.startsWith(KEY_PREFIX) || !v) continue;
            const { sealed: _sealed, ...rec } = v as KeyEntry;
            if (ID_RE.test(rec.id) && k === KEY_PREFIX + rec.id) out.push(rec);
          }
        });
      } finally {
        this.kv.off('error', onError);
      }
      if (failed !== undefined) throw backendError(failed);
      return out;
    }
    const ids = ((await this.run(() => this.kv.get(INDEX))) as string[] | undefined) ?? [];
    for (const id of ids) {
      const rec = await this.get(id);
      if (rec) out.push(rec);
    }
    return out;
  }

  async list(filter: { gun?: string; role?: string } = {}): Promise<KeyRecord[]> {
    return (await this.allRecords())
      .filter((r) => (filter.gun === undefined || r.gun === filter.gun) && (filter.role === undefined || r.role === filter.role))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async exportPrivate(id: string): Promise<KeyObject> {
    const e = await this.entry(id);
    if (!e) throw new KeyStoreError(`no key ${id}`);
    const { sealed, ...rec } = e;
    const der = unseal(this.kek, sealed, this.aad(rec));
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
    if (!(await this.entry(id))) return false;
    await this.run(() => this.kv.delete(KEY_PREFIX + id));
    if (this.listing === 'index')
      await this.updateIndex(
        (ids) => ids.delete(id),
        (ids) => !ids.has(id),
      );
    return true;
  }
}
