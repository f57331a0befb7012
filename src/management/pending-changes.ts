// The management API's view of pending changes (trust/pending-store.ts does the work): audited,
// answered in the API's shapes, and explained for whoever decides to sign (diff, signers, the
// caller's usable keys).
import { signingIdentity, type Actor } from '../auth/guard.js';
import { allows } from '../auth/tokens.js';
import type { RootBody, TargetsBody } from '../core/tuf/metadata.js';
import { delegatedRoles, diffRoles, diffTargets, rootRoles } from '../core/tuf/role-diff.js';
import type { PendingChange } from '../trust/pending.js';
import type { SignPendingRequest } from '../trust/pending-store.js';
import { actorRef, roleFile, type ChangeResult, type ManagementContext, type PartDiff, type PendingView } from './context.js';
import type { RepoView } from './draft.js';
import { toApiError } from '../trust/api-errors.js';

export type { SignPendingRequest };

/** How far before a change's creation its signers' audit entries are looked for (clock steps). */
const CLOCK_MARGIN_MS = 60 * 60_000;

/** A part's change against the role's current file (none when the repository has no such file). */
function partDiff(cur: RepoView | undefined, role: string, after: RootBody | TargetsBody): PartDiff {
  const before = cur && roleFile(cur, role);
  const common = {
    role,
    fromVersion: before?.version ?? null,
    toVersion: after.version,
    expires: { from: before?.body.expires ?? null, to: after.expires },
  };
  if (role === 'root')
    return {
      ...common,
      targets: { added: [], removed: [], changed: [] },
      roles: diffRoles(rootRoles(before?.body as RootBody | undefined), rootRoles(after as RootBody)),
    };
  const b = before?.body as TargetsBody | undefined;
  const a = after as TargetsBody;
  return { ...common, targets: diffTargets(b?.targets, a.targets), roles: diffRoles(delegatedRoles(b), delegatedRoles(a)) };
}

export class PendingChanges {
  constructor(private c: ManagementContext) {}

  /** Open changes of the repositories `filter` allows (expired and stale ones closed first). */
  async list(filter: (gun: string) => boolean, gun?: string): Promise<PendingChange[]> {
    await this.c.sweep();
    return (await this.c.pendingChanges.list(gun)).filter((p) => filter(p.gun));
  }

  /**
   * Views for people deciding whether to sign: each part's diff against the role's current file,
   * who added each signature (the audit log), and which of the caller's keys still count.
   */
  async explain(actor: Actor, changes: PendingChange[]): Promise<PendingView[]> {
    const views = new Map<string, RepoView | undefined>();
    const viewOf = async (gun: string) => {
      if (!views.has(gun)) views.set(gun, await this.c.view(gun).catch(() => undefined));
      return views.get(gun);
    };
    const signers = await this.signEntries(changes);
    const out: PendingView[] = [];
    for (const p of changes) {
      const view = this.c.pendingView(p);
      const cur = await viewOf(p.gun);
      p.parts.forEach((part, i) => (view.parts[i]!.diff = partDiff(cur, part.role, part.body)));
      const keys = new Map<string, string[]>();
      for (const part of view.parts)
        for (const id of new Set(part.requirements.flatMap((r) => r.signedBy))) keys.set(id, [...(keys.get(id) ?? []), part.role]);
      view.signedBy = [...keys].map(([keyId, roles]) => ({ keyId, roles, by: signers.get(`${p.id} ${keyId}`) ?? p.createdBy }));
      view.caller = await this.callerKeys(actor, p.gun, view);
      out.push(view);
    }
    return out;
  }

  /** Who added each key's signature to these changes, from their `pending.sign` audit entries (`<id> <keyId>` → actor). */
  private async signEntries(changes: PendingChange[]): Promise<Map<string, { id: string; name: string }>> {
    const out = new Map<string, { id: string; name: string }>();
    if (changes.length === 0) return out;
    const ids = new Set(changes.map((p) => p.id));
    // Read back from the newest entry only (a margin for clock steps), not the whole log: any
    // token that may read a repository with a pending change asks for this.
    const since = Math.min(...changes.map((p) => Date.parse(p.createdAt))) - CLOCK_MARGIN_MS;
    const gun = new Set(changes.map((p) => p.gun)).size === 1 ? changes[0]!.gun : undefined;
    const entries = await this.c.audit.query({ action: 'pending.sign', since, recent: true, ...(gun !== undefined ? { gun } : {}) });
    for (const e of entries) {
      const id = e.detail?.pendingId;
      if (e.outcome !== 'success' || typeof id !== 'string' || !ids.has(id)) continue;
      const keyIds = e.detail?.keyIds;
      for (const k of Array.isArray(keyIds) ? keyIds : []) if (typeof k === 'string') out.set(`${id} ${k}`, e.actor);
    }
    return out;
  }

  /** Server-held keys of the GUN the actor may use whose signatures a part still lacks. */
  private async callerKeys(actor: Actor, gun: string, view: PendingView): Promise<{ canSign: boolean; keyIds: string[] }> {
    const who = signingIdentity(actor);
    const wanted = new Set<string>();
    for (const part of view.parts)
      for (const r of part.requirements) if (r.missing > 0) for (const id of r.keyids) if (!r.signedBy.includes(id)) wanted.add(id);
    const keyIds: string[] = [];
    for (const id of wanted) {
      if (!who.admin && !who.keyIds.includes(id)) continue;
      if ((await this.c.keys.get(id))?.gun === gun) keyIds.push(id);
    }
    return { canSign: keyIds.length > 0 && allows(actor.scopes, 'sign', gun), keyIds };
  }

  async get(id: string): Promise<PendingChange> {
    await this.c.sweep();
    try {
      return await this.c.pendingChanges.get(id);
    } catch (e) {
      throw toApiError(e);
    }
  }

  /** Adds signatures; publishes the change once every part is complete. */
  async sign(actor: Actor, id: string, req: SignPendingRequest): Promise<ChangeResult> {
    const first = await this.get(id);
    return this.c.audited(actor, 'pending.sign', first.gun, async () => {
      await this.c.sweep();
      const r = await this.c.pendingChanges.sign(signingIdentity(actor), id, req);
      const p = r.change;
      if (!r.publication) {
        await this.c.auditOk(actor, 'pending.sign', p.gun, { pendingId: p.id, keyIds: r.added, complete: false });
        return { status: 'pending' as const, action: p.action, summary: p.summary, pending: this.c.pendingView(p) };
      }
      const result = this.c.result(r.publication);
      await this.c.audit.append({
        actor: actorRef(actor),
        action: 'pending.sign',
        outcome: 'success',
        gun: p.gun,
        detail: { pendingId: p.id, keyIds: r.added, complete: true, change: p.action },
      });
      await this.c.auditChange(actor, p.action, p.gun, result, {}, { pendingId: p.id });
      return result;
    });
  }

  async cancel(actor: Actor, id: string) {
    const p = await this.get(id);
    return this.c.audited(actor, 'pending.cancel', p.gun, async () => {
      await this.c.pendingChanges.cancel(signingIdentity(actor), id);
      await this.c.auditOk(actor, 'pending.cancel', p.gun, { pendingId: id, change: p.action });
      return { id, cancelled: true };
    });
  }
}
