// The management application layer: repository lifecycle, keys, delegations, tags, m-of-n
// pending changes, expiry and re-signing. Every trust change is built by DraftBuilder, signed with
// the keys the caller may use, and either published through TrustService (the same validation
// path a Notary client's upload takes) or parked as a pending change until other key holders
// add their signatures. Validation happens before anything is written; keys made for a change
// are removed again if the change fails, so a refused request leaves nothing behind.
import type { KeyObject } from 'node:crypto';
import { canonicalKeyId, keyId, signingMethod, verifySignature, type TufKey } from '../core/crypto/keys.js';
import { exportPrivateKeyPem, notaryKeyId } from '../core/crypto/pem.js';
import { LocalSigner, type Algorithm, type Signer } from '../core/crypto/signer.js';
import { createRootCertificate, validateRootKey } from '../core/crypto/x509.js';
import { canonicalBytes, parseJson } from '../core/json/canonical.js';
import { isValidGun } from '../core/tuf/gun.js';
import { Metadata, countValidSignatures, type RootBody, type Signature, type SnapshotBody, type TargetsBody, type TimestampBody } from '../core/tuf/metadata.js';
import { BASE_ROLES, isBaseRole, isDelegationName, isTargetsRole, parentRole } from '../core/tuf/roles.js';
import { parseRfc3339 } from '../core/tuf/time.js';
import type { KeyStore } from '../keystore/types.js';
import { KeyStoreError } from '../keystore/types.js';
import type { Logger } from '../log.js';
import { RepoEditor } from '../trust/editor.js';
import { GunLocks } from '../trust/locks.js';
import type { TrustService } from '../trust/service.js';
import type { AuditActor, AuditLog } from '../audit/log.js';
import { isAdmin, signingIdentity, type Actor } from '../auth/guard.js';
import { SigningService, type Publication } from '../signing/service.js';
import { DraftBuilder, allRoles, partMissing, requireRole, requiredKeyIds, roleKeysOf, type RepoView } from './draft.js';
import { ApiError, badRequest, conflict, notFound, toApiError } from './errors.js';
import { fromSigning, type TagSigning } from './tags.js';
import { metadataKeyFor, normaliseSignature, parsePublicKeyPem, readPrivateKeyPem, sameKey } from './material.js';
import { pendingChange, type ChangeDraft, type PendingChange, type PendingStore } from './pending.js';

export const MIN_PASSPHRASE_LENGTH = 8;

export interface ManagementOptions {
  now?: () => number;
  /** How long a pending change waits for signatures. */
  pendingTtlMs: number;
  serverKeyAlgorithm?: Algorithm;
  gunPrefixes?: string[];
  /** Per-GUN change queue (shared with the signing service). */
  locks?: GunLocks;
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
}

export type ChangeResult =
  | { status: 'published'; action: string; summary: string; versions: Record<string, number> }
  | { status: 'pending'; action: string; summary: string; pending: PendingView };

type Draft = ChangeDraft;

export interface KeyInfo {
  id: string;
  /** Notary's ID for the private key file (differs from `id` for x509 keys). */
  canonicalId: string;
  algorithm: string;
  role: string;
  held: 'keystore' | 'server' | 'offline';
  keystore: string | null;
  createdAt: string | null;
  inMetadata: boolean;
  roleVersion: number | null;
  roleExpires: string | null;
}

const SERVER_ROLES = new Set(['snapshot', 'timestamp']);
/** Roles whose targets Docker treats as released (signer name "Repo Admin"). */
const RELEASED = new Set(['targets', 'targets/releases']);
const actorRef = (a: Actor): AuditActor => ({ id: a.id, name: a.name });
const hex = (b64: string) => Buffer.from(b64, 'base64').toString('hex');

export function parseDuration(text: string): number {
  const m = /^(\d{1,9})(s|m|h|d|w)?$/.exec(text.trim());
  if (!m) throw badRequest('INVALID_REQUEST', 'durations look like 3600, 90m, 12h, 30d or 2w');
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? 's') as 's'];
  return Number(m[1]) * unit * 1000;
}

export class ManagementService {
  readonly editor: RepoEditor;
  private now: () => number;
  private locks: GunLocks;
  private tagSigning?: TagSigning;

  constructor(
    readonly trust: TrustService,
    readonly keys: KeyStore,
    readonly pending: PendingStore,
    readonly audit: AuditLog,
    private opts: ManagementOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.locks = opts.locks ?? new GunLocks();
    this.editor = new RepoEditor(trust, keys, this.now);
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing

  /** Runs changes to one GUN one at a time (build, sign and publish must not interleave). */
  private locked<T>(gun: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(gun, fn);
  }

  checkGun(gun: string): void {
    if (!isValidGun(gun)) throw badRequest('INVALID_GUN', 'not a valid GUN (host[:port]/path, segments of letters, digits and ._:@-)');
    const prefixes = this.opts.gunPrefixes ?? [];
    if (prefixes.length && !prefixes.some((p) => gun.startsWith(p))) throw badRequest('INVALID_GUN', 'this server does not serve that GUN (TRUSTGATE_GUN_PREFIXES)');
  }

  private auditOk(actor: Actor, action: string, gun: string | undefined, detail: Record<string, string | number | boolean | string[] | null> = {}, extra: { role?: string; keyId?: string } = {}) {
    this.audit.append({ actor: actorRef(actor), action, outcome: 'success', ...(gun ? { gun } : {}), ...extra, detail });
  }

  /** Audits a refused or failed action and rethrows it as an ApiError. */
  async audited<T>(actor: Actor, action: string, gun: string | undefined, fn: () => Promise<T>, extra: { role?: string; keyId?: string } = {}): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = toApiError(e);
      if (err.status >= 500) this.opts.log('error', 'management action failed', { action, gun, error: (e as Error).message });
      this.audit.append({
        actor: actorRef(actor),
        action,
        outcome: err.status === 403 ? 'denied' : 'failure',
        ...(gun ? { gun } : {}),
        ...extra,
        detail: { code: err.code, status: err.status },
      });
      throw err;
    }
  }

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

  /** Held keys of this GUN among `keyids` that the actor may sign with (admin: all; signer: its keyIds). */
  async usableSigners(actor: Actor, gun: string, keyids: Iterable<string>, only?: readonly string[]): Promise<Signer[]> {
    const out: Signer[] = [];
    for (const id of new Set(keyids)) {
      if (only && !only.includes(id)) continue;
      if (!isAdmin(actor) && !actor.keyIds.includes(id)) continue;
      const rec = await this.keys.get(id);
      if (!rec || rec.gun !== gun) continue;
      const s = await this.keys.signer(id);
      if (s) out.push(s);
    }
    return out;
  }

  /** A signer over an offline key handed in with the request; it must be one of `candidates`. */
  offlineSigner(input: OfflineKeyInput, candidates: Record<string, TufKey>, ids: readonly string[]): Signer {
    const { privateKey } = readPrivateKeyPem(input.pem, input.passphrase);
    for (const id of ids) {
      const k = candidates[id];
      if (k && sameKey(k, privateKey)) return new LocalSigner(privateKey, k);
    }
    throw badRequest('KEY_NOT_IN_ROLE', 'the offline key is not one of the keys this change needs');
  }

  private pendingView(p: PendingChange): PendingView {
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
          return { label: r.label, keyids: r.keyids, threshold: r.threshold, signedBy: [...valid], missing: Math.max(0, r.threshold - valid.size) };
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

  /** Deletes keystore keys, ignoring ones already gone. */
  private async dropKeys(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      try {
        await this.keys.delete(id);
      } catch (e) {
        this.opts.log('warn', 'could not delete a key', { keyId: id, error: (e as Error).message });
      }
    }
  }

  /** Keys among `ids` that this GUN's keystore holds (for retiring after a change). */
  private async heldOf(gun: string, ids: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) if ((await this.keys.get(id))?.gun === gun) out.push(id);
    return out;
  }

  private async publishDraft(d: Draft): Promise<Record<string, number>> {
    const uploads = new Map(d.parts.map((p) => [p.role, RepoEditor.envelope(p.body, p.signatures)]));
    const files = await this.trust.publish(d.gun, uploads);
    await this.dropKeys(d.retireKeyIds);
    return Object.fromEntries(files.map((f) => [f.role, f.version]));
  }

  /** Signs every part with `signers` (where they are needed), then publishes or parks the change. */
  private async submit(actor: Actor, d: Draft, signers: Signer[]): Promise<ChangeResult> {
    try {
      for (const p of d.parts) {
        const need = requiredKeyIds(p);
        p.signatures = await RepoEditor.addSignatures(p.body, signers.filter((s) => need.includes(s.id)), p.signatures);
      }
      if (d.parts.every((p) => partMissing(p) === 0)) {
        const versions = await this.publishDraft(d);
        return { status: 'published', action: d.action, summary: d.summary, versions };
      }
      const p = pendingChange(d, actor, this.now(), this.opts.pendingTtlMs);
      this.pending.put(p);
      return { status: 'pending', action: d.action, summary: d.summary, pending: this.pendingView(p) };
    } catch (e) {
      await this.dropKeys(d.createdKeyIds);
      throw e;
    }
  }

  /** Builds a draft from a builder: parts, plus which held keys the change retires. */
  private async draft(b: DraftBuilder, action: string, summary: string, createdKeyIds: string[] = []): Promise<Draft> {
    const parts = b.build();
    if (parts.length === 0) throw badRequest('INVALID_REQUEST', 'nothing to change');
    return { gun: b.view.gun, action, summary, parts, createdKeyIds, retireKeyIds: await this.heldOf(b.view.gun, b.droppedKeyIds()) };
  }

  private async signersForDraft(actor: Actor, d: Draft, extra: Signer[] = [], only?: readonly string[]): Promise<Signer[]> {
    const ids = d.parts.flatMap(requiredKeyIds);
    const held = await this.usableSigners(actor, d.gun, ids, only);
    return [...held, ...extra.filter((s) => !held.some((h) => h.id === s.id))];
  }

  /** Removes expired pending changes and the keys made for them. */
  async sweep(): Promise<void> {
    for (const p of this.pending.takeExpired()) {
      await this.dropKeys(p.createdKeyIds);
      this.audit.append({ actor: { id: 'system', name: 'system' }, action: 'pending.expire', outcome: 'failure', gun: p.gun, detail: { pendingId: p.id, change: p.action } });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Repositories

  async createRepository(actor: Actor, req: { gun: string; rootKey: 'keystore' | 'offline'; passphrase?: string; algorithm?: 'ecdsa' | 'rsa' }) {
    return this.audited(actor, 'repository.create', req.gun, () =>
      this.locked(req.gun, async () => {
        this.checkGun(req.gun);
        if (req.rootKey === 'offline') checkPassphrase(req.passphrase);
        const res = await this.editor.init(req.gun, { rootKey: req.rootKey, algorithm: req.algorithm ?? 'ecdsa' });
        let rootKey: { id: string; canonicalId: string; pem: string } | undefined;
        if (res.offlineRootKey) {
          rootKey = {
            id: res.rootKeyId,
            canonicalId: notaryKeyId(res.offlineRootKey),
            pem: exportPrivateKeyPem(res.offlineRootKey, { passphrase: req.passphrase!, role: 'root' }),
          };
        }
        this.auditOk(actor, 'repository.create', req.gun, {
          rootKey: req.rootKey,
          rootKeyId: res.rootKeyId,
          targetsKeyId: res.targetsKeyId,
          snapshotKeyId: res.snapshotKeyId,
          timestampKeyId: res.timestampKeyId,
        });
        return { repository: await this.inspect(req.gun), ...(rootKey ? { rootKey } : {}) };
      }),
    );
  }

  async listRepositories(canRead: (gun: string) => boolean) {
    const out = [];
    for (const gun of (await this.trust.store.listGuns()).sort()) {
      if (!canRead(gun)) continue;
      let v: RepoView;
      try {
        v = await this.view(gun);
      } catch {
        continue; // no root (only keys minted) or not a valid GUN
      }
      const roles = allRoles(v);
      const expiries = roles.map((r) => this.roleExpiry(v, r)).filter((x): x is { role: string; expires: string } => !!x);
      expiries.sort((a, b) => parseRfc3339(a.expires) - parseRfc3339(b.expires));
      out.push({
        gun,
        rootVersion: v.root.version,
        targetsVersion: v.targets.get('targets')?.version ?? null,
        tagCount: this.allTags(v).length,
        delegationCount: roles.length - BASE_ROLES.length,
        nextExpiry: expiries[0] ?? null,
      });
    }
    return out;
  }

  private roleExpiry(v: RepoView, role: string): { role: string; expires: string } | undefined {
    const md = role === 'root' ? v.root : role === 'snapshot' ? v.snapshot : role === 'timestamp' ? v.timestamp : v.targets.get(role);
    return md && { role, expires: md.body.expires };
  }

  private roleFile(v: RepoView, role: string): Metadata | undefined {
    return role === 'root' ? v.root : role === 'snapshot' ? v.snapshot : role === 'timestamp' ? v.timestamp : v.targets.get(role);
  }

  /** Every target of every role, grouped by tag and digest, with the roles that sign it. */
  private allTags(v: RepoView) {
    const tags = new Map<string, { tag: string; digest: string; size: number; roles: string[]; signers: string[] }>();
    for (const role of allRoles(v)) {
      const md = v.targets.get(role);
      if (!md) continue;
      for (const [tag, fm] of Object.entries(md.body.targets)) {
        const digest = fm.hashes.sha256 ? `sha256:${hex(fm.hashes.sha256)}` : fm.hashes.sha512 ? `sha512:${hex(fm.hashes.sha512)}` : '';
        const k = `${tag}\n${digest}`;
        const e = tags.get(k) ?? { tag, digest, size: fm.length, roles: [], signers: [] };
        e.roles.push(role);
        // Docker's naming: each delegation that signs the digest by name; targets and
        // targets/releases only as "Repo Admin" when no delegation signs it.
        if (!RELEASED.has(role) && !e.signers.includes(role.slice('targets/'.length))) e.signers.push(role.slice('targets/'.length));
        tags.set(k, e);
      }
    }
    for (const e of tags.values()) if (e.signers.length === 0) e.signers.push('Repo Admin');
    return [...tags.values()].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : a.digest < b.digest ? -1 : 1));
  }

  /**
   * What `docker trust inspect` calls signed tags: tags released in `targets` or
   * `targets/releases`, each with every role that signs the same digest.
   */
  private signedTags(v: RepoView) {
    return this.allTags(v).filter((t) => t.roles.some((r) => RELEASED.has(r)));
  }

  /** Like `docker trust inspect`, with versions and expiry of every role. */
  async inspect(gun: string) {
    const v = await this.view(gun);
    const roles = [];
    for (const role of allRoles(v)) {
      const rk = roleKeysOf(v, role)!;
      const md = this.roleFile(v, role);
      roles.push({
        role,
        keyIds: rk.role.keyids,
        threshold: rk.role.threshold,
        ...(rk.paths ? { paths: rk.paths } : {}),
        version: md?.version ?? null,
        expires: md?.body.expires ?? null,
      });
    }
    const delegations = roles.filter((r) => isDelegationName(r.role));
    const signers = delegations
      .filter((d) => parentRole(d.role) === 'targets' && d.role !== 'targets/releases')
      .map((d) => ({ name: d.role.slice('targets/'.length), role: d.role, keyIds: d.keyIds }));
    const rootHeld = await this.heldOf(gun, v.root.body.roles.root.keyids);
    return {
      gun,
      rootKey: rootHeld.length >= v.root.body.roles.root.threshold ? ('keystore' as const) : ('offline' as const),
      signedTags: this.signedTags(v),
      allTags: this.allTags(v),
      signers,
      administrativeKeys: { root: v.root.body.roles.root.keyids, repository: v.root.body.roles.targets.keyids },
      roles: roles.filter((r) => isBaseRole(r.role)),
      delegations,
    };
  }

  async deleteRepository(actor: Actor, gun: string, deleteKeys: boolean) {
    return this.audited(actor, 'repository.delete', gun, () =>
      this.locked(gun, async () => {
        await this.view(gun);
        for (const p of this.pending.list({ gun })) {
          this.pending.remove(p.id);
          await this.dropKeys(p.createdKeyIds);
        }
        await this.trust.deleteGun(gun);
        const deleted: string[] = [];
        if (deleteKeys) {
          for (const k of await this.keys.list({ gun })) {
            await this.keys.delete(k.id);
            deleted.push(k.id);
          }
        }
        this.auditOk(actor, 'repository.delete', gun, { deletedKeyIds: deleted });
        return { gun, deleted: true, deletedKeyIds: deleted };
      }),
    );
  }

  /** Publishes a root signed elsewhere (offline root holders), through the normal publish checks. */
  async uploadRoot(actor: Actor, gun: string, root: unknown) {
    return this.audited(actor, 'root.upload', gun, () =>
      this.locked(gun, async () => {
        await this.view(gun);
        let bytes: Buffer;
        try {
          bytes = canonicalBytes(root);
          parseJson(bytes);
        } catch {
          throw badRequest('INVALID_METADATA', 'root is not canonical-JSON-encodable metadata');
        }
        const files = await this.trust.publish(gun, new Map([['root', bytes]]));
        const versions = Object.fromEntries(files.map((f) => [f.role, f.version]));
        this.auditOk(actor, 'root.upload', gun, { version: versions.root ?? null });
        return { status: 'published' as const, action: 'root.upload', summary: `uploaded root v${versions.root}`, versions };
      }),
      { role: 'root' },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Keys

  async listKeys(gun: string): Promise<KeyInfo[]> {
    const v = await this.view(gun);
    const held = new Map((await this.keys.list({ gun })).map((k) => [k.id, k]));
    const out: KeyInfo[] = [];
    const seen = new Set<string>();
    for (const role of allRoles(v)) {
      const rk = roleKeysOf(v, role)!;
      const md = this.roleFile(v, role);
      for (const id of rk.role.keyids) {
        const key = rk.keys[id];
        const rec = held.get(id);
        seen.add(id);
        out.push({
          id,
          canonicalId: key ? safeCanonicalId(key) : id,
          algorithm: key?.keytype ?? 'unknown',
          role,
          held: rec ? (SERVER_ROLES.has(role) ? 'server' : 'keystore') : 'offline',
          keystore: rec ? rec.held : null,
          createdAt: rec?.createdAt ?? null,
          inMetadata: true,
          roleVersion: md?.version ?? null,
          roleExpires: md?.body.expires ?? null,
        });
      }
    }
    for (const rec of held.values()) {
      if (seen.has(rec.id)) continue;
      out.push({
        id: rec.id,
        canonicalId: safeCanonicalId(rec.public),
        algorithm: rec.public.keytype,
        role: rec.role,
        held: SERVER_ROLES.has(rec.role) ? 'server' : 'keystore',
        keystore: rec.held,
        createdAt: rec.createdAt,
        inMetadata: false,
        roleVersion: null,
        roleExpires: null,
      });
    }
    return out;
  }

  async exportKey(actor: Actor, gun: string, id: string, passphrase: string) {
    return this.audited(
      actor,
      'key.export',
      gun,
      async () => {
        this.checkGun(gun);
        checkPassphrase(passphrase);
        const rec = await this.keys.get(id);
        if (!rec || rec.gun !== gun) throw notFound('KEY_NOT_FOUND', `the server holds no key ${id} for ${gun}`);
        let priv: KeyObject;
        try {
          priv = await this.keys.exportPrivate(id);
        } catch (e) {
          if (e instanceof KeyStoreError) throw conflict('NOT_EXPORTABLE', `the ${this.keys.kind} keystore does not release this key`);
          throw e;
        }
        const pem = exportPrivateKeyPem(priv, { passphrase, role: rec.role, gun });
        this.auditOk(actor, 'key.export', gun, {}, { role: rec.role, keyId: id });
        return { keyId: id, canonicalId: safeCanonicalId(rec.public), role: rec.role, gun, pem };
      },
      { keyId: id },
    );
  }

  /**
   * Imports a private key for a role. Without `activate` the key is only stored (it may already
   * be listed, e.g. a targets key made by the notary client; or be kept for later). With
   * `activate` the role is rotated to it, as by rotateKey.
   */
  async importKey(actor: Actor, gun: string, req: { pem: string; passphrase?: string; role: string; activate?: boolean; replaceKeyId?: string; offlineRootKey?: OfflineKeyInput }) {
    return this.audited(
      actor,
      'key.import',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          requireRole(v, req.role);
          const up = readPrivateKeyPem(req.pem, req.passphrase);
          if (up.role !== undefined && up.role !== req.role && `targets/${up.role}` !== req.role) {
            throw badRequest('ROLE_MISMATCH', `the key's role header says ${up.role.slice(0, 64)}, not ${req.role}`);
          }
          if (up.gun !== undefined && up.gun !== gun) throw badRequest('GUN_MISMATCH', `the key's gun header names another repository`);
          if (req.role === 'root' && up.privateKey.asymmetricKeyType === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
          const rk = roleKeysOf(v, req.role)!;
          const listed = rk.role.keyids.map((id) => rk.keys[id]!).filter(Boolean);
          let pub = metadataKeyFor(up.privateKey, listed);
          const inRole = rk.role.keyids.includes(keyId(pub));
          if (req.role === 'root' && !inRole) {
            if (!req.activate) throw badRequest('KEY_NOT_IN_ROLE', 'this key is not a root key of the repository; import it with activate=true to rotate the root to it');
            pub = (await createRootCertificate({ gun, privateKey: up.privateKey, notBefore: new Date(this.now()) })).key;
          }
          const id = keyId(pub);
          if (await this.keys.get(id)) throw conflict('KEY_EXISTS', `the server already holds key ${id}`);
          if (req.activate && !inRole) {
            const signer = new LocalSigner(up.privateKey, pub);
            const result = await this.rotateWith(actor, v, req.role, { signer, store: true, replaceKeyId: req.replaceKeyId, offlineRootKey: req.offlineRootKey, action: 'key.import' });
            this.auditChange(actor, 'key.import', gun, result, { role: req.role, keyId: id });
            return { key: await this.keyInfo(gun, id), ...result };
          }
          await this.keys.importKey(gun, req.role, up.privateKey, pub);
          this.auditOk(actor, 'key.import', gun, { inMetadata: inRole }, { role: req.role, keyId: id });
          return { key: await this.keyInfo(gun, id), status: 'stored' as const };
        }),
      { role: req.role },
    );
  }

  private async keyInfo(gun: string, id: string): Promise<KeyInfo | null> {
    return (await this.listKeys(gun)).find((k) => k.id === id) ?? null;
  }

  private auditChange(actor: Actor, action: string, gun: string, r: ChangeResult, extra: { role?: string; keyId?: string } = {}, detail: Record<string, string | number | boolean | string[] | null> = {}) {
    this.audit.append({
      actor: actorRef(actor),
      action,
      outcome: r.status === 'published' ? 'success' : 'pending',
      gun,
      ...extra,
      detail: r.status === 'published' ? { ...detail, versions: Object.entries(r.versions).map(([k, n]) => `${k}=${n}`) } : { ...detail, pendingId: r.pending.id },
    });
  }

  /** Makes a new key for `role`: root keys wrapped in a certificate; snapshot/timestamp as server keys. */
  private async newKey(gun: string, role: string, alg: Algorithm | undefined, rootMode: 'keystore' | 'offline'): Promise<{ signer: Signer; store: boolean; privateKey?: KeyObject }> {
    if (role === 'root') {
      const k = await this.editor.makeRootKey(gun, alg ?? 'ecdsa');
      return { signer: new LocalSigner(k.privateKey, k.key), store: rootMode === 'keystore', privateKey: k.privateKey };
    }
    const algorithm = alg ?? (SERVER_ROLES.has(role) ? (this.opts.serverKeyAlgorithm ?? 'ecdsa') : 'ecdsa');
    const rec = await this.keys.generate(gun, role, algorithm);
    try {
      const s = await this.keys.signer(rec.id);
      if (!s) throw new Error('keystore returned no signer for a new key');
      return { signer: s, store: false };
    } catch (e) {
      await this.dropKeys([rec.id]);
      throw e;
    }
  }

  /**
   * Replaces one key of `role` by `signer`'s key: root and its dependents (the new root is signed
   * by the current and the new root keys), or the parent targets role for a delegation. A key to
   * be stored is written first and removed again if the change fails.
   */
  private async rotateWith(
    actor: Actor,
    v: RepoView,
    role: string,
    o: { signer: Signer; store: boolean; privateKey?: KeyObject; replaceKeyId?: string; offlineRootKey?: OfflineKeyInput; action: string; signWith?: string[] },
  ): Promise<ChangeResult> {
    const rk = roleKeysOf(v, role)!;
    let old: string;
    if (o.replaceKeyId !== undefined) {
      if (!rk.role.keyids.includes(o.replaceKeyId)) throw badRequest('KEY_NOT_IN_ROLE', `key ${o.replaceKeyId} is not a key of ${role}`);
      old = o.replaceKeyId;
    } else if (rk.role.keyids.length === 1) {
      old = rk.role.keyids[0]!;
    } else {
      throw badRequest('INVALID_REQUEST', `${role} has ${rk.role.keyids.length} keys: name the one to replace with keyId`);
    }
    const newId = o.signer.id;
    if (rk.role.keyids.includes(newId)) throw conflict('CONFLICT', `key ${newId} is already a key of ${role}`);
    const b = new DraftBuilder(v, this.now());
    b.editRoleKeys(role, (r) => void (r.keyids = r.keyids.map((id) => (id === old ? newId : id))), [o.signer.key]);
    // The rotated role's own file is re-signed, so the new key signs what clients fetch next.
    if (isTargetsRole(role) && v.targets.has(role)) b.targets(role);
    const offline = o.offlineRootKey ? [this.offlineSigner(o.offlineRootKey, v.root.body.keys, v.root.body.roles.root.keyids)] : [];
    const created: string[] = [];
    const priv = o.privateKey ?? (o.signer instanceof LocalSigner ? o.signer.privateKey : undefined);
    const d = await this.draft(b, o.action, `replace ${role} key ${old.slice(0, 12)} by ${newId.slice(0, 12)}`);
    if (o.store) {
      if (!priv) throw new Error('no private key to store');
      await this.keys.importKey(v.gun, role, priv, o.signer.key);
      created.push(newId);
    } else if ((await this.keys.get(newId))?.gun === v.gun) {
      created.push(newId); // generated by the keystore for this change
    }
    d.createdKeyIds = created;
    let signers: Signer[];
    try {
      signers = await this.signersForDraft(actor, d, [o.signer, ...offline], o.signWith ? [...o.signWith, newId] : undefined);
    } catch (e) {
      await this.dropKeys(created);
      throw e;
    }
    return this.submit(actor, d, signers);
  }

  async rotateKey(
    actor: Actor,
    gun: string,
    role: string,
    req: { keyId?: string; algorithm?: Algorithm; rootKey?: 'keystore' | 'offline'; passphrase?: string; offlineRootKey?: OfflineKeyInput },
  ) {
    return this.audited(
      actor,
      'key.rotate',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          requireRole(v, role);
          if (req.keyId !== undefined && !roleKeysOf(v, role)!.role.keyids.includes(req.keyId)) throw badRequest('KEY_NOT_IN_ROLE', `key ${req.keyId} is not a key of ${role}`);
          if (role === 'root' && req.algorithm === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
          let rootMode: 'keystore' | 'offline' = 'keystore';
          if (role === 'root') {
            const held = await this.heldOf(gun, v.root.body.roles.root.keyids);
            rootMode = req.rootKey ?? (held.length > 0 ? 'keystore' : 'offline');
            if (rootMode === 'offline') checkPassphrase(req.passphrase);
          }
          // Check an offline key before a new key is made, so a bad one leaves nothing behind.
          if (req.offlineRootKey) this.offlineSigner(req.offlineRootKey, v.root.body.keys, v.root.body.roles.root.keyids);
          if (rk(v, role).keyids.length > 1 && req.keyId === undefined) throw badRequest('INVALID_REQUEST', `${role} has several keys: name the one to replace with keyId`);
          const k = await this.newKey(gun, role, req.algorithm, rootMode);
          let result: ChangeResult;
          try {
            result = await this.rotateWith(actor, v, role, {
              signer: k.signer,
              store: k.store,
              ...(k.privateKey ? { privateKey: k.privateKey } : {}),
              ...(req.keyId !== undefined ? { replaceKeyId: req.keyId } : {}),
              ...(req.offlineRootKey ? { offlineRootKey: req.offlineRootKey } : {}),
              action: 'key.rotate',
            });
          } catch (e) {
            if (!k.store) await this.dropKeys([k.signer.id]); // a keystore-generated key for this rotation
            throw e;
          }
          this.auditChange(actor, 'key.rotate', gun, result, { role, keyId: k.signer.id });
          const rootKey =
            role === 'root' && rootMode === 'offline' && k.privateKey
              ? { id: k.signer.id, canonicalId: safeCanonicalId(k.signer.key), pem: exportPrivateKeyPem(k.privateKey, { passphrase: req.passphrase!, role: 'root' }) }
              : undefined;
          return { ...result, newKeyId: k.signer.id, ...(rootKey ? { rootKey } : {}) };
        }),
      { role },
    );
  }

  /**
   * Revokes a key: removes it from every role that lists it (refused if a role would fall below
   * its threshold) and deletes it from the keystore once that change is published. A held key
   * that no role lists is simply deleted.
   */
  async deleteKey(actor: Actor, gun: string, id: string, req: { offlineRootKey?: OfflineKeyInput } = {}) {
    return this.audited(
      actor,
      'key.delete',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          const roles = allRoles(v).filter((r) => roleKeysOf(v, r)!.role.keyids.includes(id));
          if (roles.length === 0) {
            const rec = await this.keys.get(id);
            if (!rec || rec.gun !== gun) throw notFound('KEY_NOT_FOUND', `${gun} has no key ${id}`);
            await this.keys.delete(id);
            this.auditOk(actor, 'key.delete', gun, { inMetadata: false }, { role: rec.role, keyId: id });
            return { status: 'published' as const, action: 'key.delete', summary: `deleted unused key ${id.slice(0, 12)}`, versions: {}, removedFromRoles: [] as string[], deletedFromKeystore: true };
          }
          const b = new DraftBuilder(v, this.now());
          for (const role of roles) {
            const rk = roleKeysOf(v, role)!.role;
            if (rk.keyids.length - 1 < rk.threshold) {
              throw conflict('KEY_IN_USE', `removing the key would leave ${role} with ${rk.keyids.length - 1} key(s) for threshold ${rk.threshold}: rotate it or add a key first`);
            }
            b.editRoleKeys(role, (r) => void (r.keyids = r.keyids.filter((k) => k !== id)));
          }
          const d = await this.draft(b, 'key.delete', `remove key ${id.slice(0, 12)} from ${roles.join(', ')}`);
          if ((await this.keys.get(id))?.gun === gun && !d.retireKeyIds.includes(id)) d.retireKeyIds.push(id);
          const offline = req.offlineRootKey ? [this.offlineSigner(req.offlineRootKey, v.root.body.keys, v.root.body.roles.root.keyids)] : [];
          const result = await this.submit(actor, d, await this.signersForDraft(actor, d, offline));
          this.auditChange(actor, 'key.delete', gun, result, { keyId: id }, { roles });
          return { ...result, removedFromRoles: roles, deletedFromKeystore: result.status === 'published' && d.retireKeyIds.includes(id) };
        }),
      { keyId: id },
    );
  }

  /** Adds a key to a role (generated on the server, or a public key / certificate held elsewhere), optionally with a new threshold. */
  async addRoleKey(actor: Actor, gun: string, role: string, req: { publicKey?: string; algorithm?: Algorithm; threshold?: number; offlineRootKey?: OfflineKeyInput }) {
    return this.audited(
      actor,
      'role.key.add',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          requireRole(v, role);
          const rk = roleKeysOf(v, role)!;
          if (req.threshold !== undefined && req.threshold > rk.role.keyids.length + 1) {
            throw badRequest('THRESHOLD_TOO_HIGH', `role ${role}: threshold ${req.threshold} is larger than its ${rk.role.keyids.length + 1} key(s)`);
          }
          let key: TufKey;
          let extra: Signer[] = [];
          let generated: { signer: Signer; store: boolean; privateKey?: KeyObject } | undefined;
          if (req.publicKey !== undefined) {
            if (SERVER_ROLES.has(role)) throw badRequest('INVALID_REQUEST', `${role} keys are held by the server: generate one (omit publicKey) or rotate`);
            key = parsePublicKeyPem(req.publicKey, new Date(this.now()));
            if (role === 'root') {
              const ok = validateRootKey(key, gun, new Date(this.now()));
              if (!ok.ok) throw badRequest('UNSUPPORTED_KEY', `root keys must be certificates for this GUN: ${ok.reason}`);
            }
          } else {
            if (role === 'root' && req.algorithm === 'ed25519') throw badRequest('UNSUPPORTED_KEY', 'root keys must be ECDSA or RSA');
            generated = await this.newKey(gun, role, req.algorithm, 'keystore');
            key = generated.signer.key;
            extra = [generated.signer];
          }
          const id = keyId(key);
          const created: string[] = [];
          try {
            if (rk.role.keyids.includes(id)) throw conflict('CONFLICT', `key ${id} is already a key of ${role}`);
            const b = new DraftBuilder(v, this.now());
            b.editRoleKeys(
              role,
              (r) => {
                r.keyids.push(id);
                if (req.threshold !== undefined) r.threshold = req.threshold;
              },
              [key],
            );
            if (req.offlineRootKey) extra.push(this.offlineSigner(req.offlineRootKey, v.root.body.keys, v.root.body.roles.root.keyids));
            const d = await this.draft(b, 'role.key.add', `add key ${id.slice(0, 12)} to ${role}${req.threshold !== undefined ? `, threshold ${req.threshold}` : ''}`);
            if (generated?.store && generated.privateKey) await this.keys.importKey(gun, role, generated.privateKey, key);
            if (generated && (await this.keys.get(id))) created.push(id);
            d.createdKeyIds = created;
            const result = await this.submit(actor, d, await this.signersForDraft(actor, d, extra));
            this.auditChange(actor, 'role.key.add', gun, result, { role, keyId: id }, { threshold: req.threshold ?? rk.role.threshold });
            return { ...result, keyId: id };
          } catch (e) {
            if (generated && !created.length && (await this.keys.get(id))) await this.dropKeys([id]);
            throw e;
          }
        }),
      { role },
    );
  }

  async setThreshold(actor: Actor, gun: string, role: string, req: { threshold: number; offlineRootKey?: OfflineKeyInput }) {
    return this.audited(
      actor,
      'role.threshold',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          requireRole(v, role);
          const b = new DraftBuilder(v, this.now());
          b.editRoleKeys(role, (r) => void (r.threshold = req.threshold));
          const d = await this.draft(b, 'role.threshold', `set the threshold of ${role} to ${req.threshold}`);
          const offline = req.offlineRootKey ? [this.offlineSigner(req.offlineRootKey, v.root.body.keys, v.root.body.roles.root.keyids)] : [];
          const result = await this.submit(actor, d, await this.signersForDraft(actor, d, offline));
          this.auditChange(actor, 'role.threshold', gun, result, { role }, { threshold: req.threshold });
          return result;
        }),
      { role },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Delegations and signers

  async listDelegations(gun: string) {
    return (await this.inspect(gun)).delegations;
  }

  async listSigners(gun: string) {
    const info = await this.inspect(gun);
    const keys = await this.listKeys(gun);
    const heldOf = (id: string) => keys.find((k) => k.id === id)?.held ?? 'offline';
    return info.signers.map((s) => ({ ...s, keys: s.keyIds.map((id) => ({ id, held: heldOf(id) })) }));
  }

  /** Public keys from PEMs, or one key generated on the server (kept in the keystore under `keyRole`). */
  private async delegationKeys(gun: string, keyRole: string, pems: string[] | undefined, generate: boolean | undefined, alg?: Algorithm) {
    if (generate && pems?.length) throw badRequest('INVALID_REQUEST', 'give publicKeys or generate, not both');
    if (generate) {
      const rec = await this.keys.generate(gun, keyRole, alg ?? 'ecdsa');
      return { keys: [rec.public], created: [rec.id] };
    }
    const keys = (pems ?? []).map((p) => parsePublicKeyPem(p, new Date(this.now())));
    return { keys, created: [] as string[] };
  }

  async addDelegation(actor: Actor, gun: string, req: { role: string; publicKeys?: string[]; generate?: boolean; algorithm?: Algorithm; paths?: string[]; threshold?: number }) {
    return this.audited(
      actor,
      'delegation.add',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          if (!isDelegationName(req.role)) throw badRequest('INVALID_ROLE', 'delegation names look like targets/<name> (lower case letters, digits, - and _)');
          const existing = roleKeysOf(v, req.role);
          const pemKeys = (req.publicKeys ?? []).map((p) => parsePublicKeyPem(p, new Date(this.now())));
          const total = new Set([...(existing?.role.keyids ?? []), ...pemKeys.map(keyId)]).size + (req.generate ? 1 : 0);
          const threshold = req.threshold ?? existing?.role.threshold ?? 1;
          if (total === 0) throw badRequest('INVALID_REQUEST', 'a delegation needs at least one key: give publicKeys or generate');
          if (threshold > total) throw badRequest('THRESHOLD_TOO_HIGH', `threshold ${threshold} is larger than the ${total} key(s) of ${req.role}`);
          const { keys, created } = await this.delegationKeys(gun, req.role, req.generate ? undefined : req.publicKeys, req.generate, req.algorithm);
          try {
            const b = new DraftBuilder(v, this.now());
            const what = b.upsertDelegation(req.role, req.generate ? [...pemKeys, ...keys] : keys, { ...(req.paths ? { paths: req.paths } : {}), ...(req.threshold !== undefined ? { threshold: req.threshold } : {}) });
            const d = await this.draft(b, 'delegation.add', `${what === 'created' ? 'create' : 'update'} delegation ${req.role}`, created);
            const result = await this.submit(actor, d, await this.signersForDraft(actor, d));
            this.auditChange(actor, 'delegation.add', gun, result, { role: req.role }, { keyIds: keys.map(keyId) });
            return { ...result, role: req.role, keyIds: keys.map(keyId) };
          } catch (e) {
            await this.dropKeys(created);
            throw e;
          }
        }),
      { role: req.role },
    );
  }

  async removeDelegation(actor: Actor, gun: string, role: string) {
    return this.audited(
      actor,
      'delegation.remove',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          if (!isDelegationName(role)) throw badRequest('INVALID_ROLE', 'not a delegation name');
          requireRole(v, role);
          const b = new DraftBuilder(v, this.now());
          b.removeDelegation(role);
          const d = await this.draft(b, 'delegation.remove', `remove delegation ${role}`);
          const result = await this.submit(actor, d, await this.signersForDraft(actor, d));
          this.auditChange(actor, 'delegation.remove', gun, result, { role });
          return result;
        }),
      { role },
    );
  }

  /** `docker trust signer add`: the signer's keys go into targets/<name> and targets/releases. */
  async addSigner(actor: Actor, gun: string, req: { name: string; publicKeys?: string[]; generate?: boolean; algorithm?: Algorithm; paths?: string[]; threshold?: number }) {
    const role = `targets/${req.name}`;
    return this.audited(
      actor,
      'signer.add',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          if (req.name === 'releases' || !isDelegationName(role) || req.name.includes('/')) throw badRequest('INVALID_ROLE', 'signer names are lower case letters, digits, - and _, and not "releases"');
          const pemKeys = (req.publicKeys ?? []).map((p) => parsePublicKeyPem(p, new Date(this.now())));
          const count = new Set([...(roleKeysOf(v, role)?.role.keyids ?? []), ...pemKeys.map(keyId)]).size + (req.generate ? 1 : 0);
          if (count === 0) throw badRequest('INVALID_REQUEST', 'a signer needs at least one key: give publicKeys or generate');
          const threshold = req.threshold ?? roleKeysOf(v, role)?.role.threshold ?? 1;
          if (threshold > count) throw badRequest('THRESHOLD_TOO_HIGH', `threshold ${threshold} is larger than the ${count} key(s) of ${role}`);
          const { keys, created } = await this.delegationKeys(gun, role, req.generate ? undefined : req.publicKeys, req.generate, req.algorithm);
          try {
            const b = new DraftBuilder(v, this.now());
            const paths = req.paths ?? [''];
            b.upsertDelegation(role, keys, { paths, ...(req.threshold !== undefined ? { threshold: req.threshold } : {}) });
            b.upsertDelegation('targets/releases', keys, roleKeysOf(v, 'targets/releases') ? {} : { paths: [''] });
            const d = await this.draft(b, 'signer.add', `add signer ${req.name}`, created);
            const result = await this.submit(actor, d, await this.signersForDraft(actor, d));
            this.auditChange(actor, 'signer.add', gun, result, { role }, { keyIds: keys.map(keyId) });
            return { ...result, name: req.name, keyIds: keys.map(keyId) };
          } catch (e) {
            await this.dropKeys(created);
            throw e;
          }
        }),
      { role },
    );
  }

  /** `docker trust signer remove`: drops targets/<name> and its keys from targets/releases. */
  async removeSigner(actor: Actor, gun: string, name: string) {
    const role = `targets/${name}`;
    return this.audited(
      actor,
      'signer.remove',
      gun,
      () =>
        this.locked(gun, async () => {
          const v = await this.view(gun);
          if (name === 'releases' || !isDelegationName(role)) throw badRequest('INVALID_ROLE', 'not a signer name');
          requireRole(v, role);
          const ids = roleKeysOf(v, role)!.role.keyids;
          const b = new DraftBuilder(v, this.now());
          b.removeDelegation(role);
          const releases = roleKeysOf(v, 'targets/releases');
          if (releases) {
            const others = new Set(
              (v.targets.get('targets')?.body.delegations.roles ?? []).filter((r) => r.name !== role && r.name !== 'targets/releases').flatMap((r) => r.keyids),
            );
            const remaining = releases.role.keyids.filter((id) => !ids.includes(id) || others.has(id));
            if (remaining.length === 0) b.removeDelegation('targets/releases');
            else if (remaining.length < releases.role.threshold) {
              throw conflict('KEY_IN_USE', `targets/releases would keep ${remaining.length} key(s) for threshold ${releases.role.threshold}: lower its threshold first`);
            } else if (remaining.length !== releases.role.keyids.length) b.editRoleKeys('targets/releases', (r) => void (r.keyids = remaining));
          }
          const d = await this.draft(b, 'signer.remove', `remove signer ${name}`);
          const result = await this.submit(actor, d, await this.signersForDraft(actor, d));
          this.auditChange(actor, 'signer.remove', gun, result, { role });
          return result;
        }),
      { role },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Tags: signed and removed by the signing service (src/signing), the one implementation of
  // "put or remove targets in a role and publish": its input rules, role and path checks, key
  // binding and m-of-n pending changes. The management API proposes a change the caller cannot
  // sign at all (it waits for key holders) where the signing API answers 403.

  /** Signing serves the tag routes; app.ts connects it once both exist. */
  useTagSigning(s: TagSigning): void {
    this.tagSigning = s;
  }

  private signingService(): TagSigning {
    if (!this.tagSigning) throw new Error('tag signing is not connected to the management API');
    return this.tagSigning;
  }

  private defaultTagRole(v: RepoView): string {
    return roleKeysOf(v, 'targets/releases') ? 'targets/releases' : 'targets';
  }

  /** A publication of the signing service as a management change result. */
  private tagChange(p: Publication): ChangeResult {
    const pending = p.pending && this.pending.get(p.pending.id);
    if (pending) return { status: 'pending', action: p.action, summary: p.summary, pending: this.pendingView(pending) };
    return { status: 'published', action: p.action, summary: p.summary, versions: p.versions };
  }

  async addTag(actor: Actor, gun: string, req: { tag: string; digest: string; size: number; role?: string; signWith?: string[] }) {
    return this.audited(actor, 'tag.add', gun, async () => {
      const v = await this.view(gun);
      const role = req.role ?? this.defaultTagRole(v);
      const result = await fromSigning(async () => {
        const item = { ...SigningService.parseItem({ tag: req.tag, digest: req.digest, size: req.size, role }), gun };
        const label = { action: 'tag.add', summary: `sign ${item.tag} (${item.digest.slice(0, 19)}) in ${role}` };
        const out = await this.signingService().signItems([item], signingIdentity(actor), { propose: true, label, ...(req.signWith ? { signWith: req.signWith } : {}) });
        return this.tagChange(out.publications[0]!);
      });
      this.auditChange(actor, 'tag.add', gun, result, { role }, { tag: req.tag, digest: req.digest });
      return { ...result, role };
    });
  }

  async removeTag(actor: Actor, gun: string, tag: string, req: { role?: string; signWith?: string[] }) {
    return this.audited(actor, 'tag.remove', gun, async () => {
      await this.view(gun);
      const { result, roles } = await fromSigning(async () => {
        const opts = { propose: true, label: { action: 'tag.remove' }, ...(req.signWith ? { signWith: req.signWith } : {}) };
        const out = await this.signingService().revokeTag(gun, tag, req.role, signingIdentity(actor), opts);
        return { result: this.tagChange(out.publication), roles: out.result.removed.map((r) => r.role) };
      });
      this.auditChange(actor, 'tag.remove', gun, result, {}, { tag, roles });
      return result;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Pending changes

  async listPending(filter: (gun: string) => boolean, gun?: string): Promise<PendingView[]> {
    await this.sweep();
    return this.pending
      .list(gun !== undefined ? { gun } : {})
      .filter((p) => filter(p.gun))
      .map((p) => this.pendingView(p));
  }

  async getPending(id: string): Promise<PendingChange> {
    await this.sweep();
    const p = this.pending.get(id);
    if (!p) throw notFound('NOT_FOUND', `no pending change ${id} (it may have expired or been published)`);
    return p;
  }

  viewPending(p: PendingChange): PendingView {
    return this.pendingView(p);
  }

  /**
   * Adds signatures to a pending change: by a held key the caller may use (`keyId`), or uploaded
   * (`signatures`, each over the part's canonical bytes). Publishes when every part is complete.
   */
  async signPending(actor: Actor, id: string, req: { keyId?: string; signatures?: Array<{ keyid: string; sig: string; method?: string; role?: string }> }): Promise<ChangeResult> {
    const first = await this.getPending(id);
    return this.audited(
      actor,
      'pending.sign',
      first.gun,
      () =>
        this.locked(first.gun, async () => {
          const p = await this.getPending(id);
          if (!req.keyId && !req.signatures?.length) throw badRequest('INVALID_REQUEST', 'give keyId (a key the server holds) or signatures');
          const added: string[] = [];
          if (req.keyId) {
            const rec = await this.keys.get(req.keyId);
            if (!rec || rec.gun !== p.gun) throw notFound('KEY_NOT_FOUND', `the server holds no key ${req.keyId} for ${p.gun}`);
            const [signer] = await this.usableSigners(actor, p.gun, [req.keyId]);
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
          const complete = p.parts.every((x) => partMissing(x) === 0);
          if (!complete) {
            this.pending.put(p);
            this.auditOk(actor, 'pending.sign', p.gun, { pendingId: p.id, keyIds: added, complete: false });
            return { status: 'pending' as const, action: p.action, summary: p.summary, pending: this.pendingView(p) };
          }
          try {
            const versions = await this.publishDraft({ gun: p.gun, action: p.action, summary: p.summary, parts: p.parts, createdKeyIds: p.createdKeyIds, retireKeyIds: p.retireKeyIds });
            this.pending.remove(p.id);
            this.audit.append({ actor: actorRef(actor), action: 'pending.sign', outcome: 'success', gun: p.gun, detail: { pendingId: p.id, keyIds: added, complete: true, change: p.action } });
            this.audit.append({
              actor: actorRef(actor),
              action: p.action,
              outcome: 'success',
              gun: p.gun,
              detail: { pendingId: p.id, versions: Object.entries(versions).map(([k, n]) => `${k}=${n}`) },
            });
            return { status: 'published' as const, action: p.action, summary: p.summary, versions };
          } catch (e) {
            // The change can no longer apply (another change won, or the repository moved on).
            this.pending.remove(p.id);
            await this.dropKeys(p.createdKeyIds);
            const err = toApiError(e);
            throw new ApiError(409, err.code === 'VERSION_CONFLICT' ? 'VERSION_CONFLICT' : 'CONFLICT', `the change could not be published and was dropped: ${err.message}`);
          }
        }),
      {},
    );
  }

  async cancelPending(actor: Actor, id: string) {
    const p = await this.getPending(id);
    return this.audited(actor, 'pending.cancel', p.gun, async () => {
      if (!isAdmin(actor) && p.createdBy.id !== actor.id) throw new ApiError(403, 'FORBIDDEN', 'only the creator of a pending change or an admin may cancel it');
      this.pending.remove(id);
      await this.dropKeys(p.createdKeyIds);
      this.auditOk(actor, 'pending.cancel', p.gun, { pendingId: id, change: p.action });
      return { id, cancelled: true };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Expiry

  async expiring(withinMs: number, canRead: (gun: string) => boolean) {
    const cutoff = this.now() + withinMs;
    const items = [];
    for (const gun of (await this.trust.store.listGuns()).sort()) {
      if (!canRead(gun)) continue;
      let v: RepoView;
      try {
        v = await this.view(gun);
      } catch {
        continue;
      }
      for (const role of allRoles(v)) {
        const md = this.roleFile(v, role);
        if (!md || md.expiresMs > cutoff) continue;
        const serverRole = SERVER_ROLES.has(role);
        const held = serverRole ? (await this.heldOf(gun, roleKeysOf(v, role)!.role.keyids)).length > 0 : false;
        items.push({ gun, role, version: md.version, expires: md.body.expires, expired: md.isExpired(this.now()), renewedAutomatically: serverRole && held });
      }
    }
    items.sort((a, b) => parseRfc3339(a.expires) - parseRfc3339(b.expires));
    return { within: Math.round(withinMs / 1000), cutoff: new Date(cutoff).toISOString(), items };
  }

  /** Re-signs targets roles (and root, if asked) with fresh expiry; each role is its own change. */
  async resign(actor: Actor, gun: string, req: { roles?: string[]; withinMs?: number; signWith?: string[]; offlineRootKey?: OfflineKeyInput }) {
    return this.audited(actor, 'repository.resign', gun, () =>
      this.locked(gun, async () => {
        const v = await this.view(gun);
        let roles = req.roles ?? allRoles(v).filter((r) => isTargetsRole(r) && v.targets.has(r));
        for (const r of roles) {
          requireRole(v, r);
          if (SERVER_ROLES.has(r)) throw badRequest('INVALID_ROLE', `${r} is re-signed by the server automatically`);
          if (isTargetsRole(r) && !v.targets.has(r)) throw notFound('ROLE_NOT_FOUND', `${r} has no metadata to re-sign yet`);
        }
        if (req.withinMs !== undefined) {
          const cutoff = this.now() + req.withinMs;
          roles = roles.filter((r) => (this.roleFile(v, r)?.expiresMs ?? Infinity) <= cutoff);
        }
        const results = [];
        let cur = v;
        for (const role of roles) {
          const b = new DraftBuilder(cur, this.now());
          if (role === 'root') b.root();
          else b.targets(role);
          const d = await this.draft(b, 'repository.resign', `re-sign ${role}`);
          const offline = role === 'root' && req.offlineRootKey ? [this.offlineSigner(req.offlineRootKey, cur.root.body.keys, cur.root.body.roles.root.keyids)] : [];
          const r = await this.submit(actor, d, await this.signersForDraft(actor, d, offline, req.signWith));
          this.auditChange(actor, 'repository.resign', gun, r, { role });
          results.push(
            r.status === 'published'
              ? { role, status: r.status, version: r.versions[role] ?? null, pendingId: null }
              : { role, status: r.status, version: r.pending.parts[0]!.version, pendingId: r.pending.id },
          );
          if (r.status === 'published') cur = await this.view(gun);
        }
        return { gun, results };
      }),
    );
  }
}

function checkPassphrase(p: string | undefined): asserts p is string {
  if (!p) throw badRequest('PASSPHRASE_REQUIRED', 'a passphrase is required to encrypt the exported key');
  if (p.length < MIN_PASSPHRASE_LENGTH) throw badRequest('INVALID_REQUEST', `the passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters`);
}

function rk(v: RepoView, role: string) {
  return roleKeysOf(v, role)!.role;
}

function safeCanonicalId(k: TufKey): string {
  try {
    return canonicalKeyId(k);
  } catch {
    return keyId(k);
  }
}

