// Client-side verification of a repository's whole TUF chain, the checks a Notary client makes
// on pull (spec §4): root (trust on first use or a pinned root, then the N.root.json chain when
// the root rotated), timestamp, snapshot, targets and delegations (hashes and lengths against
// the parent file's meta, signatures and thresholds, expiry, rollback against the versions last
// verified), and then target lookup within delegation paths. Pure: bytes and a clock come in, a
// verified view or a typed failure goes out. Nothing here trusts the server that stored the data.
import { keyIdentity, type TufKey } from '../crypto/keys.js';
import { MalformedMetadataError, TufValidationError } from './errors.js';
import {
  Metadata,
  checkFileMeta,
  countValidSignatures,
  ownEntry,
  type FileMeta,
  type RoleKeys,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from './metadata.js';
import { parentRole } from './roles.js';
import { formatRfc3339 } from './time.js';
import { validRootKeys } from './update.js';

/** Why verification failed; stable strings, shown to clients in DENIED details. */
export type FailureReason =
  | 'no-trust-data' // the repository has no root or timestamp
  | 'malformed' // a file is not valid metadata
  | 'untrusted-root' // the root does not verify, or does not chain from the trusted root
  | 'root-changed' // the root is not the pinned one and does not chain from it (used by callers)
  | 'threshold-not-met' // not enough valid signatures from the role's keys
  | 'expired' // a role's `expires` is in the past
  | 'rollback' // a version is older than one verified before
  | 'hash-mismatch' // bytes do not match the hash or length their parent recorded
  | 'missing-role' // a role the chain names is absent
  | 'not-signed' // no accepted role lists the target
  | 'delegation-path' // the target is listed only by a delegation whose paths do not cover it
  | 'policy-unmet' // signed, but not by the roles or signers the policy requires
  | 'digest-mismatch' // the content fetched does not match the signed digest (used by callers)
  | 'attestation-missing' // signed, but without an attestation the policy requires (used by callers)
  | 'unavailable'; // trust data or content could not be read (used by callers)

export interface VerifyFailure {
  ok: false;
  reason: FailureReason;
  /** The role whose check failed, when there is one. */
  role?: string;
  message: string;
}

export const fail = (reason: FailureReason, message: string, role?: string): VerifyFailure => ({
  ok: false,
  reason,
  message,
  ...(role ? { role } : {}),
});

/** Versions of each role as last verified for a GUN; a newer verification must not go below them. */
export type VersionMap = Record<string, number>;

export interface VerifyInput {
  gun: string;
  /** Root bytes the client already trusts (pinned or verified before); absent = trust on first use. */
  trustedRoot?: Buffer;
  /**
   * Roots newer than `trustedRoot`, ascending by version, the last one current. Without a
   * trusted root, the first is taken on first use and the rest must chain from it.
   */
  roots: Buffer[];
  timestamp: Buffer;
  snapshot: Buffer;
  /** `targets` and delegation files by role name; only roles the snapshot lists are read. */
  roles: ReadonlyMap<string, Buffer>;
  /** Versions from the last successful verification (rollback protection). */
  lastVersions?: VersionMap;
  nowMs: number;
}

export interface VerifiedRole {
  name: string;
  version: number;
  expires: string;
  /** Key IDs whose signatures on this file are valid and trusted by the parent (one per public key). */
  signers: string[];
  /** The public key each of `signers` holds (keyIdentity), in the same order. */
  signerKeys: string[];
  /** Effective delegation paths (prefixes); `targets` has `[""]`. */
  paths: string[];
  targets: Record<string, FileMeta>;
}

export interface SkippedRole {
  role: string;
  reason: FailureReason;
  message: string;
}

export interface VerifiedRepo {
  ok: true;
  gun: string;
  /** The verified current root's bytes: the trusted root for the next verification. */
  rootBytes: Buffer;
  versions: VersionMap;
  expiries: Record<string, string>;
  /** Earliest expiry of everything verified: a verdict built on this repo is good until then. */
  expiresAtMs: number;
  roles: Map<string, VerifiedRole>;
  /** Delegations that failed their checks: skipped with a warning, as Notary clients do. */
  skipped: SkippedRole[];
}

export interface ResolvedTarget {
  ok: true;
  name: string;
  /** `sha256:<hex>` */
  digest: string;
  length: number;
  /** The first accepted role that lists the target. */
  role: string;
  /** Accepted roles that list the same digest and length. */
  roles: string[];
  /** Key IDs whose valid signatures cover the target in those roles. */
  signers: string[];
  versions: VersionMap;
  expiries: Record<string, string>;
  expiresAtMs: number;
}

export interface TargetRequirement {
  /** Roles whose listing counts, in lookup order; default `targets/releases`, then `targets` (docker's order). */
  roles?: readonly string[];
  /** Key IDs of which at least `threshold` must have signed; default: count roles instead. */
  signers?: readonly string[];
  /** Distinct roles (or signers, when named) that must agree on the digest; default 1. */
  threshold?: number;
}

export const DEFAULT_ROLES: readonly string[] = ['targets/releases', 'targets'];

class Failure extends Error {
  constructor(readonly f: VerifyFailure) {
    super(f.message);
  }
}
const bail = (reason: FailureReason, message: string, role?: string): never => {
  throw new Failure(fail(reason, message, role));
};

function parse<T extends RootBody | TargetsBody | SnapshotBody | TimestampBody>(role: string, bytes: Buffer): Metadata<T> {
  try {
    return Metadata.parse<T>(role, bytes);
  } catch (e) {
    if (e instanceof MalformedMetadataError || e instanceof TufValidationError) bail('malformed', `${role}: ${e.message}`, role);
    throw e;
  }
}

/** Signature threshold over a role's keys; returns the valid key IDs. */
function threshold(md: Metadata, keys: Record<string, TufKey>, role: RoleKeys, name: string): string[] {
  if (md.signatures.length === 0) bail('threshold-not-met', `${name} has no signatures`, name);
  const valid = countValidSignatures(md.message(), md.signatures, keys, role.keyids);
  if (valid.size < role.threshold) {
    bail('threshold-not-met', `${name}: ${valid.size} valid signature(s), threshold is ${role.threshold}`, name);
  }
  return [...valid];
}

function notExpired(md: Metadata, name: string, nowMs: number): void {
  if (md.isExpired(nowMs)) bail('expired', `${name} expired at ${md.body.expires}`, name);
}

function noRollback(md: Metadata, name: string, last: VersionMap | undefined): void {
  const prev = last?.[name];
  if (prev !== undefined && md.version < prev)
    bail('rollback', `${name} version ${md.version} is older than version ${prev} verified before`, name);
}

function matchesMeta(name: string, bytes: Buffer, fm: FileMeta | undefined): void {
  if (!fm) bail('missing-role', `${name} is not listed in its parent's meta`, name);
  const bad = checkFileMeta(name, bytes, fm!, true);
  if (bad) bail('hash-mismatch', bad, name);
}

/** Verifies the root chain and returns the current root. */
function verifyRoots(input: VerifyInput): Metadata<RootBody> {
  const { gun, nowMs } = input;
  if (input.roots.length === 0 && !input.trustedRoot) bail('no-trust-data', `no root for ${gun}`, 'root');
  let trusted: Metadata<RootBody> | undefined = input.trustedRoot && parse<RootBody>('root', input.trustedRoot);
  const chain = input.roots.map((b) => parse<RootBody>('root', b));
  if (!trusted) {
    // Trust on first use: the first root must at least sign itself with keys valid for this GUN.
    trusted = chain.shift()!;
    const own = validRootKeys(trusted.body, gun, nowMs, true);
    try {
      threshold(trusted, own, trusted.body.roles.root, 'root');
    } catch (e) {
      if (e instanceof Failure)
        bail('untrusted-root', `root v${trusted.version} is not signed by its own root keys: ${e.f.message}`, 'root');
      throw e;
    }
  }
  for (const next of chain) {
    if (next.bytes.equals(trusted.bytes)) continue;
    if (next.version < trusted.version)
      bail('rollback', `root version ${next.version} is older than trusted version ${trusted.version}`, 'root');
    if (next.version !== trusted.version + 1) {
      bail('untrusted-root', `root chain skips from version ${trusted.version} to ${next.version}`, 'root');
    }
    // Signed by the previous root's threshold (its certificates' expiry not checked) and by its own.
    const prevKeys = validRootKeys(trusted.body, gun, nowMs, false);
    const ownKeys = validRootKeys(next.body, gun, nowMs, true);
    for (const [keys, role, who] of [
      [prevKeys, trusted.body.roles.root, `root v${trusted.version}`],
      [ownKeys, next.body.roles.root, `its own root keys`],
    ] as const) {
      try {
        threshold(next, keys, role, 'root');
      } catch (e) {
        if (e instanceof Failure) bail('untrusted-root', `root v${next.version} is not signed by ${who}: ${e.f.message}`, 'root');
        throw e;
      }
    }
    trusted = next;
  }
  noRollback(trusted, 'root', input.lastVersions);
  notExpired(trusted, 'root', nowMs);
  // Keys valid now must still meet the threshold (expired root certificates stop trust).
  const now = validRootKeys(trusted.body, gun, nowMs, true);
  try {
    threshold(trusted, now, trusted.body.roles.root, 'root');
  } catch (e) {
    if (e instanceof Failure) bail('untrusted-root', `root v${trusted.version}: ${e.f.message}`, 'root');
    throw e;
  }
  return trusted;
}

/** Checks the whole chain; a broken delegation is skipped (recorded), anything else fails. */
export function verifyRepository(input: VerifyInput): VerifiedRepo | VerifyFailure {
  try {
    return verifyChain(input);
  } catch (e) {
    if (e instanceof Failure) return e.f;
    throw e;
  }
}

function verifyChain(input: VerifyInput): VerifiedRepo {
  const { nowMs, lastVersions } = input;
  const root = verifyRoots(input);

  const ts = parse<TimestampBody>('timestamp', input.timestamp);
  threshold(ts, root.body.keys, root.body.roles.timestamp, 'timestamp');
  noRollback(ts, 'timestamp', lastVersions);
  notExpired(ts, 'timestamp', nowMs);

  matchesMeta('snapshot', input.snapshot, ts.body.meta.snapshot);
  const snap = parse<SnapshotBody>('snapshot', input.snapshot);
  threshold(snap, root.body.keys, root.body.roles.snapshot, 'snapshot');
  noRollback(snap, 'snapshot', lastVersions);
  notExpired(snap, 'snapshot', nowMs);
  if (snap.body.meta.root) matchesMeta('root', root.bytes, snap.body.meta.root);

  const versions: VersionMap = { root: root.version, timestamp: ts.version, snapshot: snap.version };
  const expiries: Record<string, string> = { root: root.body.expires, timestamp: ts.body.expires, snapshot: snap.body.expires };
  let expiresAtMs = Math.min(root.expiresMs, ts.expiresMs, snap.expiresMs);
  const roles = new Map<string, VerifiedRole>();
  const skipped: SkippedRole[] = [];

  const targetsBytes = input.roles.get('targets');
  if (!snap.body.meta.targets) bail('missing-role', 'snapshot does not list targets', 'targets');
  if (!targetsBytes) bail('missing-role', 'targets metadata is missing', 'targets');
  const loadRole = (name: string, bytes: Buffer, keys: Record<string, TufKey>, role: RoleKeys, paths: string[]): Metadata<TargetsBody> => {
    matchesMeta(name, bytes, snap.body.meta[name]);
    const md = parse<TargetsBody>(name, bytes);
    const signers = threshold(md, keys, role, name);
    noRollback(md, name, lastVersions);
    notExpired(md, name, nowMs);
    const signerKeys = signers.map((id) => keyIdentity(keys[id]!) ?? `id:${id}`);
    roles.set(name, { name, version: md.version, expires: md.body.expires, signers, signerKeys, paths, targets: md.body.targets });
    versions[name] = md.version;
    expiries[name] = md.body.expires;
    expiresAtMs = Math.min(expiresAtMs, md.expiresMs);
    return md;
  };
  const top = loadRole('targets', targetsBytes!, root.body.keys, root.body.roles.targets, ['']);

  // Delegations in pre-order, only those the snapshot lists; each checked against its parent.
  const visit = (parent: Metadata<TargetsBody>, parentPaths: string[], depth: number): void => {
    if (depth > 8) return;
    for (const d of parent.body.delegations.roles) {
      if (roles.has(d.name) || parentRole(d.name) !== parent.role) continue;
      if (!snap.body.meta[d.name]) continue;
      const bytes = input.roles.get(d.name);
      if (!bytes) {
        skipped.push({ role: d.name, reason: 'missing-role', message: `${d.name} is listed in the snapshot but was not found` });
        continue;
      }
      const paths = (d.paths ?? []).filter((p) => parentPaths.some((pp) => p.startsWith(pp)));
      let md: Metadata<TargetsBody>;
      try {
        md = loadRole(d.name, bytes, parent.body.delegations.keys, d, paths);
      } catch (e) {
        if (!(e instanceof Failure)) throw e;
        skipped.push({ role: d.name, reason: e.f.reason, message: e.f.message });
        continue;
      }
      visit(md, paths, depth + 1);
    }
  };
  visit(top, [''], 0);

  return { ok: true, gun: input.gun, rootBytes: root.bytes, versions, expiries, expiresAtMs, roles, skipped };
}

const inPaths = (role: VerifiedRole, name: string) => role.paths.some((p) => name.startsWith(p));
const sha256Hex = (fm: FileMeta): string | undefined => {
  const b64 = fm.hashes.sha256;
  if (b64 === undefined) return undefined;
  const raw = Buffer.from(b64, 'base64');
  return raw.length === 32 ? raw.toString('hex') : undefined;
};

/** A listing of `name` in an accepted role, honouring delegation paths. */
interface Hit {
  role: VerifiedRole;
  hex: string;
  length: number;
}

/**
 * Finds the signed target `name` (a tag) in a verified repository: the first accepted role that
 * lists it gives digest and length; the requirement's threshold counts roles (or named signers)
 * that list the same digest and length.
 */
export function resolveTarget(repo: VerifiedRepo, name: string, req: TargetRequirement = {}): ResolvedTarget | VerifyFailure {
  const order = req.roles?.length ? req.roles : DEFAULT_ROLES;
  const hits: Hit[] = [];
  const outside: string[] = [];
  for (const roleName of order) {
    const role = repo.roles.get(roleName);
    const fm = role && ownEntry(role.targets, name);
    if (!role || !fm) continue;
    if (!inPaths(role, name)) {
      outside.push(roleName);
      continue;
    }
    const hex = sha256Hex(fm);
    if (!hex) return fail('malformed', `target ${name} in ${roleName} has no valid sha256`, roleName);
    hits.push({ role, hex, length: fm.length });
  }
  if (hits.length === 0) {
    if (outside.length)
      return fail('delegation-path', `${name} is listed by ${outside.join(', ')} outside the paths delegated to it`, outside[0]);
    const broken = repo.skipped.find((s) => order.includes(s.role));
    if (broken) return fail(broken.reason, `no valid signature for ${name}: ${broken.message}`, broken.role);
    return fail('not-signed', `no signature for tag ${name} in ${order.join(', ')}`);
  }
  const first = hits[0]!;
  const agree = hits.filter((h) => h.hex === first.hex && h.length === first.length);
  return finish(repo, name, agree, req);
}

function finish(repo: VerifiedRepo, name: string, agree: Hit[], req: TargetRequirement): ResolvedTarget | VerifyFailure {
  const first = agree[0]!;
  const need = req.threshold ?? 1;
  const signers = [...new Set(agree.flatMap((h) => h.role.signers))];
  if (req.signers?.length) {
    // Named signers count once per public key, whichever of its key IDs signed.
    const keyOf = new Map<string, string>();
    for (const h of agree) h.role.signers.forEach((id, i) => keyOf.set(id, h.role.signerKeys[i]!));
    const got = new Set(signers.filter((s) => req.signers!.includes(s)).map((id) => keyOf.get(id) ?? id)).size;
    if (got < need) {
      return fail('policy-unmet', `${name} is signed by ${got} of the required signers, threshold is ${need}`, first.role.name);
    }
  } else if (agree.length < need) {
    return fail(
      'policy-unmet',
      `${name} is signed in ${agree.length} role(s) (${agree.map((h) => h.role.name).join(', ')}), threshold is ${need}`,
      first.role.name,
    );
  }
  return {
    ok: true,
    name,
    digest: `sha256:${first.hex}`,
    length: first.length,
    role: first.role.name,
    roles: agree.map((h) => h.role.name),
    signers,
    versions: repo.versions,
    expiries: repo.expiries,
    expiresAtMs: repo.expiresAtMs,
  };
}

/** The tags `digest` (`sha256:<hex>`) is signed for; each result meets the requirement on its own. */
export function targetsForDigest(repo: VerifiedRepo, digest: string, req: TargetRequirement = {}): ResolvedTarget[] {
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : digest;
  const order = req.roles?.length ? req.roles : DEFAULT_ROLES;
  const names = new Set<string>();
  for (const roleName of order) {
    for (const [name, fm] of Object.entries(repo.roles.get(roleName)?.targets ?? {})) if (sha256Hex(fm) === hex) names.add(name);
  }
  // Only the role that wins lookup for a tag decides what the tag means.
  const out: ResolvedTarget[] = [];
  for (const name of names) {
    const r = resolveTarget(repo, name, req);
    if (r.ok && r.digest === `sha256:${hex}`) out.push(r);
  }
  return out;
}

/** Every digest the accepted roles sign for some tag (the first role to list a tag decides). */
export function signedDigests(repo: VerifiedRepo, req: TargetRequirement = {}): Map<string, ResolvedTarget> {
  const order = req.roles?.length ? req.roles : DEFAULT_ROLES;
  const names = new Set<string>();
  for (const roleName of order) for (const n of Object.keys(repo.roles.get(roleName)?.targets ?? {})) names.add(n);
  const out = new Map<string, ResolvedTarget>();
  for (const n of names) {
    const r = resolveTarget(repo, n, req);
    if (r.ok && !out.has(r.digest)) out.set(r.digest, r);
  }
  return out;
}

/** For messages: when a verified repository stops being valid. */
export const expiresText = (repo: VerifiedRepo) => formatRfc3339(repo.expiresAtMs);
