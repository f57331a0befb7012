// TUF public keys as notary writes them, their two key IDs, and signature checks.
// The verification algorithm always comes from the trusted key's type, never from the
// signature's `method` field (NCC 2015 finding 1: key confusion). Pure: no I/O.
import { constants, createHash, createPublicKey, verify as nodeVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { canonicalBytes } from '../json/canonical.js';

export const KEY_TYPES = ['ecdsa', 'ecdsa-x509', 'ed25519', 'rsa', 'rsa-x509'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A public key as it appears in TUF metadata. `private` is always null in metadata. */
export interface TufKey {
  keytype: KeyType;
  keyval: { public: string; private: null };
}

export class KeyError extends Error {
  override name = 'KeyError';
}

export const MIN_RSA_BITS = 2048;

export function isKeyType(t: unknown): t is KeyType {
  return typeof t === 'string' && (KEY_TYPES as readonly string[]).includes(t);
}

export function isX509(k: TufKey): boolean {
  return k.keytype === 'ecdsa-x509' || k.keytype === 'rsa-x509';
}

/** Builds a metadata key from its type and public bytes (DER SPKI, raw ed25519, or PEM text for x509). */
export function makeKey(keytype: KeyType, publicBytes: Buffer): TufKey {
  return { keytype, keyval: { private: null, public: publicBytes.toString('base64') } };
}

/**
 * Standard base64 in its one canonical form (padding as required, zero pad bits, no whitespace
 * or URL-safe letters), or undefined. Node's decoder takes all of those, so the same bytes could
 * be written several ways, and a key written another way would get another key ID.
 */
export function decodeCanonicalBase64(s: string): Buffer | undefined {
  return isCanonicalBase64(s) ? Buffer.from(s, 'base64') : undefined;
}

// Letter values of the standard alphabet, -1 for anything else ('=' included).
const B64 = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;

/** decodeCanonicalBase64 without decoding: whole quanta, `=` only as padding, pad bits zero. */
export function isCanonicalBase64(s: string): boolean {
  const n = s.length;
  if (n % 4 !== 0) return false;
  const pad = n === 0 ? 0 : s.charCodeAt(n - 1) !== 0x3d ? 0 : s.charCodeAt(n - 2) !== 0x3d ? 1 : 2;
  const end = n - pad;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || B64[c]! < 0) return false;
  }
  // The last letter's bits past the data must be zero: 4 of them with "==", 2 with "=".
  return pad === 0 || (B64[s.charCodeAt(end - 1)]! & (pad === 2 ? 0x0f : 0x03)) === 0;
}

/** Strips a parsed key down to the fields TUF hashes and signs, rejecting anything else. */
export function parseKey(raw: unknown): TufKey {
  if (!raw || typeof raw !== 'object') throw new KeyError('key is not an object');
  const r = raw as { keytype?: unknown; keyval?: { public?: unknown } };
  if (!isKeyType(r.keytype)) throw new KeyError(`unsupported key type ${JSON.stringify(r.keytype)}`);
  const pub = r.keyval?.public;
  if (typeof pub !== 'string' || pub.length === 0) throw new KeyError('key has no public value');
  if (!isCanonicalBase64(pub)) throw new KeyError('key public value is not canonical base64');
  return { keytype: r.keytype, keyval: { private: null, public: pub } };
}

const sha256hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

// Key IDs by key object: the keystore's and a parsed root's keys are asked for theirs on every
// publish. An entry counts only while the object still holds the type and value it was hashed from.
const keyIds = new WeakMap<TufKey, { keytype: string; pub: string; id: string }>();

/** The TUF key ID: sha256 of the canonical key JSON (for x509 keys this hashes the PEM text). */
export function keyId(k: TufKey): string {
  const hit = keyIds.get(k);
  if (hit && hit.keytype === k.keytype && hit.pub === k.keyval.public) return hit.id;
  const id = sha256hex(canonicalBytes({ keytype: k.keytype, keyval: { private: null, public: k.keyval.public } }));
  keyIds.set(k, { keytype: k.keytype, pub: k.keyval.public, id });
  return id;
}

/** Notary's canonical key ID: for x509 keys, the ID of the plain key inside the leaf certificate. */
export function canonicalKeyId(k: TufKey): string {
  if (!isX509(k)) return keyId(k);
  const spki = publicKeyObject(k).export({ type: 'spki', format: 'der' });
  return keyId(makeKey(k.keytype === 'ecdsa-x509' ? 'ecdsa' : 'rsa', spki));
}

// An ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the raw 32-byte key.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Leaf certificate of a PEM bundle (the first block). */
export function leafCertificate(k: TufKey): X509Certificate {
  const pem = Buffer.from(k.keyval.public, 'base64').toString('utf8');
  const first = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/);
  if (!first) throw new KeyError('x509 key holds no PEM certificate');
  return new X509Certificate(first[0]);
}

// Parsing a key is costly next to a lookup, and the same trusted keys verify every publish.
const keyObjectCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 4096;

/** The node KeyObject of a metadata key, type-checked against its declared keytype. */
export function publicKeyObject(k: TufKey): KeyObject {
  const cacheKey = `${k.keytype}:${k.keyval.public}`;
  const hit = keyObjectCache.get(cacheKey);
  if (hit) return hit;
  const bytes = Buffer.from(k.keyval.public, 'base64');
  let obj: KeyObject;
  try {
    switch (k.keytype) {
      case 'ed25519':
        if (bytes.length !== 32) throw new KeyError('ed25519 public key must be 32 bytes');
        obj = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, bytes]), format: 'der', type: 'spki' });
        break;
      case 'ecdsa':
      case 'rsa':
        obj = createPublicKey({ key: bytes, format: 'der', type: 'spki' });
        break;
      case 'ecdsa-x509':
      case 'rsa-x509':
        obj = leafCertificate(k).publicKey;
        break;
    }
  } catch (e) {
    if (e instanceof KeyError) throw e;
    throw new KeyError(`cannot parse ${k.keytype} public key: ${(e as Error).message}`);
  }
  const want = k.keytype.startsWith('ecdsa') ? 'ec' : k.keytype.startsWith('rsa') ? 'rsa' : 'ed25519';
  if (obj.asymmetricKeyType !== want) throw new KeyError(`${k.keytype} key holds a ${obj.asymmetricKeyType} key`);
  if (want === 'rsa' && (obj.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    throw new KeyError(`RSA keys must have at least ${MIN_RSA_BITS} bits`);
  }
  if (keyObjectCache.size >= KEY_CACHE_MAX) keyObjectCache.delete(keyObjectCache.keys().next().value!);
  keyObjectCache.set(cacheKey, obj);
  return obj;
}

const identities = new WeakMap<KeyObject, string>();

/**
 * What makes two metadata keys the same key: the public key's numbers as JWK (for x509 keys, the
 * leaf certificate's key), whatever the key ID and however its DER was written (a compressed EC
 * point, say). Undefined for a key that does not parse (it can verify nothing).
 */
export function keyIdentity(k: TufKey): string | undefined {
  let obj: KeyObject;
  try {
    obj = publicKeyObject(k);
  } catch {
    return undefined;
  }
  let id = identities.get(obj);
  if (id === undefined) {
    try {
      id = JSON.stringify(obj.export({ format: 'jwk' }));
    } catch {
      id = obj.export({ type: 'spki', format: 'der' }).toString('base64');
    }
    identities.set(obj, id);
  }
  return id;
}

/** Signature methods each key type may use; the method only picks among these. */
const METHODS: Record<KeyType, readonly string[]> = {
  ecdsa: ['ecdsa'],
  'ecdsa-x509': ['ecdsa'],
  ed25519: ['eddsa'],
  rsa: ['rsapss', 'rsapkcs1v15'],
  'rsa-x509': ['rsapss', 'rsapkcs1v15'],
};

/** The method a key of this type writes when it signs. */
export function signingMethod(keytype: KeyType): string {
  return METHODS[keytype][0]!;
}

/** Checks one signature over `message` with a trusted key. Never throws for a bad signature. */
export function verifySignature(key: TufKey, message: Buffer, method: string, sig: Buffer): boolean {
  const m = method.toLowerCase();
  if (!METHODS[key.keytype].includes(m)) return false;
  let pub: KeyObject;
  try {
    pub = publicKeyObject(key);
  } catch {
    return false;
  }
  try {
    switch (pub.asymmetricKeyType) {
      case 'ed25519':
        return sig.length === 64 && nodeVerify(null, message, pub, sig);
      case 'ec': {
        // Raw r||s, each padded to the curve's byte length; notary hashes with SHA-256 for every curve.
        const curve = pub.asymmetricKeyDetails?.namedCurve;
        const size = curve === 'prime256v1' ? 32 : curve === 'secp384r1' ? 48 : curve === 'secp521r1' ? 66 : 0;
        if (size === 0 || sig.length !== 2 * size) return false;
        return nodeVerify('sha256', message, { key: pub, dsaEncoding: 'ieee-p1363' }, sig);
      }
      case 'rsa':
        return nodeVerify(
          'sha256',
          message,
          m === 'rsapss'
            ? { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
            : { key: pub, padding: constants.RSA_PKCS1_PADDING },
          sig,
        );
      default:
        return false;
    }
  } catch {
    return false;
  }
}
