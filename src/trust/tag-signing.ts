// Tag signing, for the signing API and the management API's tag routes: turns sign, revoke and
// promote requests (single items and batches of thousands) into targets edits for the change
// pipeline (trust/changes.ts), one change per GUN, and asks it to write the registry-side
// signatures (cosign `.sig`, Sigstore bundle) after publishing. Everything is checked before
// anything is published: a bad item, an unknown role, a role the caller may not sign or a digest
// the upstream does not have refuses the whole request. A role whose threshold the caller's keys
// cannot meet becomes a pending change.
import type { JsonValue } from '../core/json/canonical.js';
import type { Signer } from '../core/crypto/signer.js';
import { ownEntry, setEntry, type DelegatedRole, type FileMeta, type TargetsBody } from '../core/tuf/metadata.js';
import type { TargetRequirement } from '../core/tuf/verify.js';
import type { Logger } from '../observability/log.js';
import {
  TrustChangeError,
  type AfterPublish,
  type Caller,
  type Edit,
  type KeyOptions,
  type PendingInfo,
  type Publication,
  type PublishedRole,
  type TrustChanges,
} from './changes.js';
import { EditorError, type RepoEditor, type SigningRole } from './editor.js';
import {
  pushBundleReferrer,
  writeAttestation,
  writeCosignSignature,
  type AttestationResult,
  type BundleResult,
  type CosignResult,
} from '../registry/signatures.js';
import { createBundle, TAG_PREDICATE, tagStatement, type BundleOptions } from '../core/crypto/sigstore.js';
import { TimestampError } from '../core/crypto/timestamp.js';
import type { Bundle } from '@sigstore/bundle';
import { RegistryError, copyManifest, type ManifestHead, type RegistryClient } from '../registry/artifacts.js';
import { checkCustom, checkDigest, checkRole, checkSize, checkTag, DIGEST_RE, SigningInputError, TAG_RE } from '../http/signing-input.js';
import type { ImageVerifier } from './verify-report.js';
import { SigningError } from '../http/signing-error.js';

/** Who is asking: which held keys they may sign with (the change pipeline's caller). */
export type SigningIdentity = Caller;
export type { KeyOptions, PendingInfo, Publication, PublishedRole };

/** The signing API's error for a refusal of the change pipeline. */
export function fromTrust(e: unknown): unknown {
  if (!(e instanceof TrustChangeError)) return e;
  switch (e.code) {
    case 'REPOSITORY_NOT_FOUND':
      return new SigningError(404, 'REPOSITORY_NOT_FOUND', e.message);
    case 'ROLE_NOT_FOUND':
      return new SigningError(400, 'ROLE_NOT_FOUND', e.message);
    case 'FORBIDDEN':
      return new SigningError(403, 'FORBIDDEN', e.message, e.extra.role !== undefined ? { role: e.extra.role } : {});
    case 'VERSION_CONFLICT':
      return new SigningError(409, 'VERSION_CONFLICT', e.message);
    case 'THRESHOLD_NOT_MET':
    case 'SNAPSHOT_KEY_HELD':
      return new SigningError(409, 'INVALID_REQUEST', e.message);
    case 'INVALID_METADATA':
      return new SigningError(400, 'INVALID_REQUEST', `the signed result was refused: ${e.message}`);
    case 'AFTER_PUBLISH': {
      if (!(e.cause instanceof RegistryError)) return e.cause;
      const p = e.extra.publication as Publication;
      return new SigningError(502, 'UPSTREAM_ERROR', e.message, { published: p.published });
    }
    default:
      return new SigningError(400, 'INVALID_REQUEST', e.message);
  }
}

/** Runs a call into the change pipeline, answering its refusals in the signing API's codes. */
async function trusted<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromTrust(e);
  }
}

export interface SignItem {
  gun: string;
  tag: string;
  digest: string;
  /** Manifest size in bytes; read from the upstream when absent. */
  size?: number;
  role: string;
  custom?: Record<string, unknown>;
}

export interface SignOptions extends KeyOptions {
  cosign?: boolean;
  bundle?: boolean;
  /** Progress for long batches: called after each phase with done/total items. */
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface ItemResult {
  gun: string;
  tag: string;
  digest: string;
  size: number;
  role: string;
  cosign?: CosignResult;
  bundle?: BundleResult;
}

export interface SignResult {
  status: 'published' | 'pending';
  published: PublishedRole[];
  pending: PendingInfo[];
  items: ItemResult[];
}

export interface RevokeResult {
  status: 'published' | 'pending';
  published: PublishedRole[];
  pending?: PendingInfo;
  removed: Array<{ role: string; digest?: string }>;
}

/** Journal ids of published roles, for the signing routes' audit entries. */
const journals = new WeakMap<PublishedRole, string>();
export const journalOf = (p: PublishedRole): string | undefined => journals.get(p);

export interface SigningServiceOptions {
  /** The change pipeline (shared with the management API and sign-on-push). */
  changes: TrustChanges;
  verifier: ImageVerifier;
  /** The upstream registry the proxy fronts; needed for size look-ups, upstream checks and registry-side signatures. */
  registry?: RegistryClient;
  /** Repository path in the upstream for a GUN (default: the GUN without its registry host). */
  upstreamRepo?: (gun: string) => string;
  /** Refuse digests the upstream does not have (TRUSTGATE_SIGN_CHECK_UPSTREAM). */
  checkUpstream?: boolean;
  /** How bundles are made: the TSA that timestamps them (TRUSTGATE_TSA_URL) and its chain. */
  bundles?: BundleOptions;
  log?: Logger;
  now?: () => number;
}

/** A GUN's upstream repository by docker's rule: drop the first segment when it names a host. */
export function defaultUpstreamRepo(gun: string): string {
  const i = gun.indexOf('/');
  if (i < 0) return gun;
  const first = gun.slice(0, i);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? gun.slice(i + 1) : gun;
}

/** The first whose sha256 matches, as TUF stores it (base64). */
const hashOf = (digest: string) => Buffer.from(digest.slice(7), 'hex').toString('base64');
const digestOf = (fm: FileMeta): string | undefined => {
  const h = fm.hashes.sha256;
  if (!h) return undefined;
  const raw = Buffer.from(h, 'base64');
  return raw.length === 32 ? `sha256:${raw.toString('hex')}` : undefined;
};

/** A delegation signs only names inside its paths (prefixes), as clients look them up. */
function checkPaths(role: string, signing: SigningRole, items: readonly SignItem[], idx: readonly number[]): void {
  if (role === 'targets') return;
  const paths = (signing.role as DelegatedRole).paths ?? [];
  for (const i of idx) {
    const tag = items[i]!.tag;
    if (!paths.some((p) => tag.startsWith(p)))
      throw new SigningInputError(`items[${i}].tag`, `items[${i}]: ${role} may not sign ${tag} (outside its paths)`);
  }
}

/** Runs `fn` over items with at most `n` at a time. */
async function pool<T, R>(items: readonly T[], n: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

export class SigningService {
  readonly changes: TrustChanges;
  private now: () => number;
  private upstreamRepo: (gun: string) => string;

  constructor(readonly opts: SigningServiceOptions) {
    this.changes = opts.changes;
    this.now = opts.now ?? Date.now;
    this.upstreamRepo = opts.upstreamRepo ?? defaultUpstreamRepo;
  }

  get editor(): RepoEditor {
    return this.changes.editor;
  }

  get registry(): RegistryClient | undefined {
    return this.opts.registry;
  }

  repoFor(gun: string): string {
    return this.upstreamRepo(gun);
  }

  /** Parses one raw request item (REST body or batch entry); `defaults` fill role and GUN. */
  static parseItem(
    raw: unknown,
    defaults: { gun?: string; role?: string } = {},
    at = '',
  ): Omit<SignItem, 'gun'> & { gun?: string; repository?: string } {
    // Fast path for well-formed batch items (thousands per request); anything else takes the
    // checked path below, which names the field that is wrong.
    if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
      const o = raw as Record<string, unknown>;
      const role = o.role ?? defaults.role ?? 'targets';
      if (
        typeof o.tag === 'string' &&
        TAG_RE.test(o.tag) &&
        typeof o.digest === 'string' &&
        DIGEST_RE.test(o.digest) &&
        (o.size === undefined || (typeof o.size === 'number' && Number.isSafeInteger(o.size) && o.size > 0)) &&
        (role === 'targets' || role === defaults.role) &&
        o.custom === undefined &&
        o.gun === undefined &&
        o.repository === undefined
      ) {
        const item: Omit<SignItem, 'gun'> = { tag: o.tag, digest: o.digest, role: role as string };
        if (o.size !== undefined) item.size = o.size as number;
        return item;
      }
    }
    return SigningService.parseItemChecked(raw, defaults, at);
  }

  private static parseItemChecked(
    raw: unknown,
    defaults: { gun?: string; role?: string },
    at: string,
  ): Omit<SignItem, 'gun'> & { gun?: string; repository?: string } {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw))
      throw new SigningInputError(at || 'body', `${at || 'the request body'} must be a JSON object`);
    const o = raw as Record<string, unknown>;
    const f = (n: string) => (at ? `${at}.${n}` : n);
    const role = checkRole(o.role ?? defaults.role ?? 'targets', f('role'));
    const item: Omit<SignItem, 'gun'> & { gun?: string; repository?: string } = {
      tag: checkTag(o.tag, f('tag')),
      digest: checkDigest(o.digest, f('digest')),
      role,
    };
    if (o.size !== undefined) item.size = checkSize(o.size, f('size'));
    if (o.custom !== undefined) item.custom = checkCustom(o.custom, f('custom'));
    if (typeof o.gun === 'string') item.gun = o.gun;
    else if (o.gun !== undefined) throw new SigningInputError(f('gun'), `${f('gun')} must be a string`);
    if (typeof o.repository === 'string') item.repository = o.repository;
    else if (o.repository !== undefined) throw new SigningInputError(f('repository'), `${f('repository')} must be a string`);
    return item;
  }

  /** The role's signing keys, or a 4xx naming what is wrong (no trust data, role not delegated). */
  signingRole(gun: string, role: string): Promise<SigningRole> {
    return trusted(() => this.changes.role(gun, role));
  }

  /** The caller's usable held signers of a role (and `signWith`); 403 when there are none, unless proposing. */
  private async signersFor(gun: string, role: string, who: SigningIdentity, signing: SigningRole, opts: KeyOptions): Promise<Signer[]> {
    const signers = await this.changes.usableSigners(gun, who, signing.role.keyids, { signWith: opts.signWith });
    if (signers.length === 0 && !opts.propose) {
      await trusted(() => this.changes.roleSigners(gun, role, who, { signWith: opts.signWith }));
    }
    return signers;
  }

  /** One change of one GUN through the change pipeline, answered in the signing API's errors. */
  private async applyEdits(
    gun: string,
    edits: Map<string, Edit>,
    who: SigningIdentity,
    label: { action: string; summary: string },
    opts: KeyOptions,
    after: AfterPublish[] = [],
  ): Promise<Publication> {
    const p = await trusted(() =>
      this.changes.apply({
        gun,
        caller: who,
        ...label,
        edits,
        ...(opts.signWith ? { signWith: opts.signWith } : {}),
        ...(opts.propose ? { propose: true } : {}),
        after,
        audit: { detail: { api: 'signing' } },
      }),
    );
    if (p.journal) for (const r of p.published) journals.set(r, p.journal);
    return p;
  }

  /** Sizes from the upstream for items without one, and (when checking is on) proof that each digest exists there. */
  private async resolveUpstream(items: SignItem[], opts: SignOptions): Promise<Map<number, ManifestHead>> {
    const heads = new Map<number, ManifestHead>();
    const needHead = items
      .map((it, i) => ({ it, i }))
      .filter(({ it }) => it.size === undefined || this.opts.checkUpstream || opts.cosign || opts.bundle);
    if (needHead.length === 0) return heads;
    const reg = this.opts.registry;
    if (!reg) {
      const first = needHead.find(({ it }) => it.size === undefined);
      if (first)
        throw new SigningError(
          400,
          'SIZE_REQUIRED',
          `items[${first.i}].size is required: no upstream registry is configured to read it from`,
          { field: `items[${first.i}].size` },
        );
      if (opts.cosign || opts.bundle)
        throw new SigningError(
          400,
          'UPSTREAM_REQUIRED',
          'cosign and bundle signatures are written to the upstream registry, and none is configured (TRUSTGATE_UPSTREAM)',
        );
      return heads;
    }
    let done = 0;
    await pool(needHead, 16, async ({ it, i }) => {
      let h: ManifestHead | undefined;
      try {
        h = await reg.headManifest(this.repoFor(it.gun), it.digest);
      } catch (e) {
        throw new SigningError(502, 'UPSTREAM_ERROR', `could not read ${it.digest} from the upstream registry: ${(e as Error).message}`);
      }
      if (!h) {
        throw new SigningError(
          400,
          'DIGEST_UNKNOWN',
          `items[${i}]: ${it.digest} is not a manifest in upstream repository ${this.repoFor(it.gun)}`,
          { field: `items[${i}].digest` },
        );
      }
      if (it.size !== undefined && it.size !== h.size) {
        throw new SigningError(
          400,
          'SIZE_MISMATCH',
          `items[${i}]: size ${it.size} does not match the manifest's ${h.size} bytes in the upstream`,
          { field: `items[${i}].size` },
        );
      }
      heads.set(i, h);
      opts.onProgress?.('checked', ++done, needHead.length);
    });
    return heads;
  }

  /**
   * Signs items (any number of GUNs and roles): validated, authorised and checked against the
   * upstream first; then one publish per GUN covering all of its roles.
   */
  async sign(items: SignItem[], who: SigningIdentity, opts: SignOptions = {}): Promise<SignResult> {
    return (await this.signItems(items, who, opts)).result;
  }

  /** sign(), also telling what each GUN's change published (every file version) or left pending. */
  async signItems(
    items: SignItem[],
    who: SigningIdentity,
    opts: SignOptions = {},
  ): Promise<{ result: SignResult; publications: Publication[] }> {
    if (items.length === 0) throw new SigningInputError('items', 'nothing to sign');
    const seen = new Map<string, number>();
    items.forEach((it, i) => {
      const k = `${it.gun}\n${it.role}\n${it.tag}`;
      const j = seen.get(k);
      if (j !== undefined && items[j]!.digest !== it.digest)
        throw new SigningInputError(`items[${i}].tag`, `items[${i}]: tag ${it.tag} is given twice with different digests`);
      seen.set(k, i);
    });
    // Roles exist and the caller may sign them: checked for every GUN before anything is published.
    const byGun = new Map<string, Map<string, number[]>>();
    items.forEach((it, i) => {
      const roles = byGun.get(it.gun) ?? new Map<string, number[]>();
      const idx = roles.get(it.role) ?? [];
      idx.push(i);
      roles.set(it.role, idx);
      byGun.set(it.gun, roles);
    });
    const cosignSigners = new Map<string, Signer>();
    for (const [gun, roles] of byGun) {
      for (const [role, idx] of roles) {
        const signing = await this.signingRole(gun, role);
        const signers = await this.signersFor(gun, role, who, signing, opts);
        checkPaths(role, signing, items, idx);
        if (opts.cosign || opts.bundle) {
          const ec = signers.find((s) => s.key.keytype.startsWith('ecdsa'));
          if (!ec)
            throw new SigningError(
              400,
              'UNSUPPORTED_KEY',
              `cosign and bundle signatures need an ECDSA key, and role ${role} in ${gun} has none this token may use`,
            );
          cosignSigners.set(`${gun}\n${role}`, ec);
        }
      }
    }
    const heads = await this.resolveUpstream(items, opts);
    const sized = items.map((it, i) => ({ ...it, size: it.size ?? heads.get(i)!.size }));

    // Bundles are signed and timestamped before anything is published: a TSA that fails refuses the request, nothing changed.
    const bundles = opts.bundle ? await this.makeBundles(sized, cosignSigners) : undefined;

    const result: SignResult = { status: 'published', published: [], pending: [], items: [] };
    result.items = sized.map((it) => ({ gun: it.gun, tag: it.tag, digest: it.digest, size: it.size, role: it.role }));
    const publications: Publication[] = [];
    for (const [gun, roles] of byGun) {
      const edits = new Map<string, Edit>();
      for (const [role, idx] of roles) {
        edits.set(role, (body) => {
          for (const i of idx) {
            const it = sized[i]!;
            const fm: FileMeta = { hashes: { sha256: hashOf(it.digest) }, length: it.size };
            if (it.custom) fm.custom = it.custom as JsonValue;
            setEntry(body.targets, it.tag, fm);
          }
        });
      }
      // Registry-side signatures once the GUN's change is published (a pending change gets them when its own request completes it).
      const after: AfterPublish[] = [];
      if (opts.cosign || opts.bundle) {
        const mine = [...roles.values()].flat();
        after.push(() => this.attach(result, mine, heads, cosignSigners, opts, bundles));
      }
      const n = [...roles.values()].reduce((a, b) => a + b.length, 0);
      const label = {
        action: opts.label?.action ?? 'tag.sign',
        summary: opts.label?.summary ?? `sign ${n} tag(s) in ${[...roles.keys()].join(', ')}`,
      };
      const r = await this.applyEdits(gun, edits, who, label, opts, after).catch((e: unknown) => {
        // A failed registry write names everything published so far.
        if (e instanceof SigningError && e.code === 'UPSTREAM_ERROR' && e.extra.published)
          e.extra.published = [...result.published, ...(e.extra.published as PublishedRole[])];
        throw e;
      });
      publications.push(r);
      result.published.push(...r.published);
      if (r.pending) result.pending.push(r.pending);
      opts.onProgress?.('published', result.published.length, byGun.size);
    }
    if (result.pending.length) result.status = 'pending';
    return { result, publications };
  }

  /** One Sigstore bundle per item, timestamped when a TSA is configured; a TSA failure is a 502 (refused reply) or 503 (unreachable). */
  private async makeBundles(items: SignItem[], signers: Map<string, Signer>): Promise<Array<{ bundle: Bundle; at: Date }>> {
    const at = new Date(this.now());
    return pool(items, 8, async (it) => {
      const signer = signers.get(`${it.gun}\n${it.role}`)!;
      const statement = tagStatement({ repository: it.gun, digest: it.digest, tag: it.tag, role: it.role, signedAt: at });
      try {
        return { bundle: await createBundle(signer, statement, this.opts.bundles), at };
      } catch (e) {
        if (!(e instanceof TimestampError)) throw e;
        throw new SigningError(
          e.unavailable ? 503 : 502,
          'TSA_ERROR',
          `could not timestamp the bundle of ${it.gun}:${it.tag}, so nothing was signed: ${e.message}`,
        );
      }
    });
  }

  /** Writes the cosign signature and/or Sigstore bundle of items `idx` (of one published GUN). */
  private async attach(
    result: SignResult,
    idx: number[],
    heads: Map<number, ManifestHead>,
    signers: Map<string, Signer>,
    opts: SignOptions,
    bundles?: Array<{ bundle: Bundle; at: Date }>,
  ): Promise<void> {
    const reg = this.opts.registry!;
    let done = 0;
    await pool(idx, 8, async (i) => {
      const item = result.items[i]!;
      const signer = signers.get(`${item.gun}\n${item.role}`)!;
      const repo = this.repoFor(item.gun);
      try {
        if (opts.cosign) item.cosign = await writeCosignSignature(reg, repo, item.gun, item.digest, signer);
        if (bundles)
          item.bundle = {
            ...(await pushBundleReferrer(reg, repo, heads.get(i)!, bundles[i]!.bundle, TAG_PREDICATE, bundles[i]!.at)),
            keyId: signer.id,
          };
      } catch (e) {
        if (e instanceof RegistryError)
          throw new RegistryError(`signed in TUF, but writing the registry signature for ${item.tag} failed: ${e.message}`, e.status);
        throw e;
      }
      opts.onProgress?.('attached', ++done, idx.length);
    });
  }

  /**
   * Removes a tag from one role, or from every role that lists it (and that the caller may
   * sign), in one publish. 404 when no role lists it.
   */
  async revoke(gun: string, tag: string, role: string | undefined, who: SigningIdentity, opts: KeyOptions = {}): Promise<RevokeResult> {
    return (await this.revokeTag(gun, tag, role, who, opts)).result;
  }

  /** revoke(), also telling what the change published (every file version) or left pending. */
  async revokeTag(
    gun: string,
    tag: string,
    role: string | undefined,
    who: SigningIdentity,
    opts: KeyOptions = {},
  ): Promise<{ result: RevokeResult; publication: Publication }> {
    checkTag(tag);
    if (role !== undefined) checkRole(role);
    const roles = role ? [role] : await this.rolesListing(gun, tag);
    if (role) await this.signingRole(gun, role);
    const removed: Array<{ role: string; digest?: string }> = [];
    for (const r of roles) {
      const cur = await this.editor.trust.current(gun, r);
      const body = cur ? (JSON.parse(cur.bytes.toString('utf8')) as { signed: TargetsBody }).signed : undefined;
      const fm = ownEntry(body?.targets, tag);
      if (fm) removed.push({ role: r, ...(digestOf(fm) ? { digest: digestOf(fm)! } : {}) });
    }
    if (removed.length === 0) {
      if (!(await this.editor.trust.current(gun, 'root')))
        throw new SigningError(404, 'REPOSITORY_NOT_FOUND', `repository ${gun} has no trust data`);
      throw new SigningError(404, 'TAG_NOT_FOUND', `tag ${tag} is not signed in ${role ?? 'any role of'} ${gun}`);
    }
    for (const r of removed) await this.signersFor(gun, r.role, who, await this.signingRole(gun, r.role), opts);
    const edits = new Map<string, Edit>(removed.map((r) => [r.role, (b: TargetsBody) => void delete b.targets[tag]]));
    const res = await this.applyEdits(
      gun,
      edits,
      who,
      {
        action: opts.label?.action ?? 'tag.revoke',
        summary: opts.label?.summary ?? `revoke ${tag} from ${removed.map((r) => r.role).join(', ')}`,
      },
      opts,
    );
    const result: RevokeResult = {
      status: res.pending ? 'pending' : 'published',
      published: res.published,
      ...(res.pending ? { pending: res.pending } : {}),
      removed,
    };
    return { result, publication: res };
  }

  /** Targets roles of a GUN (in the current snapshot, and still delegated) that list `tag`. */
  private async rolesListing(gun: string, tag: string): Promise<string[]> {
    const state = await this.editor.trust.state(gun);
    const out: string[] = [];
    for (const [role, bytes] of state.targets) {
      const body = (JSON.parse(bytes.toString('utf8')) as { signed: TargetsBody }).signed;
      if (!ownEntry(body.targets, tag)) continue;
      try {
        await this.editor.signingRole(gun, role);
      } catch (e) {
        if (e instanceof EditorError && e.code === 'NOT_FOUND') continue; // a file left behind by a removed delegation
        throw e;
      }
      out.push(role);
    }
    return out.sort();
  }

  /**
   * Signs an already signed digest under another tag and/or role (and GUN), after verifying
   * the source with the proxy's verifier: the whole chain, and the source role when named.
   */
  async promote(
    src: { gun: string; tag: string; role?: string },
    dst: { gun: string; tag: string; role: string; custom?: Record<string, unknown> },
    who: SigningIdentity,
    opts: SignOptions = {},
  ): Promise<SignResult & { source: { digest: string; size: number; roles: string[]; keyIds: string[] } }> {
    checkTag(src.tag, 'from.tag');
    if (src.role !== undefined) checkRole(src.role, 'from.role');
    checkTag(dst.tag, 'to.tag');
    checkRole(dst.role, 'to.role');
    if (src.gun === dst.gun && src.tag === dst.tag && src.role === dst.role)
      throw new SigningInputError('to', 'promotion source and destination are the same');
    const req: TargetRequirement = src.role ? { roles: [src.role] } : {};
    const v = await this.opts.verifier.verifyTag(src.gun, src.tag, req);
    if (!v.ok || !v.digest || v.length === undefined) {
      throw new SigningError(
        409,
        'SOURCE_NOT_VERIFIED',
        `${src.gun}:${src.tag}${src.role ? ` in ${src.role}` : ''} does not verify: ${v.message ?? v.reason}`,
        { reason: v.reason },
      );
    }
    const fromRepo = this.repoFor(src.gun);
    const toRepo = this.repoFor(dst.gun);
    if (fromRepo !== toRepo) {
      // The target repository must hold the image before its tag is signed: checked (the caller
      // may sign there), copied, then signed. Nothing is signed when the copy fails.
      await this.signersFor(dst.gun, dst.role, who, await this.signingRole(dst.gun, dst.role), opts);
      const reg = this.opts.registry;
      if (!reg)
        throw new SigningError(
          400,
          'UPSTREAM_REQUIRED',
          `promoting into another repository copies the image from ${fromRepo} to ${toRepo} in the upstream registry, and none is configured (TRUSTGATE_UPSTREAM)`,
        );
      try {
        await copyManifest(reg, fromRepo, toRepo, v.digest);
      } catch (e) {
        if (!(e instanceof RegistryError)) throw e;
        const status = e.status === undefined || e.status >= 500 ? 502 : 409;
        throw new SigningError(
          status,
          status === 502 ? 'UPSTREAM_ERROR' : 'COPY_FAILED',
          `could not copy ${v.digest} from ${fromRepo} to ${toRepo}, so nothing was signed: ${e.message}`,
        );
      }
    }
    const res = await this.sign(
      [{ gun: dst.gun, tag: dst.tag, digest: v.digest, size: v.length, role: dst.role, ...(dst.custom ? { custom: dst.custom } : {}) }],
      who,
      opts,
    );
    return { ...res, source: { digest: v.digest, size: v.length, roles: v.evidence.roles ?? [], keyIds: v.signers } };
  }

  /**
   * Signs an in-toto statement about `digest` (which the upstream must hold) with an ECDSA key of
   * `role` the caller may use, and attaches it as a cosign `.att` and a bundle referrer. Trust
   * data is not touched: the key signs like it signs cosign signatures.
   */
  async attest(
    a: { gun: string; digest: string; role: string; predicateType: string; predicate: object },
    who: SigningIdentity,
  ): Promise<AttestationResult & { gun: string; digest: string; role: string }> {
    const signing = await this.signingRole(a.gun, a.role);
    const signers = await this.signersFor(a.gun, a.role, who, signing, {});
    const ec = signers.find((s) => s.key.keytype.startsWith('ecdsa'));
    if (!ec)
      throw new SigningError(
        400,
        'UNSUPPORTED_KEY',
        `attestations need an ECDSA key, and role ${a.role} in ${a.gun} has none this token may use`,
      );
    const reg = this.opts.registry;
    if (!reg)
      throw new SigningError(
        400,
        'UPSTREAM_REQUIRED',
        'attestations are written to the upstream registry, and none is configured (TRUSTGATE_UPSTREAM)',
      );
    const repo = this.repoFor(a.gun);
    let head: ManifestHead | undefined;
    try {
      head = await reg.headManifest(repo, a.digest);
    } catch (e) {
      throw new SigningError(502, 'UPSTREAM_ERROR', `could not read ${a.digest} from the upstream registry: ${(e as Error).message}`);
    }
    if (!head)
      throw new SigningError(400, 'DIGEST_UNKNOWN', `${a.digest} is not a manifest in upstream repository ${repo}`, { field: 'digest' });
    try {
      const r = await writeAttestation(
        reg,
        repo,
        head,
        { repository: a.gun, predicateType: a.predicateType, predicate: a.predicate },
        ec,
        new Date(this.now()),
        this.opts.bundles,
      );
      return { gun: a.gun, digest: a.digest, role: a.role, ...r };
    } catch (e) {
      if (e instanceof RegistryError) throw new SigningError(502, 'UPSTREAM_ERROR', `writing the attestation failed: ${e.message}`);
      // The bundle is timestamped before anything is pushed.
      if (e instanceof TimestampError)
        throw new SigningError(
          e.unavailable ? 503 : 502,
          'TSA_ERROR',
          `could not timestamp the attestation, so nothing was pushed: ${e.message}`,
        );
      throw e;
    }
  }

  /** The cosign/bundle verification key of a role: the first ECDSA key the server holds for it. */
  async publicKeyFor(gun: string, role: string): Promise<{ keyId: string; signer: Signer }> {
    const s = await this.signingRole(gun, role);
    const held = await this.editor.heldSigners(gun, s.role.keyids);
    const ec = held.find((x) => x.key.keytype.startsWith('ecdsa'));
    if (!ec) throw new SigningError(404, 'UNSUPPORTED_KEY', `the server holds no ECDSA key of ${role} in ${gun}`);
    return { keyId: ec.id, signer: ec };
  }
}
