// Small pieces shared by the registry token verifier and the built-in issuer.
import { createHash, type KeyObject } from 'node:crypto';

/** One entry of a registry token's `access` claim. */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/**
 * The libtrust key ID docker/distribution uses as a JWT `kid`: the first 240 bits of the SHA-256
 * of the DER SubjectPublicKeyInfo, base32 without padding, in twelve `:`-separated groups of four.
 */
export function libtrustKeyId(pub: KeyObject): string {
  const digest = createHash('sha256')
    .update(pub.export({ format: 'der', type: 'spki' }))
    .digest()
    .subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}
