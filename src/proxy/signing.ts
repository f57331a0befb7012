// Sign on push: a manifest the upstream accepted under a tag becomes a target (sha256 and
// length, docker's format) in the role the policy names, through the change pipeline
// (trust/changes.ts) with the PUSHER's usable keys; a push is never parked as a pending change.
// When the policy also asks for cosign signatures (`signatures: cosign` or `both`), the pipeline's
// after-publish step writes one with the pusher's ECDSA key of the role. An admin's first push
// initialises the repository's trust (root kept in the keystore, and targets/releases with a new
// held key, as docker trust makes it) and creates a missing delegated role under `targets` with a
// new held key.
import { keyId } from '../core/crypto/keys.js';
import type { Signer } from '../core/crypto/signer.js';
import { setEntry } from '../core/tuf/metadata.js';
import { isDelegationName, parentRole } from '../core/tuf/roles.js';
import type { KeyStore } from '../keystore/types.js';
import { writeCosignSignature, type CosignResult } from '../registry/signatures.js';
import type { RegistryClient } from '../registry/artifacts.js';
import { TrustChangeError, type AfterPublish, type Caller, type TrustChanges } from '../trust/changes.js';
import { EditorError } from '../trust/editor.js';

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
  /** The cosign signature written, when the policy asks for one. */
  cosign?: CosignResult;
  /** The journal id of the tag's commit: put in its audit entry, then TrustService.acknowledge it. */
  journal?: string;
}

export interface PushSignOptions {
  /** Write a cosign signature too, into this upstream repository. */
  cosign?: { repo: string };
}

const isEcdsa = (s: Signer) => s.key.keytype.startsWith('ecdsa');
const RELEASES = 'targets/releases';

export class PushSigner {
  constructor(
    readonly changes: TrustChanges,
    readonly keys: KeyStore,
    /** The upstream registry, for cosign signatures. */
    private registry?: RegistryClient,
  ) {}

  /** Why `who` cannot sign a push into `role` of `gun` (with a cosign signature when asked), or undefined when it can. Writes nothing. */
  async refusal(gun: string, role: string, who: Caller, o: { cosign?: boolean } = {}): Promise<string | undefined> {
    try {
      if (o.cosign && !this.registry) return 'the policy asks for a cosign signature and no upstream registry client is configured';
      const signers = await this.pusherSigners(gun, role, who);
      if (o.cosign && signers && !signers.some(isEcdsa))
        return `the policy asks for a cosign signature, which needs an ECDSA key, and none of this token's keys of ${role} in ${gun} is one`;
      return undefined;
    } catch (e) {
      if (e instanceof TrustChangeError || e instanceof EditorError) return e.message;
      throw e;
    }
  }

  /**
   * The pusher's held keys of `role`, enough for its threshold; undefined when the repository or
   * the role does not exist yet and an admin's push creates it.
   */
  private async pusherSigners(gun: string, role: string, who: Caller): Promise<Signer[] | undefined> {
    let keyids: string[];
    let threshold: number;
    try {
      const s = await this.changes.editor.signingRole(gun, role);
      keyids = s.role.keyids;
      threshold = s.role.threshold;
    } catch (e) {
      if (!(e instanceof EditorError && e.code === 'NOT_FOUND')) throw e;
      if (who.admin) return undefined;
      throw new TrustChangeError('FORBIDDEN', `${e.message}: only an admin token's push creates it`);
    }
    const signers = await this.changes.usableSigners(gun, who, keyids);
    if (signers.length === 0) await this.changes.roleSigners(gun, role, who);
    if (signers.length < threshold) {
      throw new TrustChangeError(
        'THRESHOLD_NOT_MET',
        `role ${role} in ${gun} needs ${threshold} signatures and this token may sign with ${signers.length} of its keys`,
      );
    }
    return signers;
  }

  /** Signs `tag` → `digest` (`sha256:<hex>`), `length` bytes, into `role`, with `who`'s usable keys. */
  sign(gun: string, role: string, tag: string, digest: string, length: number, who: Caller, o: PushSignOptions = {}): Promise<SignResult> {
    if (!/^sha256:[0-9a-f]{64}$/.test(digest))
      return Promise.reject(new TrustChangeError('INVALID_REQUEST', `cannot sign ${digest}: only sha256 digests are signed`));
    // Initialising, delegating and signing queue as one change of the GUN.
    return this.changes.locks.run(gun, async () => {
      let initialised = false;
      if (!(await this.changes.trust.current(gun, 'root'))) {
        if (!who.admin)
          throw new TrustChangeError('FORBIDDEN', `repository ${gun} has no trust data: only an admin token's push initialises it`);
        try {
          await this.changes.editor.init(gun, { rootKey: 'keystore' });
          initialised = true;
        } catch (e) {
          if (!(e instanceof EditorError && e.code === 'CONFLICT')) throw e;
        }
      }
      // As docker trust does, a repository it initialises gets targets/releases, which CI signs into.
      if (initialised && role !== RELEASES) await this.ensureDelegation(gun, RELEASES, who);
      const delegated = role !== 'targets' ? await this.ensureDelegation(gun, role, who) : false;
      const meta = { hashes: { sha256: Buffer.from(digest.slice(7), 'hex').toString('base64') }, length };
      let cosign: CosignResult | undefined;
      const after: AfterPublish[] = [];
      const reg = this.registry;
      if (o.cosign && reg) {
        const repo = o.cosign.repo;
        after.push(async ({ signers }) => {
          const ec = signers.find(isEcdsa);
          if (!ec)
            throw new TrustChangeError(
              'FORBIDDEN',
              `a cosign signature needs an ECDSA key of ${role} in ${gun}, and this token may use none`,
            );
          cosign = await writeCosignSignature(reg, repo, gun, digest, ec);
        });
      }
      const p = await this.changes.apply({
        gun,
        caller: who,
        action: 'proxy.sign',
        summary: `sign pushed ${tag} in ${role}`,
        edits: new Map([[role, (b) => setEntry(b.targets, tag, meta)]]),
        whenShort: 'refuse',
        after,
        audit: { role, detail: { tag, digest, length } },
      });
      return {
        gun,
        role,
        tag,
        digest,
        length,
        initialised,
        delegated,
        versions: p.versions,
        ...(cosign ? { cosign } : {}),
        ...(p.journal ? { journal: p.journal } : {}),
      };
    });
  }

  /** Creates `role` (a direct child of an existing role) with a new held key, unless it exists; admins only. */
  private async ensureDelegation(gun: string, role: string, who: Caller): Promise<boolean> {
    if (!isDelegationName(role)) throw new TrustChangeError('INVALID_ROLE', `${role} is not a delegation name`);
    try {
      await this.changes.editor.signingRole(gun, role);
      return false;
    } catch (e) {
      if (!(e instanceof EditorError && e.code === 'NOT_FOUND')) throw e;
    }
    if (!who.admin)
      throw new TrustChangeError('FORBIDDEN', `role ${role} is not delegated in ${gun}: only an admin token's push creates it`);
    const parent = parentRole(role);
    const key = await this.keys.generate(gun, role, 'ecdsa');
    const id = keyId(key.public);
    await this.changes.apply({
      gun,
      caller: who,
      action: 'delegation.add',
      summary: `create delegation ${role} on push`,
      edits: new Map([
        [
          parent,
          (b) => {
            b.delegations.keys[id] = key.public;
            b.delegations.roles = [
              ...b.delegations.roles.filter((r) => r.name !== role),
              { name: role, keyids: [id], threshold: 1, paths: [''] },
            ];
          },
        ],
      ]),
      whenShort: 'refuse',
    });
    return true;
  }
}
