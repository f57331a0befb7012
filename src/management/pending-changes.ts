// The management API's view of pending changes (trust/pending-store.ts does the work): audited,
// and answered in the API's shapes.
import { signingIdentity, type Actor } from '../auth/guard.js';
import type { PendingChange } from '../trust/pending.js';
import type { SignPendingRequest } from '../trust/pending-store.js';
import { actorRef, type ChangeResult, type ManagementContext, type PendingView } from './context.js';
import { toApiError } from '../trust/api-errors.js';

export type { SignPendingRequest };

export class PendingChanges {
  constructor(private c: ManagementContext) {}

  async list(filter: (gun: string) => boolean, gun?: string): Promise<PendingView[]> {
    await this.c.sweep();
    return (await this.c.pendingChanges.list(gun)).filter((p) => filter(p.gun)).map((p) => this.c.pendingView(p));
  }

  async get(id: string): Promise<PendingChange> {
    await this.c.sweep();
    try {
      return await this.c.pendingChanges.get(id);
    } catch (e) {
      throw toApiError(e);
    }
  }

  view(p: PendingChange): PendingView {
    return this.c.pendingView(p);
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
