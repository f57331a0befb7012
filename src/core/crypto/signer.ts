// Private-key holders. The core asks a Signer for a signature and never sees where the key lives
// (memory, an encrypted file, an HSM), so keystores can plug in behind this one interface.
import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { keyId, makeKey, signingMethod, type KeyType, type TufKey } from './keys.js';

export interface Signer {
  /** The public key as it appears in metadata. */
  readonly key: TufKey;
  /** TUF key ID of `key`. */
  readonly id: string;
  /** Signs the canonical message with the method that `signingMethod(key.keytype)` names. */
  sign(message: Buffer): Promise<Buffer>;
}

export type Algorithm = 'ecdsa' | 'ed25519' | 'rsa';

/** The plain metadata key for a node public key. */
export function tufKeyFromPublic(pub: KeyObject): TufKey {
  switch (pub.asymmetricKeyType) {
    case 'ed25519':
      return makeKey('ed25519', pub.export({ format: 'der', type: 'spki' }).subarray(12));
    case 'ec':
      return makeKey('ecdsa', pub.export({ format: 'der', type: 'spki' }));
    case 'rsa':
      return makeKey('rsa', pub.export({ format: 'der', type: 'spki' }));
    default:
      throw new Error(`unsupported key algorithm ${pub.asymmetricKeyType}`);
  }
}

/** Signs with the algorithm that the key type dictates (see keys.ts). */
export function signWith(privateKey: KeyObject, keytype: KeyType, message: Buffer): Buffer {
  switch (signingMethod(keytype)) {
    case 'eddsa':
      return nodeSign(null, message, privateKey);
    case 'ecdsa':
      return nodeSign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    case 'rsapss':
      return nodeSign('sha256', message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    default:
      throw new Error(`no signing method for ${keytype}`);
  }
}

/** A signer over a private key held in this process. */
export class LocalSigner implements Signer {
  readonly id: string;
  constructor(
    readonly privateKey: KeyObject,
    readonly key: TufKey = tufKeyFromPublic(createPublicKey(privateKey)),
  ) {
    this.id = keyId(key);
  }
  async sign(message: Buffer): Promise<Buffer> {
    return signWith(this.privateKey, this.key.keytype, message);
  }
}

/**
 * A new private key: ECDSA P-256 (notary's default), Ed25519, or RSA-3072. Made as PKCS#8 bytes
 * and read back, so the key object shares no lock with Node's key-generation job: on Node 20,
 * exporting a generated key (e.g. as JWK) while the collector frees that job deadlocks the process.
 */
export function newPrivateKey(alg: Algorithm): KeyObject {
  const privateKeyEncoding = { type: 'pkcs8', format: 'der' } as const;
  const publicKeyEncoding = { type: 'spki', format: 'der' } as const;
  const pkcs8: Buffer =
    alg === 'ecdsa'
      ? generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding, publicKeyEncoding }).privateKey
      : alg === 'ed25519'
        ? generateKeyPairSync('ed25519', { privateKeyEncoding, publicKeyEncoding }).privateKey
        : generateKeyPairSync('rsa', { modulusLength: 3072, privateKeyEncoding, publicKeyEncoding }).privateKey;
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  pkcs8.fill(0);
  return key;
}

/** Makes a new key pair: ECDSA P-256 (notary's default), Ed25519, or RSA-3072. */
export function generateSigner(alg: Algorithm): LocalSigner {
  return new LocalSigner(newPrivateKey(alg));
}
