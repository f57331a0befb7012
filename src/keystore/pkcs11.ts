// A keystore in a PKCS#11 token (an HSM, or SoftHSM2 in tests). Keys are generated inside the
// token as sensitive, non-extractable objects and never leave it: signing is C_Sign, export
// throws. Each key is three token objects sharing the label `trustgate:<key ID>`:
//   - the private key (CKA_ID = the 32-byte TUF key ID, CKA_SENSITIVE, not CKA_EXTRACTABLE),
//   - the public key,
//   - a CKO_DATA object (CKA_APPLICATION "trustgate-keystore") whose value is the public KeyRecord
//     JSON (GUN, role, algorithm, the key as metadata lists it, created), so the token alone
//     holds everything `list` needs and several instances can share one token.
// ECDSA P-256 signs with CKM_ECDSA over the SHA-256 digest, which yields the raw r||s that notary
// writes; RSA signs with CKM_RSA_PKCS_PSS (SHA-256, MGF1-SHA-256, salt 32). Ed25519 is refused.
// Calls are synchronous on one session, so operations never interleave on it. When the token ends
// that session (an HSM restart, a network HSM's dropped link, another user of the module calling
// C_CloseAllSessions), the call that finds out opens a new one, logs in again and runs once more.
// Every operation starts with a call that uses no object handle (a search, a key generation or an
// object creation), so a session lost while idle costs nothing but that reopen. One lost in the
// middle of an operation fails that operation (its handles were the old session's); the next works.
import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import pkcs11js, { type Mechanism, type RsaPSS, type Template } from 'pkcs11js';
import { keyId, type TufKey } from '../core/crypto/keys.js';
import { tufKeyFromPublic, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { algorithmOf } from './file.js';
import { KeyStoreError, type KeyRecord, type KeyStore } from './types.js';

type Handle = Buffer;
type PKCS11 = InstanceType<typeof pkcs11js.PKCS11>;
const P = pkcs11js;

export interface Pkcs11Options {
  /** Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so). */
  module: string;
  /** Label of the token to use. */
  tokenLabel: string;
  /** User PIN. Prefer a file (pinFile at the config level) so it is not on a command line. */
  pin: string;
}

const APPLICATION = 'trustgate-keystore';
const ID_RE = /^[0-9a-f]{64}$/;
/** DER of the named-curve OID 1.2.840.10045.3.1.7 (P-256), the CKA_EC_PARAMS value. */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
/** SubjectPublicKeyInfo prefix for an uncompressed P-256 point (65 bytes follow). */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
/** PKCS#8 prefix node writes for a P-256 key; the 32-byte private scalar follows it. */
const P256_PKCS8_PREFIX = Buffer.from('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420', 'hex');

/** One loaded module per path, shared by every keystore in the process (C_Initialize is per process). */
const modules = new Map<string, { lib: PKCS11; refs: number }>();

function acquire(path: string): PKCS11 {
  let m = modules.get(path);
  if (!m) {
    const lib = new P.PKCS11();
    lib.load(path);
    try {
      lib.C_Initialize();
    } catch (e) {
      if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String((e as Error).message))) throw e;
    }
    m = { lib, refs: 0 };
    modules.set(path, m);
  }
  m.refs++;
  return m.lib;
}

function release(path: string): void {
  const m = modules.get(path);
  if (!m || --m.refs > 0) return;
  modules.delete(path);
  try {
    m.lib.C_Finalize();
  } catch {
    // already finalized
  }
  m.lib.close();
}

/** A PKCS#11 failure as a KeyStoreError naming the call and the CKR code only (never arguments). */
function hsmError(op: string, e: unknown): KeyStoreError {
  const code = /CKR_[A-Z0-9_]+/.exec(String((e as Error)?.message ?? ''))?.[0] ?? 'native error';
  return new KeyStoreError(`pkcs11 ${op} failed: ${code}`);
}

/**
 * Codes after which this process's session (and its login) is gone while the token may still be
 * there. CKR_DEVICE_REMOVED and CKR_TOKEN_NOT_PRESENT are included: the reopen then fails with a
 * clear error if the token is really gone, and works if it came back.
 */
const SESSION_LOST = /CKR_(SESSION_HANDLE_INVALID|SESSION_CLOSED|USER_NOT_LOGGED_IN|DEVICE_REMOVED|TOKEN_NOT_PRESENT)\b/;

/** Finds the token by label, opens a read-write session and logs in. */
function openSession(lib: PKCS11, opts: Pkcs11Options): Handle {
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === opts.tokenLabel);
  if (!slot) throw new KeyStoreError(`pkcs11: no token labelled ${JSON.stringify(opts.tokenLabel)}`);
  const session = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  try {
    lib.C_Login(session, P.CKU_USER, opts.pin);
  } catch (e) {
    if (!/CKR_USER_ALREADY_LOGGED_IN/.test(String((e as Error).message))) {
      try {
        lib.C_CloseSession(session);
      } catch {
        // ignore
      }
      throw hsmError('login', e);
    }
  }
  return session;
}

/** Unwraps CKA_EC_POINT, which tokens return DER-encoded (OCTET STRING) or, rarely, raw. */
function ecPoint(v: Buffer): Buffer {
  if (v.length === 65 && v[0] === 0x04) return v;
  if (v[0] === 0x04 && v[1] === 65 && v.length === 67) return v.subarray(2);
  throw new KeyStoreError('pkcs11 token returned an EC point that is not an uncompressed P-256 point');
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

class Pkcs11Signer implements Signer {
  readonly id: string;
  constructor(
    private store: Pkcs11KeyStore,
    readonly key: TufKey,
    private algorithm: Algorithm,
    id: string,
  ) {
    this.id = id;
  }
  async sign(message: Buffer): Promise<Buffer> {
    return this.store.signWith(this.id, this.algorithm, message);
  }
}

export class Pkcs11KeyStore implements KeyStore {
  readonly kind = 'pkcs11';
  private closed = false;

  private constructor(
    private opts: Pkcs11Options,
    private lib: PKCS11,
    private session: Handle,
  ) {}

  /** Loads the module, finds the token by label, opens a session and logs in. */
  static open(opts: Pkcs11Options): Pkcs11KeyStore {
    if (!opts.module) throw new KeyStoreError('pkcs11: no module path configured');
    if (!opts.tokenLabel) throw new KeyStoreError('pkcs11: no token label configured');
    if (!opts.pin) throw new KeyStoreError('pkcs11: no user PIN configured');
    let lib: PKCS11;
    try {
      lib = acquire(opts.module);
    } catch (e) {
      throw hsmError('module load', e);
    }
    try {
      return new Pkcs11KeyStore({ ...opts }, lib, openSession(lib, opts));
    } catch (e) {
      release(opts.module);
      throw e instanceof KeyStoreError ? e : hsmError('open', e);
    }
  }

  /** A new session and login in place of one the token ended. */
  private reopen(): void {
    try {
      this.lib.C_CloseSession(this.session);
    } catch {
      // already gone, which is why we are here
    }
    try {
      this.session = openSession(this.lib, this.opts);
    } catch (e) {
      throw e instanceof KeyStoreError ? e : hsmError('reopen session', e);
    }
  }

  /** Closes the session (and the module when no other keystore in the process uses it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.lib.C_CloseSession(this.session);
    } catch {
      // session already gone
    }
    release(this.opts.module);
  }

  /** Runs `fn` against the session; when the token has ended the session, opens a new one and runs `fn` once more. */
  private call<T>(op: string, fn: () => T): T {
    if (this.closed) throw new KeyStoreError('pkcs11 keystore is closed');
    try {
      return fn();
    } catch (e) {
      if (e instanceof KeyStoreError) throw e;
      if (!SESSION_LOST.test(String((e as Error)?.message ?? ''))) throw hsmError(op, e);
    }
    this.reopen();
    try {
      return fn();
    } catch (e) {
      if (e instanceof KeyStoreError) throw e;
      throw hsmError(op, e);
    }
  }

  private find(template: Template): Handle[] {
    return this.call('find', () => {
      this.lib.C_FindObjectsInit(this.session, template);
      try {
        const out: Handle[] = [];
        for (;;) {
          const batch = this.lib.C_FindObjects(this.session, 100);
          out.push(...batch);
          if (batch.length < 100) return out;
        }
      } finally {
        this.lib.C_FindObjectsFinal(this.session);
      }
    });
  }

  private objectsOf(id: string): Handle[] {
    return this.find([{ type: P.CKA_LABEL, value: `trustgate:${id}` }]);
  }

  private privateHandle(id: string): Handle | undefined {
    return this.find([
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_ID, value: Buffer.from(id, 'hex') },
    ])[0];
  }

  private records(): KeyRecord[] {
    const handles = this.find([
      { type: P.CKA_CLASS, value: P.CKO_DATA },
      { type: P.CKA_APPLICATION, value: APPLICATION },
    ]);
    const out: KeyRecord[] = [];
    for (const h of handles) {
      const [attr] = this.call('read record', () => this.lib.C_GetAttributeValue(this.session, h, [{ type: P.CKA_VALUE }]));
      try {
        const rec = JSON.parse(attr!.value.toString('utf8')) as KeyRecord;
        if (ID_RE.test(rec.id)) out.push(rec);
      } catch {
        // not ours or damaged: skip
      }
    }
    return out;
  }

  /** Stores the public record next to the key objects, and labels/IDs them with the key ID. */
  private finish(rec: KeyRecord, pub: Handle, priv: Handle): KeyRecord {
    const label = `trustgate:${rec.id}`;
    try {
      this.call('label key', () => {
        const attrs = [
          { type: P.CKA_ID, value: Buffer.from(rec.id, 'hex') },
          { type: P.CKA_LABEL, value: label },
        ];
        this.lib.C_SetAttributeValue(this.session, priv, attrs);
        this.lib.C_SetAttributeValue(this.session, pub, attrs);
      });
      this.call('store record', () =>
        this.lib.C_CreateObject(this.session, [
          { type: P.CKA_CLASS, value: P.CKO_DATA },
          { type: P.CKA_TOKEN, value: true },
          { type: P.CKA_PRIVATE, value: true },
          { type: P.CKA_APPLICATION, value: APPLICATION },
          { type: P.CKA_LABEL, value: label },
          { type: P.CKA_VALUE, value: Buffer.from(JSON.stringify(rec), 'utf8') },
        ]),
      );
    } catch (e) {
      for (const h of [priv, pub]) {
        try {
          this.lib.C_DestroyObject(this.session, h);
        } catch {
          // best effort
        }
      }
      throw e;
    }
    return rec;
  }

  private publicFromHandle(pub: Handle, alg: Algorithm): KeyObject {
    if (alg === 'ecdsa') {
      const [pt] = this.call('read public key', () => this.lib.C_GetAttributeValue(this.session, pub, [{ type: P.CKA_EC_POINT }]));
      return createPublicKey({ key: Buffer.concat([P256_SPKI_PREFIX, ecPoint(pt!.value)]), format: 'der', type: 'spki' });
    }
    const [n, e] = this.call('read public key', () =>
      this.lib.C_GetAttributeValue(this.session, pub, [{ type: P.CKA_MODULUS }, { type: P.CKA_PUBLIC_EXPONENT }]),
    );
    return createPublicKey({ key: { kty: 'RSA', n: b64url(n!.value), e: b64url(e!.value) }, format: 'jwk' });
  }

  private checkAlgorithm(alg: Algorithm): void {
    if (alg !== 'ecdsa' && alg !== 'rsa') {
      throw new KeyStoreError(`the pkcs11 keystore supports ecdsa (P-256) and rsa keys, not ${alg}`);
    }
  }

  async generate(gun: string, role: string, alg: Algorithm): Promise<KeyRecord> {
    this.checkAlgorithm(alg);
    const tmp = randomBytes(32);
    const common = [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_ID, value: tmp },
      { type: P.CKA_LABEL, value: 'trustgate:pending' },
    ];
    const pubTmpl: Template = [{ type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_VERIFY, value: true }, ...common];
    const privTmpl: Template = [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_SIGN, value: true },
      ...common,
    ];
    let mech: Mechanism;
    if (alg === 'ecdsa') {
      mech = { mechanism: P.CKM_EC_KEY_PAIR_GEN };
      pubTmpl.push({ type: P.CKA_EC_PARAMS, value: P256_PARAMS });
    } else {
      mech = { mechanism: P.CKM_RSA_PKCS_KEY_PAIR_GEN };
      pubTmpl.push({ type: P.CKA_MODULUS_BITS, value: 3072 }, { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) });
    }
    const pair = this.call('generate key pair', () => this.lib.C_GenerateKeyPair(this.session, mech, pubTmpl, privTmpl));
    let pub: TufKey;
    try {
      pub = tufKeyFromPublic(this.publicFromHandle(pair.publicKey, alg));
    } catch (e) {
      for (const h of [pair.privateKey, pair.publicKey]) this.lib.C_DestroyObject(this.session, h);
      throw e;
    }
    const rec: KeyRecord = { id: keyId(pub), gun, role, algorithm: alg, public: pub, createdAt: new Date().toISOString(), held: this.kind };
    return this.finish(rec, pair.publicKey, pair.privateKey);
  }

  /**
   * Imports an existing key as a sensitive, non-extractable token object (C_CreateObject), for
   * keys made elsewhere (e.g. a root key generated for a server-side init). The plaintext buffers
   * handed to the token are zeroed afterwards.
   */
  async importKey(gun: string, role: string, privateKey: KeyObject, publicKey?: TufKey): Promise<KeyRecord> {
    const alg = algorithmOf(privateKey);
    this.checkAlgorithm(alg);
    const pubObj = createPublicKey(privateKey);
    const published = publicKey ?? tufKeyFromPublic(pubObj);
    const rec: KeyRecord = {
      id: keyId(published),
      gun,
      role,
      algorithm: alg,
      public: published,
      createdAt: new Date().toISOString(),
      held: this.kind,
    };
    if (await this.get(rec.id)) throw new KeyStoreError(`key ${rec.id} is already in the token`);
    const tmp = randomBytes(32);
    const common = [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_ID, value: tmp },
      { type: P.CKA_LABEL, value: 'trustgate:pending' },
    ];
    const secrets: Buffer[] = [];
    const privTmpl: Template = [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: false },
      { type: P.CKA_SIGN, value: true },
      ...common,
    ];
    const pubTmpl: Template = [{ type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY }, { type: P.CKA_VERIFY, value: true }, ...common];
    try {
      if (alg === 'ecdsa') {
        if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
          throw new KeyStoreError('the pkcs11 keystore only holds P-256 ECDSA keys');
        const der = privateKey.export({ format: 'der', type: 'pkcs8' });
        secrets.push(der);
        if (!der.subarray(0, P256_PKCS8_PREFIX.length).equals(P256_PKCS8_PREFIX))
          throw new KeyStoreError('unexpected PKCS#8 layout for a P-256 key');
        const d = Buffer.from(der.subarray(P256_PKCS8_PREFIX.length, P256_PKCS8_PREFIX.length + 32));
        secrets.push(d);
        const spki = pubObj.export({ format: 'der', type: 'spki' });
        const point = spki.subarray(P256_SPKI_PREFIX.length);
        privTmpl.push(
          { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
          { type: P.CKA_EC_PARAMS, value: P256_PARAMS },
          { type: P.CKA_VALUE, value: d },
        );
        pubTmpl.push(
          { type: P.CKA_KEY_TYPE, value: P.CKK_EC },
          { type: P.CKA_EC_PARAMS, value: P256_PARAMS },
          { type: P.CKA_EC_POINT, value: Buffer.concat([Buffer.from([0x04, point.length]), point]) },
        );
      } else {
        // JWK components arrive as JS strings, which cannot be wiped; the buffers made from them are.
        const j = privateKey.export({ format: 'jwk' });
        const part = (s: string | undefined) => {
          const b = Buffer.from(s ?? '', 'base64url');
          secrets.push(b);
          return b;
        };
        privTmpl.push(
          { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
          { type: P.CKA_MODULUS, value: part(j.n) },
          { type: P.CKA_PUBLIC_EXPONENT, value: part(j.e) },
          { type: P.CKA_PRIVATE_EXPONENT, value: part(j.d) },
          { type: P.CKA_PRIME_1, value: part(j.p) },
          { type: P.CKA_PRIME_2, value: part(j.q) },
          { type: P.CKA_EXPONENT_1, value: part(j.dp) },
          { type: P.CKA_EXPONENT_2, value: part(j.dq) },
          { type: P.CKA_COEFFICIENT, value: part(j.qi) },
        );
        pubTmpl.push(
          { type: P.CKA_KEY_TYPE, value: P.CKK_RSA },
          { type: P.CKA_MODULUS, value: Buffer.from(j.n!, 'base64url') },
          { type: P.CKA_PUBLIC_EXPONENT, value: Buffer.from(j.e!, 'base64url') },
        );
      }
      const priv = this.call('import private key', () => this.lib.C_CreateObject(this.session, privTmpl));
      let pubH: Handle;
      try {
        pubH = this.call('import public key', () => this.lib.C_CreateObject(this.session, pubTmpl));
      } catch (e) {
        this.lib.C_DestroyObject(this.session, priv);
        throw e;
      }
      return this.finish(rec, pubH, priv);
    } finally {
      for (const b of secrets) b.fill(0);
    }
  }

  async get(id: string): Promise<KeyRecord | undefined> {
    if (!ID_RE.test(id)) return undefined;
    const h = this.find([
      { type: P.CKA_CLASS, value: P.CKO_DATA },
      { type: P.CKA_APPLICATION, value: APPLICATION },
      { type: P.CKA_LABEL, value: `trustgate:${id}` },
    ])[0];
    if (!h) return undefined;
    const [attr] = this.call('read record', () => this.lib.C_GetAttributeValue(this.session, h, [{ type: P.CKA_VALUE }]));
    const rec = JSON.parse(attr!.value.toString('utf8')) as KeyRecord;
    return rec.id === id ? rec : undefined;
  }

  async list(filter: { gun?: string; role?: string } = {}): Promise<KeyRecord[]> {
    return this.records()
      .filter((r) => (filter.gun === undefined || r.gun === filter.gun) && (filter.role === undefined || r.role === filter.role))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async signer(id: string): Promise<Signer | undefined> {
    const rec = await this.get(id);
    if (!rec || !this.privateHandle(id)) return undefined;
    return new Pkcs11Signer(this, rec.public, rec.algorithm, id);
  }

  /** C_Sign over the SHA-256 digest of the message (see the file comment for mechanisms). */
  signWith(id: string, alg: Algorithm, message: Buffer): Buffer {
    const h = this.privateHandle(id);
    if (!h) throw new KeyStoreError(`no key ${id} in the token`);
    const digest = createHash('sha256').update(message).digest();
    const pss: RsaPSS = { type: P.CK_PARAMS_RSA_PSS, hashAlg: P.CKM_SHA256, mgf: P.CKG_MGF1_SHA256, saltLen: 32 };
    const mech: Mechanism = alg === 'ecdsa' ? { mechanism: P.CKM_ECDSA } : { mechanism: P.CKM_RSA_PKCS_PSS, parameter: pss };
    return this.call('sign', () => {
      this.lib.C_SignInit(this.session, mech, h);
      return this.lib.C_Sign(this.session, digest, Buffer.alloc(alg === 'ecdsa' ? 64 : 512));
    });
  }

  async exportPrivate(_id: string): Promise<KeyObject> {
    throw new KeyStoreError('keys in the pkcs11 keystore never leave the token: export is not possible');
  }

  /** Destroys the private key, public key and record objects of a key. */
  async delete(id: string): Promise<boolean> {
    if (!ID_RE.test(id)) return false;
    const handles = this.objectsOf(id);
    if (handles.length === 0) return false;
    this.call('destroy', () => {
      for (const h of handles) this.lib.C_DestroyObject(this.session, h);
    });
    return true;
  }
}
