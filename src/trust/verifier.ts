// The verification service: reads a GUN's trust data from the trust service as a client would
// (current root, the N.root.json chain when the root moved since the pin, timestamp, the
// snapshot and roles by checksum), checks the whole chain with the pure core
// (src/core/tuf/verify.ts) from the GUN's pin, and answers questions as Verdicts. The pin (root
// and versions last verified) lives in the store: it survives restarts and deletion of the
// GUN's metadata, is written only when it moves forward, and is replaced otherwise only by an
// audited trust reset. A verified repository is reused while the store's timestamp is still the
// one it was verified from (so a publish by another process on the same database is seen at the
// next verification) and nothing in it has expired. Used by the registry proxy and meant for
// any other caller (REST verify endpoints).
import { Metadata, metaSha256Hex, type SnapshotBody, type TimestampBody } from '../core/tuf/metadata.js';
import {
  fail,
  resolveTarget,
  signedDigests,
  targetsForDigest,
  verifyRepository,
  type FailureReason,
  type ResolvedTarget,
  type TargetRequirement,
  type VerifiedRepo,
  type VerifyFailure,
  type VersionMap,
} from '../core/tuf/verify.js';
import type { StoredPin, TrustPin } from '../storage/types.js';
import type { TrustService } from './service.js';
import { BoundedMap } from '../core/bounded-map.js';

/** How an allowed digest was established. */
export type Via = 'tag' | 'digest' | 'index' | 'referrer' | 'signature' | 'cosign';

export interface Evidence {
  gun: string;
  /** What was asked: a tag or a digest. */
  reference: string;
  via?: Via;
  /** Tags the digest is signed for (by-digest checks). */
  tags?: string[];
  /** The signed digest through which this one is allowed (index child, referrer, signature). */
  parent?: string;
  /** Roles that list the target with this digest. */
  roles?: string[];
  versions?: VersionMap;
  expiries?: Record<string, string>;
  /** Delegations skipped because they failed their checks. */
  skipped?: Array<{ role: string; reason: FailureReason; message: string }>;
  /** Attestations the policy required, and who signed each. */
  attestations?: Array<{ predicateType: string; keyId: string; role: string; via: 'att' | 'referrer' }>;
  checkedAt: string;
}

export interface Verdict {
  ok: boolean;
  reason?: FailureReason;
  message?: string;
  /** `sha256:<hex>` of the signed manifest (for failures, when known). */
  digest?: string;
  length?: number;
  role?: string;
  signers: string[];
  evidence: Evidence;
  /** Until when the verdict may be relied on (earliest expiry of the data it rests on). */
  expiresAtMs?: number;
}

export interface VerifierOptions {
  now?: () => number;
  /** GUNs whose verified repositories are kept in memory. */
  maxRepos?: number;
}

/** How often a verification starts over when another writer moved the pin meanwhile. */
const PIN_ATTEMPTS = 3;

/** The pin a successful verification moves to, or undefined when it stays (no write). */
function movedPin(pin: StoredPin | undefined, r: VerifiedRepo): TrustPin | undefined {
  const moved = !pin || !pin.root.equals(r.rootBytes) || Object.entries(r.versions).some(([role, v]) => v > (pin.versions[role] ?? 0));
  return moved ? { root: r.rootBytes, versions: r.versions } : undefined;
}

export class Verifier {
  /** The last verified repository per GUN, and the timestamp it was verified from. */
  private repos: BoundedMap<string, { repo: VerifiedRepo; timestamp: Buffer }>;
  private loading = new Map<string, Promise<VerifiedRepo | VerifyFailure>>();
  private generation = new Map<string, number>();
  /** Bumped when changes may have been missed (the store's feed resynced). */
  private epoch = 0;
  private now: () => number;

  constructor(
    readonly trust: TrustService,
    opts: VerifierOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.repos = new BoundedMap(opts.maxRepos ?? 10_000);
    // A deletion keeps the pin: a repository created again under new keys is refused until a trust reset.
    trust.events.on('change', ({ gun }) => {
      this.generation.set(gun, (this.generation.get(gun) ?? 0) + 1);
      this.repos.delete(gun);
    });
    trust.events.on('resync', () => {
      this.epoch++;
      this.repos.clear();
    });
  }

  /** The GUN's trust data, verified end to end; coalesced per GUN. */
  repository(gun: string): Promise<VerifiedRepo | VerifyFailure> {
    const running = this.loading.get(gun);
    if (running) return running;
    const p = this.current(gun).finally(() => this.loading.delete(gun));
    this.loading.set(gun, p);
    return p;
  }

  private async current(gun: string): Promise<VerifiedRepo | VerifyFailure> {
    const gen = this.generation.get(gun) ?? 0;
    const epoch = this.epoch;
    const kept = this.repos.get(gun);
    // A pin reset leaves the timestamp as it was: only the change feed tells of one made elsewhere.
    if (kept && kept.repo.expiresAtMs > this.now() && this.trust.fresh()) {
      // This process hears its own publishes; the timestamp tells of everyone else's.
      const ts = await this.trust.current(gun, 'timestamp').catch(() => undefined);
      if (ts?.bytes.equals(kept.timestamp)) return kept.repo;
    }
    for (let attempt = 1; ; attempt++) {
      let pin: StoredPin | undefined;
      let input;
      try {
        pin = await this.trust.store.pin(gun);
        input = await this.read(gun, pin);
      } catch (e) {
        return fail('unavailable', `trust data for ${gun} could not be read: ${(e as Error).message}`);
      }
      if ('ok' in input) return input;
      const r = verifyRepository(input);
      if (!r.ok) return this.explain(gun, pin, input.roots.at(-1)!, r);
      const next = movedPin(pin, r);
      if (next) {
        let moved: boolean;
        try {
          moved = await this.trust.store.advancePin(gun, pin?.root, next, new Date(this.now()));
        } catch (e) {
          return fail('unavailable', `the pin of ${gun} could not be stored: ${(e as Error).message}`);
        }
        // Another verifier moved (or an admin reset) the pin meanwhile: verify again from it.
        if (!moved) {
          if (attempt < PIN_ATTEMPTS) continue;
          return fail('unavailable', `the pin of ${gun} kept changing during verification`);
        }
      }
      // A verification that began before a change this process made is not kept.
      if ((this.generation.get(gun) ?? 0) === gen && this.epoch === epoch) this.repos.set(gun, { repo: r, timestamp: input.timestamp });
      return r;
    }
  }

  /** A root that does not chain from the pin is named as such: only a trust reset accepts it (or older versions). */
  private explain(gun: string, pin: StoredPin | undefined, current: Buffer, f: VerifyFailure): VerifyFailure {
    if (pin && f.reason === 'rollback')
      return { ...f, message: `${f.message} (if ${gun} was restored or created again, an administrator can reset its trust)` };
    if (!pin || f.reason !== 'untrusted-root' || pin.root.equals(current)) return f;
    let pinned = '';
    try {
      pinned = ` at version ${Metadata.parse('root', pin.root).version}`;
    } catch {
      // the message goes without the version
    }
    return fail(
      'root-changed',
      `the root of ${gun} is not the one pinned${pinned}, nor signed by it (${f.message}); an administrator must reset its trust to accept it`,
      'root',
    );
  }

  /** Fetches what a client fetches on pull, by the hash chain. */
  private async read(gun: string, pin: StoredPin | undefined) {
    const tsFile = await this.trust.current(gun, 'timestamp');
    const rootFile = await this.trust.current(gun, 'root');
    if (!tsFile || !rootFile) return fail('no-trust-data', `${gun} has no trust data`);
    const nowMs = this.now();
    let ts: Metadata<TimestampBody>;
    try {
      ts = Metadata.parse<TimestampBody>('timestamp', tsFile.bytes);
    } catch (e) {
      return fail('malformed', `timestamp: ${(e as Error).message}`, 'timestamp');
    }
    const snapSha = metaSha256Hex(ts.body.meta.snapshot);
    const snapFile = snapSha ? await this.trust.byChecksum(gun, 'snapshot', snapSha) : undefined;
    if (!snapFile) return fail('missing-role', 'the snapshot the timestamp names is missing', 'snapshot');
    let snap: Metadata<SnapshotBody>;
    try {
      snap = Metadata.parse<SnapshotBody>('snapshot', snapFile.bytes);
    } catch (e) {
      return fail('malformed', `snapshot: ${(e as Error).message}`, 'snapshot');
    }
    const roles = new Map<string, Buffer>();
    for (const [role, fm] of Object.entries(snap.body.meta)) {
      if (role === 'root') continue;
      const sha = metaSha256Hex(fm);
      const f = sha ? await this.trust.byChecksum(gun, role, sha) : undefined;
      if (f) roles.set(role, f.bytes);
    }
    // Roots between the pinned one and the current one, each to be checked against the previous.
    const roots: Buffer[] = [];
    if (pin && !pin.root.equals(rootFile.bytes)) {
      const pinned = Metadata.parse('root', pin.root).version;
      const current = Metadata.parse('root', rootFile.bytes).version;
      for (let v = pinned + 1; v < current && v - pinned <= 1024; v++) {
        const f = await this.trust.byVersion(gun, 'root', v);
        if (f) roots.push(f.bytes);
      }
    }
    roots.push(rootFile.bytes);
    return {
      gun,
      ...(pin ? { trustedRoot: pin.root, lastVersions: pin.versions } : {}),
      roots,
      timestamp: tsFile.bytes,
      snapshot: snapFile.bytes,
      roles,
      nowMs,
    };
  }

  private evidence(gun: string, reference: string, extra: Partial<Evidence> = {}): Evidence {
    return { gun, reference, checkedAt: new Date(this.now()).toISOString(), ...extra };
  }

  /** A failure as a verdict. */
  failure(gun: string, reference: string, f: VerifyFailure, extra: Partial<Evidence> = {}): Verdict {
    return {
      ok: false,
      reason: f.reason,
      message: f.message,
      ...(f.role ? { role: f.role } : {}),
      signers: [],
      evidence: this.evidence(gun, reference, extra),
    };
  }

  /** A resolved target as an allowing verdict. */
  allow(gun: string, reference: string, t: ResolvedTarget, repo: VerifiedRepo, extra: Partial<Evidence> = {}): Verdict {
    return {
      ok: true,
      digest: t.digest,
      length: t.length,
      role: t.role,
      signers: t.signers,
      expiresAtMs: t.expiresAtMs,
      evidence: this.evidence(gun, reference, {
        roles: t.roles,
        versions: t.versions,
        expiries: t.expiries,
        ...(repo.skipped.length ? { skipped: repo.skipped } : {}),
        ...extra,
      }),
    };
  }

  /** Which digest `tag` is signed as, under the requirement (docker's roles by default). */
  async verifyTag(gun: string, tag: string, req: TargetRequirement = {}): Promise<Verdict> {
    const repo = await this.repository(gun);
    if (!repo.ok) return this.failure(gun, tag, repo);
    const t = resolveTarget(repo, tag, req);
    if (!t.ok) return { ...this.failure(gun, tag, t), expiresAtMs: repo.expiresAtMs };
    return this.allow(gun, tag, t, repo, { via: 'tag' });
  }

  /** Whether `digest` is signed for some tag under the requirement. */
  async verifyDigest(gun: string, digest: string, req: TargetRequirement = {}): Promise<Verdict> {
    const repo = await this.repository(gun);
    if (!repo.ok) return this.failure(gun, digest, repo);
    const hits = targetsForDigest(repo, digest, req);
    if (hits.length === 0) {
      return {
        ...this.failure(
          gun,
          digest,
          fail('not-signed', `${digest} is not signed for any tag in ${(req.roles ?? ['targets/releases', 'targets']).join(', ')}`),
        ),
        expiresAtMs: repo.expiresAtMs,
      };
    }
    return this.allow(gun, digest, hits[0]!, repo, { via: 'digest', tags: hits.map((h) => h.name) });
  }

  /** Every digest signed for a tag, with its resolution (for index and referrer checks). */
  async signedDigests(
    gun: string,
    req: TargetRequirement = {},
  ): Promise<{ ok: true; repo: VerifiedRepo; digests: Map<string, ResolvedTarget> } | VerifyFailure> {
    const repo = await this.repository(gun);
    if (!repo.ok) return repo;
    return { ok: true, repo, digests: signedDigests(repo, req) };
  }
}
