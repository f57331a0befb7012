// Key material at the API's edge: public keys and certificates given for signers, private keys
// uploaded for import, and signatures made elsewhere. Pure: no I/O. Errors are ApiErrors whose
// messages never contain the material itself.
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { MIN_RSA_BITS, isX509, makeKey, publicKeyObject, type TufKey } from '../core/crypto/keys.js';
import { importPrivateKeyPem, pemDecodeAll, type PemBlock } from '../core/crypto/pem.js';
import { tufKeyFromPublic } from '../core/crypto/signer.js';
import { parseCertificateBundle, pemEncodeCertificates, validateDelegationCert } from '../core/crypto/x509.js';
import { badRequest } from '../http/api-error.js';
import { toApiError } from '../trust/api-errors.js';

const SUPPORTED_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

/** Refuses keys notary cannot use or that are too weak: RSA < 2048 bits, unknown curves, DSA... */
export function checkKeyStrength(k: KeyObject): void {
  switch (k.asymmetricKeyType) {
    case 'rsa':
      if ((k.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS)
        throw badRequest('WEAK_KEY', `RSA keys must have at least ${MIN_RSA_BITS} bits`);
      return;
    case 'ec':
      if (!SUPPORTED_CURVES.has(k.asymmetricKeyDetails?.namedCurve ?? ''))
        throw badRequest('UNSUPPORTED_KEY', 'unsupported elliptic curve (use P-256, P-384 or P-521)');
      return;
    case 'ed25519':
      return;
    default:
      throw badRequest('UNSUPPORTED_KEY', `unsupported key algorithm ${k.asymmetricKeyType ?? 'unknown'}`);
  }
}

function decodeBlocks(pem: string): PemBlock[] {
  let blocks: PemBlock[];
  try {
    blocks = pemDecodeAll(pem);
  } catch {
    throw badRequest('MALFORMED_PEM', 'malformed PEM');
  }
  if (blocks.length === 0) throw badRequest('MALFORMED_PEM', 'no PEM block found');
  return blocks;
}

/**
 * A signer's key from PEM: a `PUBLIC KEY` block (as `docker trust key generate` and `notary key
 * generate -o` write `<name>.pub`) becomes a plain key, a `CERTIFICATE` (bundle) an x509 key.
 */
export function parsePublicKeyPem(pem: string, now: Date): TufKey {
  const blocks = decodeBlocks(pem);
  const first = blocks[0]!;
  if (first.type === 'CERTIFICATE') {
    let ders: Buffer[];
    try {
      ders = parseCertificateBundle(pem).map((c) => c.der);
    } catch (e) {
      throw badRequest('MALFORMED_PEM', (e as Error).message);
    }
    const leaf = new X509Certificate(ders[0]!);
    const kt = leaf.publicKey.asymmetricKeyType;
    checkKeyStrength(leaf.publicKey);
    if (kt !== 'ec' && kt !== 'rsa') throw badRequest('UNSUPPORTED_KEY', `certificates with ${kt} keys are not supported`);
    const key = makeKey(kt === 'ec' ? 'ecdsa-x509' : 'rsa-x509', Buffer.from(pemEncodeCertificates(ders), 'utf8'));
    const ok = validateDelegationCert(key, now);
    if (!ok.ok) throw badRequest(/RSA/.test(ok.reason) ? 'WEAK_KEY' : 'UNSUPPORTED_KEY', ok.reason);
    return key;
  }
  if (first.type !== 'PUBLIC KEY')
    throw badRequest('UNSUPPORTED_KEY', `expected a PUBLIC KEY or CERTIFICATE block, found ${first.type.slice(0, 40)}`);
  let pub: KeyObject;
  try {
    pub = createPublicKey({ key: first.bytes, format: 'der', type: 'spki' });
  } catch {
    throw badRequest('MALFORMED_PEM', 'the PUBLIC KEY block is not a SubjectPublicKeyInfo');
  }
  checkKeyStrength(pub);
  const key = tufKeyFromPublic(pub);
  try {
    publicKeyObject(key);
  } catch (e) {
    throw toApiError(e);
  }
  return key;
}

export interface UploadedPrivateKey {
  privateKey: KeyObject;
  role?: string;
  gun?: string;
}

/** Decrypts an uploaded private key PEM and checks its strength; the caller drops it after use. */
export function readPrivateKeyPem(pem: string, passphrase: string | undefined): UploadedPrivateKey {
  let imported;
  try {
    imported = importPrivateKeyPem(pem, passphrase);
  } catch (e) {
    throw toApiError(e);
  }
  checkKeyStrength(imported.privateKey);
  return {
    privateKey: imported.privateKey,
    ...(imported.role ? { role: imported.role } : {}),
    ...(imported.gun ? { gun: imported.gun } : {}),
  };
}

/** Whether a metadata key (plain or x509) holds the public half of `k`. */
export function sameKey(meta: TufKey, k: KeyObject): boolean {
  try {
    const a = publicKeyObject(meta).export({ type: 'spki', format: 'der' });
    const b = (k.type === 'private' ? createPublicKey(k) : k).export({ type: 'spki', format: 'der' });
    return a.equals(b);
  } catch {
    return false;
  }
}

/** The metadata form of a public key: the listed x509 key if one of `candidates` holds it, else a plain key. */
export function metadataKeyFor(k: KeyObject, candidates: TufKey[]): TufKey {
  return candidates.find((c) => isX509(c) && sameKey(c, k)) ?? tufKeyFromPublic(k.type === 'private' ? createPublicKey(k) : k);
}

export { normaliseSignature } from '../core/crypto/signature.js';
