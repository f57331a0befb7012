// What a new version of a role changes, for people to read: signed tags added, removed or
// pointed elsewhere, and roles whose keys, threshold or paths differ (root: the four base roles;
// a targets role: its delegations). Pure: two bodies in, a description out.
import { byteCompare, naturalCompare, targetDigest } from './docker-view.js';
import type { FileMeta, RootBody, TargetsBody } from './metadata.js';

export interface TargetEntry {
  tag: string;
  digest: string;
  size: number;
}

export interface RoleChange {
  role: string;
  change: 'added' | 'removed' | 'changed';
  keyIdsAdded: string[];
  keyIdsRemoved: string[];
  threshold?: { from: number | null; to: number | null };
  paths?: { from: string[] | null; to: string[] | null };
}

export interface TargetsChange {
  added: TargetEntry[];
  removed: TargetEntry[];
  changed: Array<{ tag: string; from: TargetEntry; to: TargetEntry }>;
}

interface RoleEntry {
  keyids: string[];
  threshold: number;
  paths?: string[] | undefined;
}

const entry = (tag: string, fm: FileMeta): TargetEntry => ({ tag, digest: targetDigest(fm), size: fm.length });
const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** Tags added, removed, or whose digest or size changed, in Docker's tag order. */
export function diffTargets(before: Record<string, FileMeta> | undefined, after: Record<string, FileMeta>): TargetsChange {
  const b = before ?? {};
  const out: TargetsChange = { added: [], removed: [], changed: [] };
  for (const tag of Object.keys(after).sort(naturalCompare)) {
    const to = entry(tag, after[tag]!);
    if (!own(b, tag)) out.added.push(to);
    else {
      const from = entry(tag, b[tag]!);
      if (from.digest !== to.digest || from.size !== to.size) out.changed.push({ tag, from, to });
    }
  }
  for (const tag of Object.keys(b).sort(naturalCompare)) if (!own(after, tag)) out.removed.push(entry(tag, b[tag]!));
  return out;
}

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  (a ?? []).length === (b ?? []).length && (a ?? []).every((x, i) => x === b![i]);

/** Roles (by name) whose keys, threshold or paths differ, in name order. */
export function diffRoles(before: ReadonlyMap<string, RoleEntry>, after: ReadonlyMap<string, RoleEntry>): RoleChange[] {
  const out: RoleChange[] = [];
  for (const role of [...new Set([...before.keys(), ...after.keys()])].sort(byteCompare)) {
    const b = before.get(role);
    const a = after.get(role);
    const keyIdsAdded = (a?.keyids ?? []).filter((k) => !(b?.keyids ?? []).includes(k));
    const keyIdsRemoved = (b?.keyids ?? []).filter((k) => !(a?.keyids ?? []).includes(k));
    const threshold = b?.threshold !== a?.threshold ? { from: b?.threshold ?? null, to: a?.threshold ?? null } : undefined;
    const paths = !sameList(b?.paths, a?.paths) ? { from: b?.paths ?? null, to: a?.paths ?? null } : undefined;
    if (b && a && !keyIdsAdded.length && !keyIdsRemoved.length && !threshold && !paths) continue;
    out.push({
      role,
      change: !b ? 'added' : !a ? 'removed' : 'changed',
      keyIdsAdded,
      keyIdsRemoved,
      ...(threshold ? { threshold } : {}),
      ...(paths ? { paths } : {}),
    });
  }
  return out;
}

/** The base roles root lists, by name. */
export const rootRoles = (root: RootBody | undefined) => new Map<string, RoleEntry>(Object.entries(root?.roles ?? {}));

/** The delegations a targets role lists, by name (with their paths). */
export const delegatedRoles = (t: TargetsBody | undefined) =>
  new Map<string, RoleEntry>(
    (t?.delegations.roles ?? []).map((d) => [d.name, { keyids: d.keyids, threshold: d.threshold, paths: d.paths }]),
  );
