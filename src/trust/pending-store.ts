// Pending changes (m-of-n) over their store: list them, add signatures (by a held key the caller
// may use, or uploaded over the canonical bytes), publish through TrustChanges once complete, or
// cancel. Expired and stale changes (their base version is gone) are closed on every read and
// after every publish, with the keys made for them.
import { signingMethod, verifySignature } from '../core/crypto/keys.js';
import { normaliseSignature } from '../core/crypto/signature.js';
import { canonicalBytes } from '../core/json/canonical.js';
import type { Signature } from '../core/tuf/metadata.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import { TrustChangeError, dropKeys, type Caller, type Publication, type TrustChanges } from './changes.js';
import { partMissing, requiredKeyIds, type PendingChange, type PendingChangeStore } from './pending.js';
import { signBody } from './sign.js';

export interface SignPendingRequest {
  keyId?: string;
  signatures?: Array<{ keyid: string; sig: string; method?: string; role?: string }>;
}

/** What adding signatures came to: the change as stored now, and its publication once complete. */
export interface PendingSigned {
  change: PendingChange;
  added: string[];
  publication?: Publication;
}

const complete = (p: PendingChange) => p.parts.every((x) => partMissing(x) === 0);

/** A change another process published, cancelled or let expire while this one worked on it. */
const gone = (id: string) => new TrustChangeError('PENDING_GONE', `pending change ${id} was published, cancelled or expired meanwhile`);
const notFound = (id: string) =>
  new TrustChangeError(
    'PENDING_NOT_FOUND',
    `no pending change ${id} (it may have been published, cancelled, expired or closed as stale: see the audit log)`,
  );

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
  constructor(
    readonly store: PendingChangeStore,
    private changes: TrustChanges,
    private keys: KeyStore,
    private log: Logger,
  ) {}

  /**
   * Why `p` can no longer apply: a role it changes was published at or past the version it would
   * make (its base version is gone); undefined while it still can.
   */
  async staleReason(p: PendingChange): Promise<string | undefined> {
    for (const part of p.parts) {
      const cur = await this.changes.trust.current(p.gun, part.role);
      if (cur && cur.version >= part.body.version)
        return `${part.role} version ${cur.version} of ${p.gun} was published after this change was opened from version ${part.body.version - 1}`;
    }
    return undefined;
  }

  /**
   * Closes expired changes and stale ones (staleReason), each taken by one process, and deletes
   * the keys made for them that no remaining change was made with. With `gun` (after a publish):
   * only that GUN's stale ones.
   */
  async sweep(gun?: string): Promise<{ expired: PendingChange[]; stale: Array<{ change: PendingChange; reason: string }> }> {
    const expired = gun === undefined ? await this.store.takeExpired() : [];
    const stale: Array<{ change: PendingChange; reason: string }> = [];
    for (const p of await this.store.list(gun !== undefined ? { gun } : {})) {
      const reason = await this.staleReason(p).catch(() => undefined); // unreadable now: judged on a later sweep
      if (!reason) continue;
      const change = await this.store.remove(p.id);
      if (change) stale.push({ change, reason });
    }
    const closed = [...expired, ...stale.map((s) => s.change)];
    if (closed.length) {
      const kept = new Set((await this.store.list()).flatMap((p) => p.createdKeyIds));
      for (const p of closed)
        await dropKeys(
          this.keys,
          p.createdKeyIds.filter((k) => !kept.has(k)),
          this.log,
        );
    }
    return { expired, stale };
  }

  list(gun?: string): Promise<PendingChange[]> {
    return this.store.list(gun !== undefined ? { gun } : {});
  }

  async get(id: string): Promise<PendingChange> {
    const p = await this.store.get(id);
    if (!p) throw notFound(id);
    return p;
  }

  /**
   * Adds signatures to a pending change: by a held key the caller may use (`keyId`), or uploaded
   * (`signatures`, each over the part's canonical bytes). Publishes when every part is complete.
   */
  async sign(caller: Caller, id: string, req: SignPendingRequest): Promise<PendingSigned> {
    const first = await this.get(id);
    return this.changes.locks.run(first.gun, async () => {
      let p = await this.get(id);
      if (!req.keyId && !req.signatures?.length)
        throw new TrustChangeError('INVALID_REQUEST', 'give keyId (a key the server holds) or signatures');
      const added: string[] = [];
      if (req.keyId) {
        const rec = await this.keys.get(req.keyId);
        if (!rec || rec.gun !== p.gun) throw new TrustChangeError('KEY_NOT_FOUND', `the server holds no key ${req.keyId} for ${p.gun}`);
        const [signer] = await this.changes.usableSigners(p.gun, caller, [req.keyId]);
        if (!signer) throw new TrustChangeError('FORBIDDEN', `this token may not sign with key ${req.keyId}`);
        const parts = p.parts.filter((x) => requiredKeyIds(x).includes(signer.id));
        if (parts.length === 0) throw new TrustChangeError('KEY_NOT_IN_ROLE', `key ${req.keyId} is not needed by this change`);
        for (const x of parts) x.signatures = await signBody(x.body, [signer], x.signatures);
        added.push(signer.id);
      }
      for (const s of req.signatures ?? []) {
        const parts = p.parts.filter((x) => (s.role === undefined || x.role === s.role) && requiredKeyIds(x).includes(s.keyid));
        if (parts.length === 0)
          throw new TrustChangeError('KEY_NOT_IN_ROLE', `key ${s.keyid} is not needed by this change${s.role ? ` in ${s.role}` : ''}`);
        let ok = false;
        for (const x of parts) {
          const key = x.requirements.map((r) => r.keys[s.keyid]).find(Boolean)!;
          const method = s.method ?? signingMethod(key.keytype);
          const raw = normaliseSignature(key, Buffer.from(s.sig, 'base64'));
          if (!verifySignature(key, canonicalBytes(x.body), method, raw)) continue;
          x.signatures = [
            ...x.signatures.filter((e) => e.keyid !== s.keyid),
            { keyid: s.keyid, method, sig: raw.toString('base64') } satisfies Signature,
          ];
          ok = true;
        }
        if (!ok)
          throw new TrustChangeError(
            'INVALID_SIGNATURE',
            `the signature by ${s.keyid} does not verify over the canonical bytes of the change`,
          );
        added.push(s.keyid);
      }
      if (!complete(p)) {
        // Another process may have signed it meanwhile (or published, cancelled or expired it).
        const saved = await this.store.update(p.id, (cur) => mergeSignatures(cur, p));
        if (!saved) throw gone(p.id);
        if (!complete(saved)) return { change: saved, added };
        p = saved;
      }
      // Taken off the list before publishing, so of several processes only one publishes it.
      if (!(await this.store.remove(p.id))) throw gone(p.id);
      try {
        const publication = await this.changes.apply({
          gun: p.gun,
          caller,
          action: p.action,
          summary: p.summary,
          draft: p,
          held: false,
          whenShort: 'refuse',
          audit: {},
        });
        return { change: p, added, publication };
      } catch (e) {
        // The change can no longer apply (another change won, or the repository moved on); its keys went with it.
        const conflict = e instanceof TrustChangeError && e.code === 'VERSION_CONFLICT';
        throw new TrustChangeError(
          'PENDING_DROPPED',
          `the change could not be published and was dropped: ${(e as Error).message}`,
          { versionConflict: conflict },
          { cause: e },
        );
      }
    });
  }

  /** Cancels a change (its creator or an admin); returns it. */
  async cancel(caller: Caller, id: string): Promise<PendingChange> {
    const p = await this.get(id);
    if (!caller.admin && p.createdBy.id !== caller.id)
      throw new TrustChangeError('FORBIDDEN', 'only the creator of a pending change or an admin may cancel it');
    // Gone meanwhile (published, cancelled or expired in another process): as if never found.
    if (!(await this.store.remove(id))) throw notFound(id);
    await dropKeys(this.keys, p.createdKeyIds, this.log);
    return p;
  }
}
