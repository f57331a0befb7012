// Pending changes (m-of-n): list and show them, add signatures (by a held key the caller may use,
// or uploaded over the canonical bytes), publish once complete, or cancel.
import { signingMethod, verifySignature } from '../core/crypto/keys.js';
import { canonicalBytes } from '../core/json/canonical.js';
import type { Signature } from '../core/tuf/metadata.js';
import { RepoEditor } from '../trust/editor.js';
import { isAdmin, type Actor } from '../auth/guard.js';
import { partMissing, requiredKeyIds } from './draft.js';
import { ApiError, badRequest, notFound, toApiError } from './errors.js';
import { normaliseSignature } from './material.js';
import type { PendingChange } from './pending.js';
import { actorRef, type ChangeResult, type ManagementContext, type PendingView } from './context.js';

export interface SignPendingRequest {
  keyId?: string;
  signatures?: Array<{ keyid: string; sig: string; method?: string; role?: string }>;
}

const complete = (p: PendingChange) => p.parts.every((x) => partMissing(x) === 0);

/** A change another process published, cancelled or let expire while this one worked on it. */
const gone = (id: string) => new ApiError(409, 'CONFLICT', `pending change ${id} was published, cancelled or expired meanwhile`);

/** `cur` (as stored now) with the signatures of `mine` added, part by part; `mine`'s win for the same key. */
function mergeSignatures(cur: PendingChange, mine: PendingChange): PendingChange {
  for (const part of cur.parts) {
    const own = mine.parts.find((x) => x.role === part.role)?.signatures ?? [];
    const keyids = new Set(own.map((s) => s.keyid));
    part.signatures = [...part.signatures.filter((s) => !keyids.has(s.keyid)), ...own];
  }
  return cur;
}

export class PendingChanges {
  constructor(private c: ManagementContext) {}

  async list(filter: (gun: string) => boolean, gun?: string): Promise<PendingView[]> {
    await this.c.sweep();
    return this.c.pending
      .list(gun !== undefined ? { gun } : {})
      .filter((p) => filter(p.gun))
      .map((p) => this.c.pendingView(p));
  }

  async get(id: string): Promise<PendingChange> {
    await this.c.sweep();
    const p = this.c.pending.get(id);
    if (!p) throw notFound('NOT_FOUND', `no pending change ${id} (it may have expired or been published)`);
    return p;
  }

  view(p: PendingChange): PendingView {
    return this.c.pendingView(p);
  }

  /**
   * Adds signatures to a pending change: by a held key the caller may use (`keyId`), or uploaded
   * (`signatures`, each over the part's canonical bytes). Publishes when every part is complete.
   */
  async sign(actor: Actor, id: string, req: SignPendingRequest): Promise<ChangeResult> {
    const first = await this.get(id);
    return this.c.change(actor, 'pending.sign', first.gun, async () => {
      let p = await this.get(id);
      if (!req.keyId && !req.signatures?.length) throw badRequest('INVALID_REQUEST', 'give keyId (a key the server holds) or signatures');
      const added: string[] = [];
      if (req.keyId) {
        const rec = await this.c.keys.get(req.keyId);
        if (!rec || rec.gun !== p.gun) throw notFound('KEY_NOT_FOUND', `the server holds no key ${req.keyId} for ${p.gun}`);
        const [signer] = await this.c.usableSigners(actor, p.gun, [req.keyId]);
        if (!signer) throw new ApiError(403, 'FORBIDDEN', `this token may not sign with key ${req.keyId}`);
        const parts = p.parts.filter((x) => requiredKeyIds(x).includes(signer.id));
        if (parts.length === 0) throw badRequest('KEY_NOT_IN_ROLE', `key ${req.keyId} is not needed by this change`);
        for (const x of parts) x.signatures = await RepoEditor.addSignatures(x.body, [signer], x.signatures);
        added.push(signer.id);
      }
      for (const s of req.signatures ?? []) {
        const parts = p.parts.filter((x) => (s.role === undefined || x.role === s.role) && requiredKeyIds(x).includes(s.keyid));
        if (parts.length === 0) throw badRequest('KEY_NOT_IN_ROLE', `key ${s.keyid} is not needed by this change${s.role ? ` in ${s.role}` : ''}`);
        let ok = false;
        for (const x of parts) {
          const key = x.requirements.map((r) => r.keys[s.keyid]).find(Boolean)!;
          const method = s.method ?? signingMethod(key.keytype);
          const raw = normaliseSignature(key, Buffer.from(s.sig, 'base64'));
          if (!verifySignature(key, canonicalBytes(x.body), method, raw)) continue;
          x.signatures = [...x.signatures.filter((e) => e.keyid !== s.keyid), { keyid: s.keyid, method, sig: raw.toString('base64') } satisfies Signature];
          ok = true;
        }
        if (!ok) throw badRequest('INVALID_SIGNATURE', `the signature by ${s.keyid} does not verify over the canonical bytes of the change`);
        added.push(s.keyid);
      }
      if (!complete(p)) {
        // Another process may have signed it meanwhile (or published, cancelled or expired it).
        const saved = this.c.pending.update(p.id, (cur) => mergeSignatures(cur, p));
        if (!saved) throw gone(p.id);
        if (!complete(saved)) {
          this.c.auditOk(actor, 'pending.sign', p.gun, { pendingId: p.id, keyIds: added, complete: false });
          return { status: 'pending' as const, action: p.action, summary: p.summary, pending: this.c.pendingView(saved) };
        }
        p = saved;
      }
      // Taken off the list before publishing, so of several processes only one publishes it.
      if (!this.c.pending.remove(p.id)) throw gone(p.id);
      try {
        const result: ChangeResult = { status: 'published', action: p.action, summary: p.summary, versions: await this.c.publishDraft(p, this.c.journalNote(actor, p.action)) };
        this.c.audit.append({ actor: actorRef(actor), action: 'pending.sign', outcome: 'success', gun: p.gun, detail: { pendingId: p.id, keyIds: added, complete: true, change: p.action } });
        this.c.auditChange(actor, p.action, p.gun, result, {}, { pendingId: p.id });
        return result;
      } catch (e) {
        // The change can no longer apply (another change won, or the repository moved on).
        await this.c.dropKeys(p.createdKeyIds);
        const err = toApiError(e);
        throw new ApiError(409, err.code === 'VERSION_CONFLICT' ? 'VERSION_CONFLICT' : 'CONFLICT', `the change could not be published and was dropped: ${err.message}`);
      }
    });
  }

  async cancel(actor: Actor, id: string) {
    const p = await this.get(id);
    return this.c.audited(actor, 'pending.cancel', p.gun, async () => {
      if (!isAdmin(actor) && p.createdBy.id !== actor.id) throw new ApiError(403, 'FORBIDDEN', 'only the creator of a pending change or an admin may cancel it');
      // Gone meanwhile (published, cancelled or expired in another process): as if never found.
      if (!this.c.pending.remove(id)) throw notFound('NOT_FOUND', `no pending change ${id} (it may have expired or been published)`);
      await this.c.dropKeys(p.createdKeyIds);
      this.c.auditOk(actor, 'pending.cancel', p.gun, { pendingId: id, change: p.action });
      return { id, cancelled: true };
    });
  }
}
