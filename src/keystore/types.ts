// The keystore port: where private keys live. The trust core only ever sees Signers.
import type { TufKey } from '../core/crypto/keys.js';
import type { Algorithm, Signer } from '../core/crypto/signer.js';
import type { KeyObject } from 'node:crypto';

export interface KeyRecord {
  /** TUF key ID of `public` (for x509 keys, of the certificate). */
  id: string;
  gun: string;
  role: string;
  algorithm: Algorithm;
  /** The key as metadata lists it. */
  public: TufKey;
  createdAt: string;
  /** Which keystore holds the private half. */
  held: string;
}

export interface KeyStore {
  readonly kind: string;
  /** Makes and stores a new key pair for a GUN and role. */
  generate(gun: string, role: string, alg: Algorithm): Promise<KeyRecord>;
  /**
   * Stores an existing private key. `publicKey` overrides the plain public key, e.g. with the
   * x509 certificate a root key is published as.
   */
  importKey(gun: string, role: string, privateKey: KeyObject, publicKey?: TufKey): Promise<KeyRecord>;
  get(id: string): Promise<KeyRecord | undefined>;
  list(filter?: { gun?: string; role?: string }): Promise<KeyRecord[]>;
  /** A Signer for a stored key, or undefined if this store does not hold it. */
  signer(id: string): Promise<Signer | undefined>;
  /** The private key itself, for export; stores whose keys never leave (HSMs) throw. */
  exportPrivate(id: string): Promise<KeyObject>;
  delete(id: string): Promise<boolean>;
  /** Throws when the keys cannot be reached (readiness); stores without it are probed with get(). */
  ping?(): Promise<void>;
}

export class KeyStoreError extends Error {
  override name = 'KeyStoreError';
}

/** The keystore's backend cannot be reached now (down, restarting, connection lost). */
export class KeyStoreUnavailableError extends KeyStoreError {
  override name = 'KeyStoreUnavailableError';
}
