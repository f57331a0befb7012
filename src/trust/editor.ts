// Reading and creating a repository's trust data on the server: the role that signs a targets
// role, the next version of a targets body, a new root key, and a repository's first versions.
// Changes to existing data go through TrustChanges (changes.ts), which uses these.
import type { KeyObject } from 'node:crypto';
import { keyId, type TufKey } from '../core/crypto/keys.js';
import { LocalSigner, newPrivateKey, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { createRootCertificate } from '../core/crypto/x509.js';
import { canonicalBytes } from '../core/json/canonical.js';
import { Metadata, countValidSignatures, type RoleKeys, type RootBody, type Signature, type TargetsBody } from '../core/tuf/metadata.js';
import { isTargetsRole, parentRole } from '../core/tuf/roles.js';
import { YEAR_MS, formatRfc3339 } from '../core/tuf/time.js';
import type { PlannedFile } from '../core/tuf/update.js';
import type { KeyRecord, KeyStore } from '../keystore/types.js';
import type { AuditNote, TrustService } from './service.js';
import { envelope, signBody } from './sign.js';

export class EditorError extends Error {
  override name = 'EditorError';
  constructor(
    readonly code: 'NOT_FOUND' | 'CONFLICT' | 'INVALID',
    message: string,
  ) {
    super(message);
  }
}

export const ROOT_LIFETIME_MS = 10 * YEAR_MS;
export const TARGETS_LIFETIME_MS = 3 * YEAR_MS;

export interface InitOptions {
  /** `keystore`: the root key stays on the server (encrypted); `offline`: it is returned once and forgotten. */
  rootKey: 'keystore' | 'offline';
  algorithm?: Algorithm;
  /** The audit entry to journal with the first publish (TrustService.publish). */
  note?: AuditNote;
}

export interface InitResult {
  gun: string;
  rootKeyId: string;
  targetsKeyId: string;
  snapshotKeyId: string;
  timestampKeyId: string;
  /** Only for an offline root: the private key, for the caller to encrypt and hand out once. */
  offlineRootKey?: KeyObject;
  files: PlannedFile[];
}

/** Where the signing keys of a targets role are listed. */
export interface SigningRole {
  keys: Record<string, TufKey>;
  role: RoleKeys;
}

export class RepoEditor {
  constructor(
    readonly trust: TrustService,
    readonly keys: KeyStore,
    private now: () => number = Date.now,
  ) {}

  private async currentMd<T extends RootBody | TargetsBody>(gun: string, role: string): Promise<Metadata<T> | undefined> {
    const f = await this.trust.current(gun, role);
    return f && Metadata.parse<T>(role, f.bytes);
  }

  async root(gun: string): Promise<Metadata<RootBody>> {
    const root = await this.currentMd<RootBody>(gun, 'root');
    if (!root) throw new EditorError('NOT_FOUND', `repository ${gun} has no trust data`);
    return root;
  }

  /** The keys and threshold that sign `role`: root's for `targets`, the parent's delegation below. */
  async signingRole(gun: string, role: string): Promise<SigningRole> {
    if (!isTargetsRole(role)) throw new EditorError('INVALID', `${role} is not a targets role`);
    if (role === 'targets') {
      const root = await this.root(gun);
      return { keys: root.body.keys, role: root.body.roles.targets };
    }
    const parent = await this.currentMd<TargetsBody>(gun, parentRole(role));
    const entry = parent?.body.delegations.roles.find((r) => r.name === role);
    if (!parent || !entry) throw new EditorError('NOT_FOUND', `role ${role} is not delegated in ${gun}`);
    return { keys: parent.body.delegations.keys, role: entry };
  }

  /** Signers this server holds for the given key IDs, limited to keys stored for this GUN. */
  heldSigners(gun: string, keyids: readonly string[]): Promise<Signer[]> {
    return this.trust.heldSigners(gun, keyids);
  }

  /** Number of distinct valid signatures still missing for `signing`. */
  static missing(body: unknown, signatures: Signature[], signing: SigningRole): number {
    const valid = countValidSignatures(canonicalBytes(body), signatures, signing.keys, signing.role.keyids);
    return Math.max(0, signing.role.threshold - valid.size);
  }

  /** A new targets body: the current one (or an empty one) with version+1 and a fresh expiry. */
  async nextTargetsBody(gun: string, role: string): Promise<TargetsBody> {
    const cur = await this.currentMd<TargetsBody>(gun, role);
    const latest = (await this.trust.store.latestVersions(gun)).get(role) ?? 0;
    const base: TargetsBody = cur
      ? (JSON.parse(JSON.stringify(cur.body)) as TargetsBody)
      : { _type: 'Targets', delegations: { keys: {}, roles: [] }, expires: '', targets: {}, version: 0 };
    base.version = Math.max(base.version, latest) + 1;
    base.expires = formatRfc3339(this.now() + TARGETS_LIFETIME_MS);
    return base;
  }

  /** Makes a root key: a key pair wrapped in a self-signed certificate whose CN is the GUN. */
  async makeRootKey(gun: string, alg: Algorithm = 'ecdsa'): Promise<{ privateKey: KeyObject; key: TufKey }> {
    if (alg === 'ed25519') throw new EditorError('INVALID', 'root keys must be ECDSA or RSA (they are wrapped in an X.509 certificate)');
    const privateKey = newPrivateKey(alg);
    const { key } = await createRootCertificate({ gun, privateKey, notBefore: new Date(this.now()) });
    return { privateKey, key };
  }

  /**
   * Initialises trust for a GUN on the server: root (keystore or offline), targets held in the
   * keystore, snapshot and timestamp held by the server; publishes root and targets v1.
   */
  async init(gun: string, opts: InitOptions): Promise<InitResult> {
    if (await this.trust.current(gun, 'root')) throw new EditorError('CONFLICT', `repository ${gun} already has trust data`);
    const alg = opts.algorithm ?? 'ecdsa';
    const root = await this.makeRootKey(gun, alg);
    const rootId = keyId(root.key);
    const rootSigner = new LocalSigner(root.privateKey, root.key);
    const targets = await this.keys.generate(gun, 'targets', alg === 'rsa' ? 'rsa' : 'ecdsa');
    const snapshot = await this.trust.serverKey(gun, 'snapshot');
    const timestamp = await this.trust.serverKey(gun, 'timestamp');
    const rootBody: RootBody = {
      _type: 'Root',
      consistent_snapshot: false,
      expires: formatRfc3339(this.now() + ROOT_LIFETIME_MS),
      keys: { [rootId]: root.key, [targets.id]: targets.public, [snapshot.id]: snapshot.public, [timestamp.id]: timestamp.public },
      roles: {
        root: { keyids: [rootId], threshold: 1 },
        snapshot: { keyids: [snapshot.id], threshold: 1 },
        targets: { keyids: [targets.id], threshold: 1 },
        timestamp: { keyids: [timestamp.id], threshold: 1 },
      },
      version: 1,
    };
    const targetsBody: TargetsBody = {
      _type: 'Targets',
      delegations: { keys: {}, roles: [] },
      expires: formatRfc3339(this.now() + TARGETS_LIFETIME_MS),
      targets: {},
      version: 1,
    };
    const targetsSigners = await this.heldSigners(gun, [targets.id]);
    const files = await this.trust.publish(
      gun,
      new Map([
        ['root', envelope(rootBody, await signBody(rootBody, [rootSigner]))],
        ['targets', envelope(targetsBody, await signBody(targetsBody, targetsSigners))],
      ]),
      opts.note,
    );
    if (opts.rootKey === 'keystore') await this.keys.importKey(gun, 'root', root.privateKey, root.key);
    return {
      gun,
      rootKeyId: rootId,
      targetsKeyId: targets.id,
      snapshotKeyId: snapshot.id,
      timestampKeyId: timestamp.id,
      ...(opts.rootKey === 'offline' ? { offlineRootKey: root.privateKey } : {}),
      files,
    };
  }

  /** Keys the keystore holds for a GUN. */
  listKeys(gun: string): Promise<KeyRecord[]> {
    return this.keys.list({ gun });
  }
}
