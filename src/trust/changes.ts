// The one path that changes trust data. Every writer but a Notary client's upload (the management
// API, the signing API, sign-on-push) hands a ChangeRequest to TrustChanges.apply, which:
//   1. takes the GUN's lock (trust/locks.ts);
//   2. resolves the roles and builds the change (targets edits applied to the next versions, or
//      a draft the caller built);
//   3. chooses the caller's usable signers (usableSigners: the one answer to "which held keys
//      may this caller use");
//   4. signs every part (trust/sign.ts, the one place signatures are made);
//   5. publishes through TrustService.publish, or parks an m-of-n pending change;
//   6. retries from 2 when another writer published first (edits only: a draft cannot be rebuilt);
//   7. runs the after-publish hooks (registry signatures, verdict invalidation).
// It throws TrustChangeError (one class, a code); each API maps the codes to its own vocabulary.
import type { Signer } from '../core/crypto/signer.js';
import { canonicalBytes } from '../core/json/canonical.js';
import { TufValidationError } from '../core/tuf/errors.js';
import type { TargetsBody } from '../core/tuf/metadata.js';
import { isDelegationName, parentRole } from '../core/tuf/roles.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import { VersionConflictError } from '../storage/types.js';
import { EditorError, RepoEditor, type SigningRole } from './editor.js';
import { GunLocks } from './locks.js';
import {
  partMissing,
  pendingChange,
  requiredKeyIds,
  type ChangeDraft,
  type ChangePart,
  type PendingChange,
  type PendingChangeStore,
} from './pending.js';
import { auditNote, type AuditNote, type TrustService } from './service.js';
import { envelope, signBody } from './sign.js';

/** Who asks for a change, as far as signing goes. */
export interface Caller {
  id: string;
  name: string;
  /** Admins may sign with every key the server holds for the GUN. */
  admin: boolean;
  /** Keystore key IDs a non-admin caller may sign with. */
  keyIds: readonly string[];
}

export type TrustErrorCode =
  | 'REPOSITORY_NOT_FOUND'
  | 'ROLE_NOT_FOUND'
  | 'INVALID_ROLE'
  | 'INVALID_REQUEST'
  | 'INVALID_METADATA'
  | 'INVALID_SIGNATURE'
  | 'FORBIDDEN'
  | 'KEY_NOT_FOUND'
  | 'KEY_NOT_IN_ROLE'
  | 'THRESHOLD_NOT_MET'
  | 'VERSION_CONFLICT'
  | 'SNAPSHOT_KEY_HELD'
  | 'PENDING_NOT_FOUND'
  | 'PENDING_GONE'
  | 'PENDING_DROPPED'
  | 'AFTER_PUBLISH';

/** Why the trust layer refused or could not finish a change. `extra` carries details an API may show. */
export class TrustChangeError extends Error {
  override name = 'TrustChangeError';
  constructor(
    readonly code: TrustErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An edit of the next version of a targets role. */
export type Edit = (body: TargetsBody) => void;

/** Which of the caller's keys sign, and what happens when they cannot sign a role at all. */
export interface KeyOptions {
  /** Only these of the held keys the caller may use (the management API's `signWith`). */
  signWith?: readonly string[];
  /**
   * A role the caller can make no signature for: refused (FORBIDDEN, the default), or proposed
   * as a pending change that key holders complete.
   */
  propose?: boolean;
  /** How the change is named (pending changes, audit). */
  label?: { action: string; summary?: string };
}

export interface PublishedRole {
  gun: string;
  role: string;
  version: number;
  tags: number;
}

export interface PendingInfo {
  id: string;
  gun: string;
  roles: Array<{ role: string; needed: number; keyIds: string[]; signatures: number }>;
  expiresAt: string;
}

/** What one change to one GUN came to: the roles and every file version it published, or its pending change. */
export interface Publication {
  gun: string;
  action: string;
  summary: string;
  published: PublishedRole[];
  /** Versions of every file the publish wrote (the changed roles, snapshot, timestamp); empty when pending. */
  versions: Record<string, number>;
  pending?: PendingInfo;
  /** The parked change itself, when pending. */
  change?: PendingChange;
  /** When published: the journal id of its audit entry; the edge puts it in the entry's `detail.journal`, then calls TrustService.acknowledge. */
  journal?: string;
}

/** Runs after a change is published (not when it is parked): writes what lives next to the trust data. */
export type AfterPublish = (done: { publication: Publication; caller: Caller; signers: readonly Signer[] }) => Promise<void> | void;

export interface ChangeRequest extends Omit<KeyOptions, 'label'> {
  gun: string;
  caller: Caller;
  action: string;
  summary: string;
  /** Targets edits by role, applied to the next version of each role (again on a retry). */
  edits?: ReadonlyMap<string, Edit>;
  /** A change built by the caller (management drafts, completed pending changes). */
  draft?: ChangeDraft;
  /** Keys handed in with the request (offline keys, a key made for this change); used as given. */
  offline?: readonly Signer[];
  /** Sign with the caller's usable held keys (default); false: only with `offline`. */
  held?: boolean;
  /** When the signatures fall short of a threshold: park a pending change (default), or refuse. */
  whenShort?: 'park' | 'refuse';
  after?: readonly AfterPublish[];
  /**
   * Given when the caller audits the change: its entry (actor and action from `caller` and
   * `action`, plus these facts) is journaled with the commit; see Publication.journal.
   */
  audit?: Omit<AuditNote, 'id' | 'actor' | 'action'>;
}

export interface TrustChangesOptions {
  trust: TrustService;
  keys: KeyStore;
  /** Where m-of-n changes wait; without it a change that falls short is refused. */
  pending?: PendingChangeStore;
  pendingTtlMs?: number;
  locks?: GunLocks;
  /** Hooks run after every published change. */
  after?: AfterPublish[];
  log?: Logger;
  now?: () => number;
}

const MAX_ATTEMPTS = 5;

/** Deletes keystore keys, ignoring ones already gone. */
export async function dropKeys(keys: KeyStore, ids: readonly string[], log: Logger): Promise<void> {
  for (const id of ids) {
    try {
      await keys.delete(id);
    } catch (e) {
      log('warn', 'could not delete a key', { keyId: id, error: (e as Error).message });
    }
  }
}

export class TrustChanges {
  readonly trust: TrustService;
  readonly editor: RepoEditor;
  readonly locks: GunLocks;
  readonly pending: PendingChangeStore | undefined;
  private now: () => number;
  private log: Logger;
  private hooks: AfterPublish[];

  constructor(private opts: TrustChangesOptions) {
    this.trust = opts.trust;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => undefined);
    const store = opts.trust.store;
    this.locks = opts.locks ?? new GunLocks(store.exclusive && ((gun, fn) => store.exclusive!(gun, fn)));
    this.pending = opts.pending;
    this.editor = new RepoEditor(opts.trust, opts.keys, this.now);
    this.hooks = [...(opts.after ?? [])];
  }

  /** Adds a hook run after every published change. */
  afterPublish(hook: AfterPublish): void {
    this.hooks.push(hook);
  }

  /** Applies one change to one GUN: see the file header for the steps. */
  async apply(req: ChangeRequest): Promise<Publication> {
    let done: { publication: Publication; signers: Signer[] };
    for (let attempt = 1; ; attempt++) {
      try {
        done = await this.locks.run(req.gun, () => this.once(req));
        break;
      } catch (e) {
        if (e instanceof VersionConflictError && req.edits && attempt < MAX_ATTEMPTS) continue;
        if (req.draft) await dropKeys(this.opts.keys, req.draft.createdKeyIds, this.log);
        throw this.typed(e, req);
      }
    }
    if (done.publication.pending) return done.publication;
    for (const hook of [...this.hooks, ...(req.after ?? [])]) {
      try {
        await hook({ publication: done.publication, caller: req.caller, signers: done.signers });
      } catch (e) {
        throw new TrustChangeError('AFTER_PUBLISH', (e as Error).message, { publication: done.publication }, { cause: e });
      }
    }
    return done.publication;
  }

  /**
   * The held keys among `keyids` that `caller` may sign with: every held key of the GUN for an
   * admin, the token's keyIds for others; narrowed to `signWith` when given; then `offline`.
   */
  async usableSigners(
    gun: string,
    caller: Caller,
    keyids: Iterable<string>,
    o: { signWith?: readonly string[] | undefined; offline?: readonly Signer[] | undefined } = {},
  ): Promise<Signer[]> {
    const ids = [...new Set(keyids)].filter(
      (id) => (caller.admin || caller.keyIds.includes(id)) && (!o.signWith || o.signWith.includes(id)),
    );
    const out = await this.trust.heldSigners(gun, ids);
    for (const s of o.offline ?? []) if (!out.some((x) => x.id === s.id)) out.push(s);
    return out;
  }

  /** The keys and threshold that sign a targets role, or why there are none. */
  async role(gun: string, role: string): Promise<SigningRole> {
    try {
      return await this.editor.signingRole(gun, role);
    } catch (e) {
      if (e instanceof EditorError && e.code === 'NOT_FOUND') {
        if (!(await this.trust.current(gun, 'root')))
          throw new TrustChangeError('REPOSITORY_NOT_FOUND', `repository ${gun} has no trust data (run: trustgate repo init ${gun})`);
        throw new TrustChangeError(
          'ROLE_NOT_FOUND',
          `role ${role} does not exist in ${gun}${isDelegationName(role) ? ` (it is not delegated by ${parentRole(role)}; ${role === 'targets/releases' ? `trustgate signer add ${gun} NAME creates it` : "the management API's POST /repositories/{gun}/delegations creates it"})` : ''}`,
          { role },
        );
      }
      if (e instanceof EditorError) throw new TrustChangeError('INVALID_ROLE', e.message, { role });
      throw e;
    }
  }

  /** The caller's usable signers of a targets role; FORBIDDEN when there are none. */
  async roleSigners(
    gun: string,
    role: string,
    caller: Caller,
    o: { signWith?: readonly string[] | undefined } = {},
  ): Promise<{ signing: SigningRole; signers: Signer[] }> {
    const signing = await this.role(gun, role);
    const signers = await this.usableSigners(gun, caller, signing.role.keyids, o);
    if (signers.length === 0) throw forbidden(gun, role, caller);
    return { signing, signers };
  }

  private async draftOf(req: ChangeRequest): Promise<ChangeDraft> {
    if (req.draft) return req.draft;
    const parts: ChangePart[] = [];
    for (const [role, edit] of req.edits ?? []) {
      const s = await this.role(req.gun, role);
      const body = await this.editor.nextTargetsBody(req.gun, role);
      edit(body);
      parts.push({
        role,
        body,
        signatures: [],
        requirements: [{ label: role, keys: s.keys, keyids: [...s.role.keyids], threshold: s.role.threshold }],
      });
    }
    if (parts.length === 0) throw new TrustChangeError('INVALID_REQUEST', 'nothing to change');
    return { gun: req.gun, action: req.action, summary: req.summary, parts, createdKeyIds: [], retireKeyIds: [] };
  }

  private async once(req: ChangeRequest): Promise<{ publication: Publication; signers: Signer[] }> {
    const d = await this.draftOf(req);
    const signers =
      req.held === false
        ? [...(req.offline ?? [])]
        : await this.usableSigners(req.gun, req.caller, d.parts.flatMap(requiredKeyIds), { signWith: req.signWith, offline: req.offline });
    const messages: Buffer[] = [];
    const missing: number[] = [];
    for (const p of d.parts) {
      const need = requiredKeyIds(p);
      const mine = signers.filter((s) => need.includes(s.id));
      if (mine.length === 0 && !req.propose && req.held !== false) throw forbidden(req.gun, p.role, req.caller);
      const message = canonicalBytes(p.body);
      p.signatures = await signBody(p.body, mine, p.signatures, message);
      messages.push(message);
      missing.push(partMissing(p, message));
    }
    const base = { gun: req.gun, action: req.action, summary: req.summary };
    const short = d.parts.findIndex((_, i) => missing[i]! > 0);
    if (short >= 0) {
      const p = d.parts[short]!;
      if (req.whenShort === 'refuse') {
        const r = p.requirements[0]!;
        const had = signers.filter((s) => r.keyids.includes(s.id)).length;
        throw new TrustChangeError(
          'THRESHOLD_NOT_MET',
          `role ${p.role} in ${req.gun} needs ${r.threshold} signatures and this token may sign with ${had} of its keys`,
          { role: p.role },
        );
      }
      if (!this.pending)
        throw new TrustChangeError(
          'THRESHOLD_NOT_MET',
          `${p.role} needs ${missing[short]} more signature(s) and this server keeps no pending changes`,
          { role: p.role },
        );
      const change = pendingChange(d, req.caller, this.now(), this.opts.pendingTtlMs ?? 7 * 24 * 3600 * 1000);
      await this.pending.put(change);
      const roles = d.parts
        .map((x, i) => ({
          role: x.role,
          needed: missing[i]!,
          keyIds: requiredKeyIds(x).filter((k) => !x.signatures.some((s) => s.keyid === k)),
          signatures: x.signatures.length,
        }))
        .filter((n) => n.needed > 0);
      this.log('info', 'change pending further signatures', {
        gun: req.gun,
        pending: change.id,
        roles: roles.map((n) => `${n.role}:${n.needed}`).join(','),
      });
      return {
        publication: {
          ...base,
          published: [],
          versions: {},
          pending: { id: change.id, gun: req.gun, roles, expiresAt: change.expiresAt },
          change,
        },
        signers,
      };
    }
    const uploads = new Map(d.parts.map((p, i) => [p.role, envelope(p.body, p.signatures, messages[i])]));
    const note = req.audit && auditNote({ id: req.caller.id, name: req.caller.name }, req.action, req.audit);
    const files = await this.trust.publish(req.gun, uploads, note);
    await dropKeys(this.opts.keys, d.retireKeyIds, this.log);
    const published = d.parts.map((p) => ({
      gun: req.gun,
      role: p.role,
      version: p.body.version,
      tags: 'targets' in p.body ? Object.keys(p.body.targets).length : 0,
    }));
    return {
      publication: {
        ...base,
        published,
        versions: Object.fromEntries(files.map((f) => [f.role, f.version])),
        ...(note ? { journal: note.id } : {}),
      },
      signers,
    };
  }

  /** The trust layer's error for anything a change threw; other errors (keystore, storage) pass. */
  private typed(e: unknown, req: ChangeRequest): unknown {
    if (e instanceof TrustChangeError) return e;
    if (e instanceof VersionConflictError) {
      return new TrustChangeError(
        'VERSION_CONFLICT',
        req.edits ? `${req.gun} kept changing while signing; retry` : `${e.message}; another change was published first, retry`,
        {},
        { cause: e },
      );
    }
    if (e instanceof TufValidationError && e.missing === 'snapshot') {
      return new TrustChangeError(
        'SNAPSHOT_KEY_HELD',
        'a client holds the snapshot key of this repository: rotate the snapshot key to the server first (POST …/keys/snapshot/rotate)',
        {},
        { cause: e },
      );
    }
    if (e instanceof TufValidationError) return new TrustChangeError('INVALID_METADATA', e.message, {}, { cause: e });
    if (e instanceof EditorError)
      return new TrustChangeError(e.code === 'NOT_FOUND' ? 'REPOSITORY_NOT_FOUND' : 'INVALID_REQUEST', e.message, {}, { cause: e });
    return e;
  }
}

function forbidden(gun: string, role: string, caller: Caller): TrustChangeError {
  return new TrustChangeError(
    'FORBIDDEN',
    caller.admin
      ? `the server holds no key of role ${role} in ${gun}; sign it elsewhere`
      : `this token may not sign ${role} in ${gun}: it holds none of the role's keys`,
    { role },
  );
}
