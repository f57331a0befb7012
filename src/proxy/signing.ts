// Sign on push: a manifest the upstream accepted under a tag becomes a target (sha256 and
// length, docker's format) in the role the policy names, signed with a key trustgate holds, and
// a new targets/snapshot/timestamp is published. The repository's trust is initialised on its
// first push (root kept in the keystore) and a delegated role is created under `targets` with a
// new held key when it does not exist yet. Edits of one GUN run one at a time, queued behind the
// management API's and the signing service's edits of it when the app's GunLocks is handed in.
import { keyId } from '../core/crypto/keys.js';
import { setEntry } from '../core/tuf/metadata.js';
import { isDelegationName, parentRole } from '../core/tuf/roles.js';
import type { KeyStore } from '../keystore/types.js';
import { VersionConflictError } from '../storage/types.js';
import { EditorError, RepoEditor } from '../trust/editor.js';
import { GunLocks } from '../trust/locks.js';
import type { TrustService } from '../trust/service.js';

export interface SignResult {
  gun: string;
  role: string;
  tag: string;
  digest: string;
  length: number;
  /** Whether this push initialised the repository's trust data. */
  initialised: boolean;
  /** Whether this push created the delegated role. */
  delegated: boolean;
  /** Versions published. */
  versions: Record<string, number>;
}

export class SigningError extends Error {
  override name = 'SigningError';
}

export class PushSigner {
  readonly editor: RepoEditor;

  constructor(
    readonly trust: TrustService,
    readonly keys: KeyStore,
    now: () => number = Date.now,
    private locks: GunLocks = new GunLocks(),
  ) {
    this.editor = new RepoEditor(trust, keys, now);
  }

  /** Signs `tag` → `digest` (`sha256:<hex>`), `length` bytes, into `role`. */
  sign(gun: string, role: string, tag: string, digest: string, length: number): Promise<SignResult> {
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return Promise.reject(new SigningError(`cannot sign ${digest}: only sha256 digests are signed`));
    return this.locks.run(gun, async () => {
      let initialised = false;
      if (!(await this.trust.current(gun, 'root'))) {
        try {
          await this.editor.init(gun, { rootKey: 'keystore' });
          initialised = true;
        } catch (e) {
          if (!(e instanceof EditorError && e.code === 'CONFLICT')) throw e;
        }
      }
      const delegated = role !== 'targets' ? await this.ensureDelegation(gun, role) : false;
      const meta = { hashes: { sha256: Buffer.from(digest.slice(7), 'hex').toString('base64') }, length };
      let files;
      for (let attempt = 0; ; attempt++) {
        try {
          files = await this.editor.editTargets(gun, role, (b) => {
            setEntry(b.targets, tag, meta);
          });
          break;
        } catch (e) {
          // Another writer (a notary client, another trustgate) published first: redo over its data.
          if (!(e instanceof VersionConflictError) || attempt >= 3) throw e;
        }
      }
      const versions: Record<string, number> = {};
      for (const f of files) versions[f.role] = f.version;
      return { gun, role, tag, digest, length, initialised, delegated, versions };
    });
  }

  /** Creates `role` (a direct child of an existing role) with a new held key, unless it exists. */
  private async ensureDelegation(gun: string, role: string): Promise<boolean> {
    if (!isDelegationName(role)) throw new SigningError(`${role} is not a delegation name`);
    try {
      await this.editor.signingRole(gun, role);
      return false;
    } catch (e) {
      if (!(e instanceof EditorError && e.code === 'NOT_FOUND')) throw e;
    }
    const parent = parentRole(role);
    const key = await this.keys.generate(gun, role, 'ecdsa');
    const id = keyId(key.public);
    await this.editor.editTargets(gun, parent, (b) => {
      b.delegations.keys[id] = key.public;
      b.delegations.roles = [...b.delegations.roles.filter((r) => r.name !== role), { name: role, keyids: [id], threshold: 1, paths: [''] }];
    });
    return true;
  }
}
