// A repository as the management API sees it (every current role, parsed) and the builder that
// turns edits into a change: the next version of every role file the edits touch, plus the
// files whose signatures the edits invalidate, each with the signatures it needs. Pure: the
// view comes in, parts go out; signing and publishing happen in the service.
import { keyId, type TufKey } from '../core/crypto/keys.js';
import {
  Metadata,
  checkDelegationList,
  countValidSignatures,
  repeatedPublicKey,
  type DelegatedRole,
  type RoleKeys,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from '../core/tuf/metadata.js';
import { BASE_ROLES, isBaseRole, isDelegationName, isTargetsRole, parentRole } from '../core/tuf/roles.js';
import { formatRfc3339 } from '../core/tuf/time.js';
import { ROOT_LIFETIME_MS, TARGETS_LIFETIME_MS } from '../trust/editor.js';
import { badRequest, notFound } from '../http/api-error.js';
import type { ChangePart, Requirement } from '../trust/pending.js';

export interface RepoView {
  gun: string;
  root: Metadata<RootBody>;
  /** `targets` and every delegation with a current file. */
  targets: Map<string, Metadata<TargetsBody>>;
  snapshot?: Metadata<SnapshotBody>;
  timestamp?: Metadata<TimestampBody>;
  /** Highest stored version per role. */
  latest: Map<string, number>;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** The delegation entry for `role` in its parent body, if delegated. */
export function delegationEntry(parent: TargetsBody | undefined, role: string): DelegatedRole | undefined {
  return parent?.delegations.roles.find((r) => r.name === role);
}

/** Every role of the repository: base roles, then delegations reachable from `targets`, breadth first. */
export function allRoles(v: RepoView): string[] {
  const out: string[] = [...BASE_ROLES];
  const queue = ['targets'];
  while (queue.length) {
    const r = queue.shift()!;
    for (const d of v.targets.get(r)?.body.delegations.roles ?? []) {
      if (out.includes(d.name)) continue;
      out.push(d.name);
      queue.push(d.name);
    }
  }
  return out;
}

/** Keys and threshold of a role in the current repository, or undefined if it does not exist. */
export function roleKeysOf(v: RepoView, role: string): { keys: Record<string, TufKey>; role: RoleKeys; paths?: string[] } | undefined {
  if (isBaseRole(role)) return { keys: v.root.body.keys, role: v.root.body.roles[role] };
  if (!isDelegationName(role)) return undefined;
  const parent = v.targets.get(parentRole(role))?.body;
  const e = delegationEntry(parent, role);
  return e && { keys: parent!.delegations.keys, role: e, ...(e.paths ? { paths: e.paths } : {}) };
}

/** Checks a role name and that the repository has it: 400 for a bad name, 404 when absent. */
export function requireRole(v: RepoView, role: string): void {
  if (!isBaseRole(role) && !isDelegationName(role))
    throw badRequest(
      'INVALID_ROLE',
      `${JSON.stringify(role).slice(0, 80)} is not a role name (root, targets, snapshot, timestamp or targets/<name>)`,
    );
  if (!roleKeysOf(v, role)) throw notFound('ROLE_NOT_FOUND', `${v.gun} has no role ${role}`);
}

/** Key IDs every role of the repository lists. */
export function referencedKeyIds(root: RootBody, targets: Iterable<TargetsBody>): Set<string> {
  const out = new Set<string>();
  for (const r of Object.values(root.roles)) r.keyids.forEach((id) => out.add(id));
  for (const t of targets) for (const d of t.delegations.roles) d.keyids.forEach((id) => out.add(id));
  return out;
}

/** Collects edits to one repository and builds the parts of the change. */
export class DraftBuilder {
  private rootBody?: RootBody;
  private bodies = new Map<string, TargetsBody>();
  /** Roles whose keys or threshold the edits changed. */
  private rekeyed = new Set<string>();

  constructor(
    readonly view: RepoView,
    private nowMs: number,
  ) {}

  /** The next root (version + 1, fresh expiry), made on first use. */
  root(): RootBody {
    if (!this.rootBody) {
      this.rootBody = clone(this.view.root.body);
      this.rootBody.version = this.view.root.body.version + 1;
      this.rootBody.expires = formatRfc3339(this.nowMs + ROOT_LIFETIME_MS);
    }
    return this.rootBody;
  }

  /** The next version of a targets role (an empty body if it has no file yet), made on first use. */
  targets(role: string): TargetsBody {
    if (!isTargetsRole(role)) throw badRequest('INVALID_ROLE', `${role} is not a targets role`);
    let b = this.bodies.get(role);
    if (!b) {
      const cur = this.view.targets.get(role)?.body;
      b = cur ? clone(cur) : { _type: 'Targets', delegations: { keys: {}, roles: [] }, expires: '', targets: {}, version: 0 };
      b.version = Math.max(b.version, this.view.latest.get(role) ?? 0) + 1;
      b.expires = formatRfc3339(this.nowMs + TARGETS_LIFETIME_MS);
      this.bodies.set(role, b);
    }
    return b;
  }

  /** The (new, mutable) parent body of a delegation and its entry there. */
  private delegation(role: string): { parent: TargetsBody; entry: DelegatedRole } | undefined {
    const parent = parentRole(role);
    if (parent !== 'targets' && !this.bodies.has(parent) && !roleKeysOf(this.view, parent)) return undefined;
    const cur = this.bodies.get(parent) ?? this.view.targets.get(parent)?.body;
    if (!delegationEntry(cur, role)) return undefined;
    const body = this.targets(parent);
    return { parent: body, entry: delegationEntry(body, role)! };
  }

  /** Changes a role's key list or threshold; `addKeys` go into the keys map that role's keyids refer to. */
  editRoleKeys(role: string, mutate: (rk: RoleKeys) => void, addKeys: TufKey[] = []): void {
    if (isBaseRole(role)) {
      const root = this.root();
      for (const k of addKeys) root.keys[keyId(k)] = k;
      mutate(root.roles[role]);
    } else {
      const d = this.delegation(role);
      if (!d) throw notFound('ROLE_NOT_FOUND', `${this.view.gun} has no role ${role}`);
      for (const k of addKeys) d.parent.delegations.keys[keyId(k)] = k;
      mutate(d.entry);
    }
    this.rekeyed.add(role);
  }

  /** Creates a delegation (its parent must exist) or, if it exists, edits it like editRoleKeys. */
  upsertDelegation(role: string, keys: TufKey[], opts: { paths?: string[]; threshold?: number }): 'created' | 'updated' {
    if (!isDelegationName(role)) throw badRequest('INVALID_ROLE', `${role} is not a delegation name (targets/<name>, lower case)`);
    const parent = parentRole(role);
    if (parent !== 'targets' && !roleKeysOf(this.view, parent))
      throw notFound('ROLE_NOT_FOUND', `the parent role ${parent} does not exist in ${this.view.gun}`);
    const ids = keys.map(keyId);
    if (this.delegation(role)) {
      this.editRoleKeys(
        role,
        (rk) => {
          for (const id of ids) if (!rk.keyids.includes(id)) rk.keyids.push(id);
          if (opts.threshold !== undefined) rk.threshold = opts.threshold;
          if (opts.paths !== undefined) (rk as DelegatedRole).paths = [...opts.paths];
        },
        keys,
      );
      return 'updated';
    }
    if (ids.length === 0) throw badRequest('INVALID_REQUEST', `a new delegation needs at least one key`);
    const body = this.targets(parent);
    for (const k of keys) body.delegations.keys[keyId(k)] = k;
    const paths = opts.paths ?? [''];
    body.delegations.roles.push({
      keyids: [...new Set(ids)],
      name: role,
      ...(paths.length ? { paths } : {}),
      threshold: opts.threshold ?? 1,
    });
    this.rekeyed.add(role);
    return 'created';
  }

  removeDelegation(role: string): void {
    const d = this.delegation(role);
    if (!d) throw notFound('ROLE_NOT_FOUND', `${this.view.gun} has no role ${role}`);
    d.parent.delegations.roles = d.parent.delegations.roles.filter((r) => r.name !== role);
  }

  /** The role keys as they will be after the change. */
  private newRoleKeys(role: string): { keys: Record<string, TufKey>; role: RoleKeys } | undefined {
    if (isBaseRole(role)) {
      const root = this.rootBody ?? this.view.root.body;
      return { keys: root.keys, role: root.roles[role] };
    }
    const parent = this.bodies.get(parentRole(role)) ?? this.view.targets.get(parentRole(role))?.body;
    const e = delegationEntry(parent, role);
    return e && { keys: parent!.delegations.keys, role: e };
  }

  private requirement(role: string, label = role): Requirement {
    const rk = this.newRoleKeys(role);
    if (!rk) throw notFound('ROLE_NOT_FOUND', `${this.view.gun} has no role ${role}`);
    return { label, keys: rk.keys, keyids: [...rk.role.keyids], threshold: rk.role.threshold };
  }

  private static checkRole(name: string, rk: RoleKeys): void {
    if (rk.keyids.length === 0) throw badRequest('INVALID_REQUEST', `role ${name} would have no keys`);
    if (!Number.isSafeInteger(rk.threshold) || rk.threshold < 1)
      throw badRequest('INVALID_REQUEST', `role ${name}: threshold must be at least 1`);
    if (rk.threshold > rk.keyids.length) {
      throw badRequest('THRESHOLD_TOO_HIGH', `role ${name}: threshold ${rk.threshold} is larger than its ${rk.keyids.length} key(s)`);
    }
  }

  /** Key IDs listed before the change and by no role after it. */
  droppedKeyIds(): string[] {
    const before = referencedKeyIds(
      this.view.root.body,
      [...this.view.targets.values()].map((m) => m.body),
    );
    const targets = new Map<string, TargetsBody>([...this.view.targets].map(([r, m]) => [r, m.body]));
    for (const [r, b] of this.bodies) targets.set(r, b);
    const after = referencedKeyIds(this.rootBody ?? this.view.root.body, targets.values());
    return [...before].filter((id) => !after.has(id));
  }

  /**
   * The parts of the change: the new root (needing the current and the new root role), each
   * changed targets role (needing its signing role after the change), and the current file of
   * every re-keyed role whose signatures would no longer meet its new threshold (re-signed).
   */
  build(): ChangePart[] {
    if (this.rootBody) {
      const root = this.rootBody;
      const used = referencedKeyIds(root, []);
      for (const id of Object.keys(root.keys)) if (!used.has(id)) delete root.keys[id];
      for (const r of BASE_ROLES) {
        DraftBuilder.checkRole(r, root.roles[r]);
        const same = repeatedPublicKey(root.roles[r].keyids, root.keys);
        if (same) throw badRequest('INVALID_REQUEST', `role ${r} lists keys ${same[0]} and ${same[1]}, which are the same public key`);
      }
    }
    for (const [role, body] of this.bodies) {
      const used = new Set(body.delegations.roles.flatMap((d) => d.keyids));
      for (const id of Object.keys(body.delegations.keys)) if (!used.has(id)) delete body.delegations.keys[id];
      for (const d of body.delegations.roles) if (this.rekeyed.has(d.name)) DraftBuilder.checkRole(d.name, d);
      const bad = checkDelegationList(role, body.delegations);
      if (bad) throw badRequest('INVALID_REQUEST', bad);
    }
    // Re-sign the current file of re-keyed targets roles that would no longer verify.
    for (const role of this.rekeyed) {
      if (!isTargetsRole(role) || this.bodies.has(role)) continue;
      const cur = this.view.targets.get(role);
      const rk = this.newRoleKeys(role);
      if (!cur || !rk) continue;
      const valid = countValidSignatures(cur.message(), cur.signatures, rk.keys, rk.role.keyids);
      if (valid.size < rk.role.threshold) this.targets(role);
    }
    const parts: ChangePart[] = [];
    if (this.rootBody) {
      const cur = this.view.root.body;
      parts.push({
        role: 'root',
        body: clone(this.rootBody),
        signatures: [],
        requirements: [
          { label: 'current root', keys: cur.keys, keyids: [...cur.roles.root.keyids], threshold: cur.roles.root.threshold },
          {
            label: 'new root',
            keys: this.rootBody.keys,
            keyids: [...this.rootBody.roles.root.keyids],
            threshold: this.rootBody.roles.root.threshold,
          },
        ],
      });
    }
    for (const [role, body] of this.bodies) parts.push({ role, body: clone(body), signatures: [], requirements: [this.requirement(role)] });
    return clone(parts);
  }
}
