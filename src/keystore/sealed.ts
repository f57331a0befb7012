// Envelope encryption for private keys at rest: AES-256-GCM under a key-encryption key derived
// with scrypt from the configured passphrase. The record's identity (id, GUN, role) is bound as
// associated data, so a sealed key cannot be swapped into another record unnoticed.
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { KeyStoreError } from './types.js';

export interface SealedBlob {
  iv: string;
  tag: string;
  ciphertext: string;
}

export interface KdfParams {
  salt: string;
  N: number;
  r: number;
  p: number;
}

export function newKdfParams(): KdfParams {
  return { salt: randomBytes(16).toString('base64'), N: 1 << 15, r: 8, p: 1 };
}

/** Derives the key-encryption key once; callers keep it for the life of the process. */
export function deriveKek(passphrase: string, kdf: KdfParams): Buffer {
  return scryptSync(passphrase, Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * 1024 * 1024 });
}

export function seal(kek: Buffer, plaintext: Buffer, aad: string): SealedBlob {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ciphertext: ciphertext.toString('base64') };
}

/** Decrypts; the caller should zero the result when done. */
export function unseal(kek: Buffer, blob: SealedBlob, aad: string): Buffer {
  try {
    const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(blob.iv, 'base64'));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(Buffer.from(blob.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(blob.ciphertext, 'base64')), d.final()]);
  } catch {
    throw new KeyStoreError('cannot decrypt key: wrong key-encryption passphrase or damaged key file');
  }
}
