// Sign on push: a manifest the upstream accepted under a tag becomes a target (sha256 and
// length, docker's format) in the role the policy names, signed with the PUSHER's usable keys
// (an admin token: every held key of the role; a signer token: its keyIds among them), and a new
// targets/snapshot/timestamp is published. An admin's first push initialises the repository's
// trust (root kept in the keystore) and creates a missing delegated role under `targets` with a
// new held key. Edits of one GUN run one at a time, queued behind the management API's and the
// signing service's edits of it when the app's GunLocks is handed in.
import { keyId } from '../core/crypto/keys.js';
import type { Signer } from '../core/crypto/signer.js';
import { setEntry } from '../core/tuf/metadata.js';
import { isDelegationName, parentRole } from '../core/tuf/roles.js';
import type { KeyStore } from '../keystore/types.js';
import { SigningService, SigningError as RefusedSigning, type SigningIdentity } from '../signing/service.js';
import type { ImageVerifier } from '../signing/verifier.js';
import { VersionConflictError } from '../storage/types.js';
import { EditorError, RepoEditor, type SigningRole } from '../trust/editor.js';
import { GunLocks } from '../trust/locks.js';
import type { AuditNote, TrustService } from '../trust/service.js';

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
  /** Answers "which held keys may this caller use" (SigningService.signersFor). */
  private keysFor: Pick<SigningService, 'signersFor'>;

  constructor(
    readonly trust: TrustService,
    readonly keys: KeyStore,
    verifier: ImageVerifier,
    now: () => number = Date.now,
    private locks: GunLocks = new GunLocks(),
  ) {
    this.editor = new RepoEditor(trust, keys, now);
    this.keysFor = new SigningService({ editor: this.editor, verifier, locks, now });
  }

  /** Why `who` cannot sign a push into `role` of `gun`, or undefined when it can. Writes nothing. */
  async refusal(gun: string, role: string, who: SigningIdentity): Promise<string | undefined> {
    try {
      await this.pusherSigners(gun, role, who);
      return undefined;
    } catch (e) {
      if (e instanceof SigningError || e instanceof RefusedSigning || e instanceof EditorError) return e.message;
      throw e;
    }
  }

  /**
   * The pusher's held keys of `role`, enough for its threshold; undefined when the repository or
   * the role does not exist yet and an admin's push creates it. Throws a SigningError otherwise.
   */
  private async pusherSigners(gun: string, role: string, who: SigningIdentity): Promise<{ signing: SigningRole; signers: Signer[] } | undefined> {
    let signing: SigningRole;
    try {
      signing = await this.editor.signingRole(gun, role);
    } catch (e) {
      if (!(e instanceof EditorError && e.code === 'NOT_FOUND')) throw e;
      if (who.admin) return undefined;
      throw new SigningError(`${e.message}: only an admin token's push creates it`);
    }
    const signers = await this.keysFor.signersFor(gun, role, who, signing);
    if (signers.length < signing.role.threshold) {
      throw new SigningError(`role ${role} in ${gun} needs ${signing.role.threshold} signatures and this token may sign with ${signers.length} of its keys`);
    }
    return { signing, signers };
  }

  /**
   * Signs `tag` → `digest` (`sha256:<hex>`), `length` bytes, into `role`, with `who`'s usable keys.
   * `note`: the audit entry journaled with the tag's publish (TrustService.publish).
   */
  sign(gun: string, role: string, tag: string, digest: string, length: number, who: SigningIdentity, note?: AuditNote): Promise<SignResult> {
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return Promise.reject(new SigningError(`cannot sign ${digest}: only sha256 digests are signed`));
    return this.locks.run(gun, async () => {
      let initialised = false;
      if (!(await this.trust.current(gun, 'root'))) {
        if (!who.admin) throw new SigningError(`repository ${gun} has no trust data: only an admin token's push initialises it`);
        try {
          await this.editor.init(gun, { rootKey: 'keystore' });
          initialised = true;
        } catch (e) {
          if (!(e instanceof EditorError && e.code === 'CONFLICT')) throw e;
        }
      }
      const delegated = role !== 'targets' ? await this.ensureDelegation(gun, role, who) : false;
      const meta = { hashes: { sha256: Buffer.from(digest.slice(7), 'hex').toString('base64') }, length };
      let files;
      for (let attempt = 0; ; attempt++) {
        try {
          const chosen = await this.pusherSigners(gun, role, who);
          if (!chosen) throw new SigningError(`role ${role} is not delegated in ${gun}`);
          const body = await this.editor.nextTargetsBody(gun, role);
          setEntry(body.targets, tag, meta);
          files = await this.editor.publishSigned(gun, role, body, await RepoEditor.addSignatures(body, chosen.signers), chosen.signing, note);
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

  /** Creates `role` (a direct child of an existing role) with a new held key, unless it exists; admins only. */
  private async ensureDelegation(gun: string, role: string, who: SigningIdentity): Promise<boolean> {
    if (!isDelegationName(role)) throw new SigningError(`${role} is not a delegation name`);
    try {
      await this.editor.signingRole(gun, role);
      return false;
    } catch (e) {
      if (!(e instanceof EditorError && e.code === 'NOT_FOUND')) throw e;
    }
    if (!who.admin) throw new SigningError(`role ${role} is not delegated in ${gun}: only an admin token's push creates it`);
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
