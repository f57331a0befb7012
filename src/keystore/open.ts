// Chooses the keystore from configuration: `file` (default), `pkcs11` (an HSM token) or `keyv`
// (Redis or PostgreSQL, for several instances without a shared disk).
import { readFileSync } from 'node:fs';
import { FileKeyStore } from './file.js';
import { KeyvKeyStore } from './keyv.js';
import { Pkcs11KeyStore } from './pkcs11.js';
import { KeyStoreError, type KeyStore } from './types.js';

/** Which keystore to open, and where it is. */
export interface KeyStoreOptions {
  keystore?: 'file' | 'pkcs11' | 'keyv';
  keysDir: string;
  pkcs11?: { module: string; tokenLabel: string; pin?: string; pinFile?: string };
  keystoreUrl?: string;
}

/** A keystore and how to let go of what it holds open (sessions, connections). */
export interface OpenedKeyStore {
  keys: KeyStore;
  close(): Promise<void>;
}

/** Reads a PIN file: the first line, without the line end. The error never contains the file's content. */
export function readPinFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KeyStoreError(`cannot read TRUSTGATE_PKCS11_PIN_FILE ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const pin = text.split(/\r?\n/)[0] ?? '';
  if (!pin) throw new KeyStoreError(`TRUSTGATE_PKCS11_PIN_FILE ${path} is empty`);
  return pin;
}

/**
 * Opens the configured keystore. `passphrase` is the key-encryption passphrase (file and keyv
 * stores); the pkcs11 store uses the token PIN instead, so the passphrase is only evaluated for
 * stores that need it.
 */
export async function openKeyStore(config: KeyStoreOptions, passphrase: () => string | Promise<string>): Promise<OpenedKeyStore> {
  switch (config.keystore ?? 'file') {
    case 'pkcs11': {
      const p = config.pkcs11;
      if (!p) throw new KeyStoreError('TRUSTGATE_KEYSTORE=pkcs11 needs TRUSTGATE_PKCS11_MODULE and TRUSTGATE_PKCS11_TOKEN_LABEL');
      const pin = p.pinFile ? readPinFile(p.pinFile) : p.pin;
      if (!pin) throw new KeyStoreError('TRUSTGATE_KEYSTORE=pkcs11 needs TRUSTGATE_PKCS11_PIN_FILE or TRUSTGATE_PKCS11_PIN');
      const keys = Pkcs11KeyStore.open({ module: p.module, tokenLabel: p.tokenLabel, pin });
      return { keys, close: () => keys.close() };
    }
    case 'keyv': {
      if (!config.keystoreUrl) throw new KeyStoreError('TRUSTGATE_KEYSTORE=keyv needs TRUSTGATE_KEYSTORE_URL');
      const keys = await KeyvKeyStore.connect(config.keystoreUrl, await passphrase());
      return { keys, close: () => keys.close() };
    }
    default: {
      const keys = FileKeyStore.open(config.keysDir, await passphrase());
      return { keys, close: async () => undefined };
    }
  }
}
