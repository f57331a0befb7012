// Keys held by "other people" in the tests: made with node:crypto, never seen by the server
// except as public keys and signatures.
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { keyId, type TufKey } from '../../src/core/crypto/keys.js';
import { tufKeyFromPublic } from '../../src/core/crypto/signer.js';

export interface OutsideKey {
  privateKey: KeyObject;
  key: TufKey;
  id: string;
  publicPem: string;
  /** Signs base64 canonical bytes as TUF wants (ECDSA raw r||s, or DER when asked). */
  sign(canonicalB64: string, der?: boolean): string;
}

export function outsideKey(kind: 'ecdsa' | 'rsa' | 'rsa1024' = 'ecdsa'): OutsideKey {
  const { privateKey, publicKey } =
    kind === 'ecdsa'
      ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : generateKeyPairSync('rsa', { modulusLength: kind === 'rsa' ? 2048 : 1024 });
  const key = tufKeyFromPublic(publicKey);
  return {
    privateKey,
    key,
    id: keyId(key),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    sign(b64, der = false) {
      const msg = Buffer.from(b64, 'base64');
      if (kind === 'ecdsa') return sign('sha256', msg, { key: privateKey, dsaEncoding: der ? 'der' : 'ieee-p1363' }).toString('base64');
      return sign('sha256', msg, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64');
    },
  };
}

/** Signs with a private key whose metadata key (e.g. an x509 root certificate) is `key`. */
export function signAs(privateKey: KeyObject, canonicalB64: string): string {
  return sign('sha256', Buffer.from(canonicalB64, 'base64'), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64');
}
