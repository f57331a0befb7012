// What every part of the management service shares: the stores, the per-GUN change queue, the
// audit trail and the repository view. A trust change is built by DraftBuilder and handed to the
// change pipeline (trust/changes.ts), which signs it with the keys the caller may use and
// publishes or parks it; keys made for a change are removed again if it fails.
import { createHash } from 'node:crypto';
import { BoundedMap } from '../core/bounded-map.js';
import type { TufKey } from '../core/crypto/keys.js';
import type { StoredFile } from '../storage/types.js';
import { LocalSigner, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { canonicalBytes } from '../core/json/canonical.js';
import { isValidGun } from '../core/tuf/gun.js';
import {
  Metadata,
  countValidSignatures,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from '../core/tuf/metadata.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import { dropKeys, type Publication, type TrustChanges } from '../trust/changes.js';
import type { RepoEditor } from '../trust/editor.js';
import type { GunLocks } from '../trust/locks.js';
import { auditNote, type AuditNote, type TrustService } from '../trust/service.js';
import { PendingChanges } from '../trust/pending-store.js';
import type { AuditActor, AuditInput } from '../audit/log.js';
import type { AuditTrail } from '../audit/trail.js';
import { signingIdentity, type Actor } from '../auth/guard.js';
import type { DraftBuilder, RepoView } from './draft.js';
import type { RoleChange, TargetsChange } from '../core/tuf/role-diff.js';
import { badRequest, notFound } from '../http/api-error.js';
import { toApiError } from '../trust/api-errors.js';
import { readPrivateKeyPem, sameKey } from './material.js';
import { partMissing, type ChangeDraft, type PendingChange, type PendingChangeStore } from '../trust/pending.js';

export const MIN_PASSPHRASE_LENGTH = 8;

export interface ManagementOptions {
  now?: () => number;
  /** How long a pending change waits for signatures. */
  pendingTtlMs: number;
  serverKeyAlgorithm?: Algorithm;
  gunPrefixes?: string[];
  log: Logger;
}

/** An offline key the caller hands in for one request (used in memory, then dropped). */
export interface OfflineKeyInput {
  pem: string;
  passphrase: string;
}

export interface PartView {
  role: string;
  version: number;
  /** Base64 of the canonical JSON of `signed`: the exact bytes a signature must cover. */
  canonical: string;
  signed: RootBody | TargetsBody;
  signatures: Array<{ keyid: string; method: string }>;
  requirements: Array<{ label: string; keyids: string[]; threshold: number; signedBy: string[]; missing: number }>;
  missing: number;
  /** What the part changes (the pending routes only). */
  diff?: PartDiff;
}

export interface PartDiff {
  role: string;
  fromVersion: number | null;
  toVersion: number;
  expires: { from: string | null; to: string };
  targets: TargetsChange;
  roles: RoleChange[];
}

export interface PendingView {
  id: string;
  gun: string;
  action: string;
  summary: string;
  createdBy: { id: string; name: string };
  createdAt: string;
  expiresAt: string;
  parts: PartView[];
  missing: number;
  /** Who added each signature (the pending routes only). */
  signedBy?: Array<{ keyId: string; roles: string[]; by: { id: string; name: string } }>;
  /** What the calling token can still add (the pending routes only). */
  caller?: { canSign: boolean; keyIds: string[] };
}

export type ChangeResult =
  | { status: 'published'; action: string; summary: string; versions: Record<string, number> }
  | { status: 'pending'; action: string; summary: string; pending: PendingView };

type AuditDetail = Record<string, string | number | boolean | string[] | null>;
type AuditExtra = { role?: string; keyId?: string };

/** Roles whose keys the server holds and uses on its own. */
export const SERVER_ROLES = new Set(['snapshot', 'timestamp']);
export const actorRef = (a: Actor): AuditActor => ({ id: a.id, name: a.name });

export function parseDuration(text: string): number {
  const m = /^(\d{1,9})(s|m|h|d|w)?$/.exec(text.trim());
  if (!m) throw badRequest('INVALID_REQUEST', 'durations look like 3600, 90m, 12h, 30d or 2w');
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? 's') as 's'];
  return Number(m[1]) * unit * 1000;
}

export function checkPassphrase(p: string | undefined): asserts p is string {
  if (!p) throw badRequest('PASSPHRASE_REQUIRED', 'a passphrase is required to encrypt the exported key');
  if (p.length < MIN_PASSPHRASE_LENGTH)
    throw badRequest('INVALID_REQUEST', `the passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters`);
}

/** The current file of any role of a repository view. */
export function roleFile(v: RepoView, role: string): Metadata | undefined {
  return role === 'root' ? v.root : role === 'snapshot' ? v.snapshot : role === 'timestamp' ? v.timestamp : v.targets.get(role);
}

/** Until when a view needs no renewal of its timestamp or snapshot (what view() would renew). */
export const freshUntil = (v: RepoView) => Math.min(v.timestamp?.expiresMs ?? 0, v.snapshot?.expiresMs ?? 0);

const sha256Hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Views kept by recentView (a view of a large repository holds every tag parsed). */
const MAX_RECENT_VIEWS = 32;

export class ManagementContext {
  private views = new BoundedMap<string, { timestamp: string; freshUntil: number; view: RepoView }>(MAX_RECENT_VIEWS);
  readonly editor: RepoEditor;
  readonly now: () => number;
  readonly locks: GunLocks;
  readonly trust: TrustService;
  readonly pending: PendingChangeStore;
  readonly pendingChanges: PendingChanges;

  constructor(
    readonly changes: TrustChanges,
    readonly keys: KeyStore,
    readonly audit: AuditTrail,
    readonly opts: ManagementOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.trust = changes.trust;
    this.locks = changes.locks;
    this.editor = changes.editor;
    if (!changes.pending) throw new Error('the management API needs a pending-change store');
    this.pending = changes.pending;
    this.pendingChanges = new PendingChanges(changes.pending, changes, keys, opts.log);
    // A publish can leave pending changes of its GUN without a base: close them at once.
    changes.afterPublish(async ({ publication }) => {
      await this.sweep(publication.gun).catch((e: Error) =>
        opts.log('warn', 'could not close stale pending changes', { gun: publication.gun, error: e.message }),
      );
    });
  }

  checkGun(gun: string): void {
    if (!isValidGun(gun))
      throw badRequest(
        'INVALID_GUN',
        'not a valid GUN (host[:port]/path, segments of letters, digits and ._:@-, not starting with a role name)',
      );
    const prefixes = this.opts.gunPrefixes ?? [];
    if (prefixes.length && !prefixes.some((p) => gun.startsWith(p)))
      throw badRequest('INVALID_GUN', 'this server does not serve that GUN (TRUSTGATE_GUN_PREFIXES)');
  }

  // -------------------------------------------------------------------------------------------
  // Audit

  async auditOk(
    actor: Actor,
    action: string,
    gun: string | undefined,
    detail: AuditDetail = {},
    extra: AuditExtra = {},
    note?: AuditNote,
  ): Promise<void> {
    await this.audit.append({
      actor: actorRef(actor),
      action,
      outcome: 'success',
      ...(gun ? { gun } : {}),
      ...extra,
      detail: note ? { ...detail, journal: note.id } : detail,
    });
    if (note) this.trust.acknowledge(note.id);
  }

  /** The audit note a change journals with its commit (TrustService.publish). */
  journalNote(actor: Actor, action: string): AuditNote {
    return auditNote(actorRef(actor), action, { detail: { api: 'management' } });
  }

  /** Journal ids by the `versions` object of a published result, for auditChange. */
  private journals = new WeakMap<object, string>();

  /** Audits a change as published (with the new versions) or pending (with its ID). */
  async auditChange(
    actor: Actor,
    action: string,
    gun: string,
    r: ChangeResult,
    extra: AuditExtra = {},
    detail: AuditDetail = {},
  ): Promise<void> {
    const journal = r.status === 'published' ? this.journals.get(r.versions) : undefined;
    await this.audit.append({
      actor: actorRef(actor),
      action,
      outcome: r.status === 'published' ? 'success' : 'pending',
      gun,
      ...extra,
      detail:
        r.status === 'published'
          ? { ...detail, versions: Object.entries(r.versions).map(([k, n]) => `${k}=${n}`), ...(journal ? { journal } : {}) }
          : { ...detail, pendingId: r.pending.id },
    });
    // Only once the entry is written: a row left behind is appended at the next start.
    if (journal) this.trust.acknowledge(journal);
  }

  /** Audits a refused or failed action and rethrows it as an ApiError. */
  async audited<T>(actor: Actor, action: string, gun: string | undefined, fn: () => Promise<T>, extra: AuditExtra = {}): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = toApiError(e);
      if (err.status >= 500) this.opts.log('error', 'management action failed', { action, gun, error: (e as Error).message });
      const entry: AuditInput = {
        actor: actorRef(actor),
        action,
        outcome: err.status === 403 ? 'denied' : 'failure',
        ...(gun ? { gun } : {}),
        ...extra,
        detail: { code: err.code, status: err.status },
      };
      // Refusals are counted per kind (see AuditLog.appendDenial); other failures are each written.
      if (err.status === 403) this.audit.appendDenial(entry, { code: err.code });
      else
        await this.audit
          .append(entry)
          .catch((ae: Error) => this.opts.log('error', 'audit log write failed', { action, gun, error: ae.message }));
      throw err;
    }
  }

  /** A change to one GUN: audited if refused, and queued behind other changes to the GUN (build, sign and publish must not interleave). */
  change<T>(actor: Actor, action: string, gun: string, fn: () => Promise<T>, extra: AuditExtra = {}): Promise<T> {
    return this.audited(actor, action, gun, () => this.locks.run(gun, fn), extra);
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  async view(gun: string): Promise<RepoView> {
    this.checkGun(gun);
    await this.trust.current(gun, 'timestamp'); // renews an expired timestamp/snapshot first
    const rootFile = await this.trust.current(gun, 'root');
    if (!rootFile) throw notFound('NOT_FOUND', `repository ${gun} has no trust data`);
    const state = await this.trust.state(gun);
    const targets = new Map<string, Metadata<TargetsBody>>();
    for (const [role, bytes] of state.targets) targets.set(role, Metadata.parse<TargetsBody>(role, bytes));
    return {
      gun,
      root: Metadata.parse<RootBody>('root', rootFile.bytes),
      targets,
      ...(state.snapshot ? { snapshot: Metadata.parse<SnapshotBody>('snapshot', state.snapshot) } : {}),
      ...(state.timestamp ? { timestamp: Metadata.parse<TimestampBody>('timestamp', state.timestamp) } : {}),
      latest: state.latestVersions,
    };
  }

  /**
   * The GUN's newest stored timestamp, as cheaply as the store can answer (no renewal, no
   * parse): what names the current version of every other role, so a key for answers made from them.
   */
  async latestTimestamp(gun: string): Promise<StoredFile | undefined> {
    const store = this.trust.store;
    if (store.latestNow) {
      const f = store.latestNow(gun, 'timestamp');
      if (f !== null) return f;
    }
    return store.latest(gun, 'timestamp');
  }

  /**
   * view(), reused while the GUN's timestamp is the one it was made from and neither it nor the
   * snapshot is due for renewal (list pages of a large repository read it again and again).
   */
  async recentView(gun: string): Promise<RepoView> {
    const ts = await this.latestTimestamp(gun);
    const hit = this.views.get(gun);
    if (ts && hit && hit.timestamp === ts.sha256 && hit.freshUntil > this.now()) return hit.view;
    const v = await this.view(gun);
    if (v.timestamp) this.views.set(gun, { timestamp: sha256Hex(v.timestamp.bytes), freshUntil: freshUntil(v), view: v });
    return v;
  }

  /** Keys among `ids` that this GUN's keystore holds (for retiring after a change). */
  async heldOf(gun: string, ids: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) if ((await this.keys.get(id))?.gun === gun) out.push(id);
    return out;
  }

  /** Deletes keystore keys, ignoring ones already gone. */
  dropKeys(ids: readonly string[]): Promise<void> {
    return dropKeys(this.keys, ids, this.opts.log);
  }

  // -------------------------------------------------------------------------------------------
  // Signers

  /** A signer over an offline key handed in with the request; it must be one of `candidates`. */
  offlineSigner(input: OfflineKeyInput, candidates: Record<string, TufKey>, ids: readonly string[]): Signer {
    const { privateKey } = readPrivateKeyPem(input.pem, input.passphrase);
    for (const id of ids) {
      const k = candidates[id];
      if (k && sameKey(k, privateKey)) return new LocalSigner(privateKey, k);
    }
    throw badRequest('KEY_NOT_IN_ROLE', 'the offline key is not one of the keys this change needs');
  }

  /** The signer of an offline root key handed in with the request (none without one); it must be a current root key. */
  offlineRootSigners(v: RepoView, input: OfflineKeyInput | undefined): Signer[] {
    return input ? [this.offlineSigner(input, v.root.body.keys, v.root.body.roles.root.keyids)] : [];
  }

  // -------------------------------------------------------------------------------------------
  // Changes

  /** Builds a draft from a builder: parts, plus which held keys the change retires. */
  async draft(b: DraftBuilder, action: string, summary: string, createdKeyIds: string[] = []): Promise<ChangeDraft> {
    const parts = b.build();
    if (parts.length === 0) throw badRequest('INVALID_REQUEST', 'nothing to change');
    return { gun: b.view.gun, action, summary, parts, createdKeyIds, retireKeyIds: await this.heldOf(b.view.gun, b.droppedKeyIds()) };
  }

  /** Signs a draft with the actor's usable keys (narrowed to `signWith`) and `offline` ones, then publishes or parks it (trust/changes.ts). */
  async apply(
    actor: Actor,
    d: ChangeDraft,
    o: { offline?: Signer[]; signWith?: readonly string[] | undefined } = {},
  ): Promise<ChangeResult> {
    const p = await this.changes.apply({
      gun: d.gun,
      caller: signingIdentity(actor),
      action: d.action,
      summary: d.summary,
      draft: d,
      propose: true,
      audit: { detail: { api: 'management' } },
      ...(o.offline ? { offline: o.offline } : {}),
      ...(o.signWith ? { signWith: o.signWith } : {}),
    });
    return this.result(p);
  }

  /** A draft of `b`'s edits, applied as apply() does. */
  async applyBuilt(
    actor: Actor,
    b: DraftBuilder,
    action: string,
    summary: string,
    o: { offline?: Signer[]; created?: string[] } = {},
  ): Promise<ChangeResult> {
    return this.apply(actor, await this.draft(b, action, summary, o.created), o.offline ? { offline: o.offline } : {});
  }

  /** A publication of the change pipeline as a management change result. */
  result(p: Publication): ChangeResult {
    if (p.change) return { status: 'pending', action: p.action, summary: p.summary, pending: this.pendingView(p.change) };
    if (p.journal) this.journals.set(p.versions, p.journal);
    return { status: 'published', action: p.action, summary: p.summary, versions: p.versions };
  }

  pendingView(p: PendingChange): PendingView {
    const parts = p.parts.map((part): PartView => {
      const msg = canonicalBytes(part.body);
      return {
        role: part.role,
        version: part.body.version,
        canonical: msg.toString('base64'),
        signed: part.body,
        signatures: part.signatures.map((s) => ({ keyid: s.keyid, method: s.method })),
        requirements: part.requirements.map((r) => {
          const valid = countValidSignatures(msg, part.signatures, r.keys, r.keyids);
          return {
            label: r.label,
            keyids: r.keyids,
            threshold: r.threshold,
            signedBy: [...valid],
            missing: Math.max(0, r.threshold - valid.size),
          };
        }),
        missing: partMissing(part),
      };
    });
    return {
      id: p.id,
      gun: p.gun,
      action: p.action,
      summary: p.summary,
      createdBy: p.createdBy,
      createdAt: p.createdAt,
      expiresAt: p.expiresAt,
      parts,
      missing: parts.reduce((n, x) => n + x.missing, 0),
    };
  }

  /** Closes expired and stale pending changes (with `gun`: only its stale ones) and audits why. */
  async sweep(gun?: string): Promise<void> {
    const { expired, stale } = await this.pendingChanges.sweep(gun);
    const system = { id: 'system', name: 'system' };
    for (const p of expired) {
      await this.audit.append({
        actor: system,
        action: 'pending.expire',
        outcome: 'failure',
        gun: p.gun,
        detail: { pendingId: p.id, change: p.action },
      });
    }
    for (const { change: p, reason } of stale) {
      this.opts.log('info', 'pending change closed as stale: it can no longer apply', { gun: p.gun, pending: p.id, reason });
      await this.audit.append({
        actor: system,
        action: 'pending.stale',
        outcome: 'failure',
        gun: p.gun,
        detail: { pendingId: p.id, change: p.action, reason, keyIds: p.createdKeyIds },
      });
    }
  }
}
