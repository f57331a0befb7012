// Signatures made elsewhere, as TUF stores them.
import { publicKeyObject, type TufKey } from './keys.js';
import { DER, DerError, derChildren, derReadExact } from './pem.js';

/**
 * A signature as TUF wants it. ECDSA signatures may be uploaded in DER (what `openssl dgst
 * -sign` writes) and are converted to raw r‖s; everything else passes unchanged.
 */
export function normaliseSignature(key: TufKey, sig: Buffer): Buffer {
  if (!key.keytype.startsWith('ecdsa') || sig[0] !== DER.SEQUENCE) return sig;
  let size: number;
  try {
    const curve = publicKeyObject(key).asymmetricKeyDetails?.namedCurve;
    size = curve === 'prime256v1' ? 32 : curve === 'secp384r1' ? 48 : curve === 'secp521r1' ? 66 : 0;
  } catch {
    return sig;
  }
  if (size === 0 || sig.length === 2 * size) return sig;
  try {
    const ints = derChildren(derReadExact(sig));
    if (ints.length !== 2 || ints.some((n) => n.tag !== DER.INTEGER)) return sig;
    const pad = (v: Buffer) => {
      let x = v;
      while (x.length > 0 && x[0] === 0) x = x.subarray(1);
      if (x.length > size) throw new DerError('integer too long');
      return Buffer.concat([Buffer.alloc(size - x.length), x]);
    };
    return Buffer.concat([pad(ints[0]!.value), pad(ints[1]!.value)]);
  } catch {
    return sig;
  }
}
