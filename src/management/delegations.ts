// Delegations and signers: any delegation (keys, paths, threshold), and Docker's signers
// (`docker trust signer add/remove`: targets/<name> plus its keys in targets/releases).
import { keyId, type TufKey } from '../core/crypto/keys.js';
import type { Algorithm } from '../core/crypto/signer.js';
import { isDelegationName } from '../core/tuf/roles.js';
import type { Actor } from '../auth/guard.js';
import { DraftBuilder, requireRole, roleKeysOf, type RepoView } from './draft.js';
import { badRequest, conflict } from '../http/api-error.js';
import { parsePublicKeyPem } from './material.js';
import type { ManagementContext } from './context.js';
import type { Keyring } from './keys.js';
import type { Repositories } from './repositories.js';

interface KeysRequest {
  publicKeys?: string[];
  generate?: boolean;
  algorithm?: Algorithm;
  threshold?: number;
}

export class Delegations {
  constructor(
    private c: ManagementContext,
    private repositories: Repositories,
    private keyring: Keyring,
  ) {}

  async list(gun: string) {
    return (await this.repositories.inspect(gun)).delegations;
  }

  async listSigners(gun: string) {
    const info = await this.repositories.inspect(gun);
    const keys = await this.keyring.list(gun);
    const heldOf = (id: string) => keys.find((k) => k.id === id)?.held ?? 'offline';
    return info.signers.map((s) => ({ ...s, keys: s.keyIds.map((id) => ({ id, held: heldOf(id) })) }));
  }

  /**
   * The keys given for `role` (PEMs) and, with `generate`, one made on the server (kept in the
   * keystore under `role`). Refused when the role would have no key, or fewer than its threshold.
   */
  private async keysFor(
    v: RepoView,
    role: string,
    req: KeysRequest,
    what: string,
  ): Promise<{ given: TufKey[]; generated: TufKey[]; created: string[] }> {
    const given = (req.publicKeys ?? []).map((p) => parsePublicKeyPem(p, new Date(this.c.now())));
    const existing = roleKeysOf(v, role);
    const total = new Set([...(existing?.role.keyids ?? []), ...given.map(keyId)]).size + (req.generate ? 1 : 0);
    const threshold = req.threshold ?? existing?.role.threshold ?? 1;
    if (total === 0) throw badRequest('INVALID_REQUEST', `a ${what} needs at least one key: give publicKeys or generate`);
    if (threshold > total) throw badRequest('THRESHOLD_TOO_HIGH', `threshold ${threshold} is larger than the ${total} key(s) of ${role}`);
    if (!req.generate) return { given, generated: [], created: [] };
    const rec = await this.c.keys.generate(v.gun, role, req.algorithm ?? 'ecdsa');
    return { given, generated: [rec.public], created: [rec.id] };
  }

  /** Runs `fn`; if it fails, the keys generated for it leave the keystore again. */
  private async dropOnFailure<T>(created: string[], fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      await this.c.dropKeys(created);
      throw e;
    }
  }

  async add(actor: Actor, gun: string, req: KeysRequest & { role: string; paths?: string[] }) {
    return this.c.change(
      actor,
      'delegation.add',
      gun,
      async () => {
        const v = await this.c.view(gun);
        if (!isDelegationName(req.role))
          throw badRequest('INVALID_ROLE', 'delegation names look like targets/<name> (lower case letters, digits, - and _)');
        const { given, generated, created } = await this.keysFor(v, req.role, req, 'delegation');
        const keys = req.generate ? generated : given;
        return this.dropOnFailure(created, async () => {
          const b = new DraftBuilder(v, this.c.now());
          const what = b.upsertDelegation(req.role, [...given, ...generated], {
            ...(req.paths ? { paths: req.paths } : {}),
            ...(req.threshold !== undefined ? { threshold: req.threshold } : {}),
          });
          const result = await this.c.applyBuilt(
            actor,
            b,
            'delegation.add',
            `${what === 'created' ? 'create' : 'update'} delegation ${req.role}`,
            { created },
          );
          await this.c.auditChange(actor, 'delegation.add', gun, result, { role: req.role }, { keyIds: keys.map(keyId) });
          return { ...result, role: req.role, keyIds: keys.map(keyId) };
        });
      },
      { role: req.role },
    );
  }

  async remove(actor: Actor, gun: string, role: string) {
    return this.c.change(
      actor,
      'delegation.remove',
      gun,
      async () => {
        const v = await this.c.view(gun);
        if (!isDelegationName(role)) throw badRequest('INVALID_ROLE', 'not a delegation name');
        requireRole(v, role);
        const b = new DraftBuilder(v, this.c.now());
        b.removeDelegation(role);
        const result = await this.c.applyBuilt(actor, b, 'delegation.remove', `remove delegation ${role}`);
        await this.c.auditChange(actor, 'delegation.remove', gun, result, { role });
        return result;
      },
      { role },
    );
  }

  /** `docker trust signer add`: the signer's keys go into targets/<name> and targets/releases. */
  async addSigner(actor: Actor, gun: string, req: KeysRequest & { name: string; paths?: string[] }) {
    const role = `targets/${req.name}`;
    return this.c.change(
      actor,
      'signer.add',
      gun,
      async () => {
        const v = await this.c.view(gun);
        if (req.name === 'releases' || !isDelegationName(role) || req.name.includes('/'))
          throw badRequest('INVALID_ROLE', 'signer names are lower case letters, digits, - and _, and not "releases"');
        const { given, generated, created } = await this.keysFor(v, role, req, 'signer');
        const keys = req.generate ? generated : given;
        return this.dropOnFailure(created, async () => {
          const b = new DraftBuilder(v, this.c.now());
          b.upsertDelegation(role, keys, {
            paths: req.paths ?? [''],
            ...(req.threshold !== undefined ? { threshold: req.threshold } : {}),
          });
          b.upsertDelegation('targets/releases', keys, roleKeysOf(v, 'targets/releases') ? {} : { paths: [''] });
          const result = await this.c.applyBuilt(actor, b, 'signer.add', `add signer ${req.name}`, { created });
          await this.c.auditChange(actor, 'signer.add', gun, result, { role }, { keyIds: keys.map(keyId) });
          return { ...result, name: req.name, keyIds: keys.map(keyId) };
        });
      },
      { role },
    );
  }

  /** `docker trust signer remove`: drops targets/<name> and its keys from targets/releases. */
  async removeSigner(actor: Actor, gun: string, name: string) {
    const role = `targets/${name}`;
    return this.c.change(
      actor,
      'signer.remove',
      gun,
      async () => {
        const v = await this.c.view(gun);
        if (name === 'releases' || !isDelegationName(role)) throw badRequest('INVALID_ROLE', 'not a signer name');
        requireRole(v, role);
        const ids = roleKeysOf(v, role)!.role.keyids;
        const b = new DraftBuilder(v, this.c.now());
        b.removeDelegation(role);
        const releases = roleKeysOf(v, 'targets/releases');
        if (releases) {
          const others = new Set(
            (v.targets.get('targets')?.body.delegations.roles ?? [])
              .filter((r) => r.name !== role && r.name !== 'targets/releases')
              .flatMap((r) => r.keyids),
          );
          const remaining = releases.role.keyids.filter((id) => !ids.includes(id) || others.has(id));
          if (remaining.length === 0) b.removeDelegation('targets/releases');
          else if (remaining.length < releases.role.threshold) {
            throw conflict(
              'KEY_IN_USE',
              `targets/releases would keep ${remaining.length} key(s) for threshold ${releases.role.threshold}: lower its threshold first`,
            );
          } else if (remaining.length !== releases.role.keyids.length)
            b.editRoleKeys('targets/releases', (r) => void (r.keyids = remaining));
        }
        const result = await this.c.applyBuilt(actor, b, 'signer.remove', `remove signer ${name}`);
        await this.c.auditChange(actor, 'signer.remove', gun, result, { role });
        return result;
      },
      { role },
    );
  }
}
