// Publish validation and server-side generation of snapshot and timestamp metadata, following
// notary-server's rules (spec §3): root, then targets and delegations shallowest first, then a
// client or server snapshot, then a fresh timestamp. The result is a list of files that the
// store must commit atomically. Pure: state comes in, files go out; keys come through Signers.
import type { Signer } from '../crypto/signer.js';
import type { TufKey } from '../crypto/keys.js';
import { keyId } from '../crypto/keys.js';
import { validateDelegationCert, validateRootKey } from '../crypto/x509.js';
import { TufValidationError, type ValidationErrorName } from './errors.js';
import {
  Metadata,
  checkDelegationList,
  checkFileMeta,
  fileMetaFor,
  repeatedKeyId,
  repeatedPublicKey,
  signBody,
  type FileMeta,
  type RoleKeys,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from './metadata.js';
import { isTargetsRole, parentRole, roleDepth } from './roles.js';
import { DAY_MS, YEAR_MS, formatRfc3339 } from './time.js';

/** The repository as stored now: current files by the timestamp → snapshot chain. */
export interface RepoState {
  root?: Buffer;
  snapshot?: Buffer;
  timestamp?: Buffer;
  /** `targets` and delegations. */
  targets: Map<string, Buffer>;
  /** Highest stored version per role, whether or not it is current. */
  latestVersions: Map<string, number>;
  /**
   * Parses of the stored files above that the caller already holds, keyed by those files' Buffers;
   * each value must be the parse of exactly its key's bytes. Anything missing is parsed here.
   * Parsed metadata is never changed.
   */
  parsed?: ReadonlyMap<Buffer, Metadata>;
}

/** Where server-held private keys come from (snapshot and timestamp roles). */
export interface ServerKeyring {
  /** Signers the server holds among `keyids`, in any order. */
  signersFor(role: 'snapshot' | 'timestamp', keyids: readonly string[]): Promise<Signer[]>;
}

export interface PlannedFile {
  role: string;
  version: number;
  bytes: Buffer;
}

export interface Lifetimes {
  snapshotMs: number;
  timestampMs: number;
}
export const DEFAULT_LIFETIMES: Lifetimes = { snapshotMs: 3 * YEAR_MS, timestampMs: 14 * DAY_MS };

/**
 * A version may grow by at most this much in one publish: a stolen key cannot then push a role to
 * a version so high that no legitimate update fits after it (NCC 2015 finding 3).
 */
export const MAX_VERSION_STEP = 1 << 20;

/** A stored file's parse: the caller's when it has one for these very bytes and this role. */
function parseStored<T extends Metadata['body']>(
  state: RepoState,
  role: string,
  bytes: Buffer | undefined,
  kind?: ValidationErrorName,
): Metadata<T> | undefined {
  if (!bytes) return undefined;
  const known = state.parsed?.get(bytes);
  if (known && known.role === role) return known as Metadata<T>;
  return Metadata.parse<T>(role, bytes, kind);
}

/** Keys of a root that are usable right now: x509 root keys rebuilt from their valid leaf certs. */
export function validRootKeys(root: RootBody, gun: string, nowMs: number, checkExpiry: boolean): Record<string, TufKey> {
  const keys: Record<string, TufKey> = {};
  for (const id of root.roles.root.keyids) {
    const k = root.keys[id];
    if (!k) continue;
    const res = validateRootKey(k, gun, new Date(nowMs), { checkExpiry });
    if (res.ok && keyId(res.key) === id) keys[id] = res.key;
  }
  return keys;
}

function checkThresholds(root: RootBody): void {
  for (const [name, r] of Object.entries(root.roles)) {
    for (const id of r.keyids) {
      if (!root.keys[id]) throw new TufValidationError('ErrBadRoot', `key ${id} of role ${name} is not in root keys`);
    }
    const dup = repeatedKeyId(r.keyids);
    if (dup !== undefined) throw new TufValidationError('ErrBadRoot', `role ${name} lists key ${dup} more than once`);
    const same = repeatedPublicKey(r.keyids, root.keys);
    if (same)
      throw new TufValidationError('ErrBadRoot', `role ${name} lists keys ${same[0]} and ${same[1]}, which are the same public key`);
    if (r.threshold > r.keyids.length) {
      throw new TufValidationError('ErrBadRoot', `role ${name} threshold ${r.threshold} is larger than its ${r.keyids.length} keys`);
    }
  }
}

function checkVersionStep(role: string, version: number, state: RepoState): void {
  const prev = state.latestVersions.get(role) ?? 0;
  if (version - prev > MAX_VERSION_STEP) {
    const kind = role === 'root' ? 'ErrBadRoot' : role === 'snapshot' ? 'ErrBadSnapshot' : 'ErrBadTargets';
    throw new TufValidationError(kind, `${role} version ${version} jumps too far ahead of ${prev}`);
  }
}

/** Step 2: a root in the upload must chain from the stored one and be valid on its own. */
function validateRoot(gun: string, bytes: Buffer, stored: Metadata<RootBody> | undefined, nowMs: number): Metadata<RootBody> {
  const cur = stored?.version ?? 1;
  const md = Metadata.parse<RootBody>('root', bytes, 'ErrBadRoot');
  if (md.version !== cur && md.version !== cur + 1) {
    throw new TufValidationError('ErrBadRoot', `Root modifications must increment the version. Current ${cur}, new ${md.version}`);
  }
  checkThresholds(md.body);
  const newKeys = validRootKeys(md.body, gun, nowMs, true);
  if (Object.keys(newKeys).length === 0) {
    throw new TufValidationError('ErrBadRoot', 'could not validate the path to a trusted root: unable to retrieve valid leaf certificates');
  }
  if (stored) {
    // Rotation: the old root's keys must approve the new root (their expiry is not checked).
    const oldKeys = validRootKeys(stored.body, gun, nowMs, false);
    try {
      md.verifyThreshold(oldKeys, stored.body.roles.root, 'ErrBadRoot');
    } catch {
      throw new TufValidationError(
        'ErrBadRoot',
        'could not rotate trust to a new trusted root: failed to validate data with current trusted certificates',
      );
    }
  }
  md.verifyThreshold(newKeys, md.body.roles.root, 'ErrBadRoot');
  md.assertNotExpired(nowMs, 'ErrBadRoot');
  return md;
}

/** Finds the keys and role entry that sign `role`: root for `targets`, the parent's delegations below it. */
function signingRole(
  role: string,
  root: RootBody,
  loaded: Map<string, Metadata<TargetsBody>>,
): { keys: Record<string, TufKey>; role: RoleKeys } {
  if (role === 'targets') return { keys: root.keys, role: root.roles.targets };
  const parent = loaded.get(parentRole(role));
  const entry = parent?.body.delegations.roles.find((r) => r.name === role);
  if (!parent || !entry) throw new TufValidationError('ErrBadTargets', `tuf: invalid role ${role}. delegation does not exist`);
  return { keys: parent.body.delegations.keys, role: entry };
}

/** Step 3: one targets or delegation file. */
function validateTargets(
  role: string,
  bytes: Buffer,
  root: RootBody,
  loaded: Map<string, Metadata<TargetsBody>>,
  nowMs: number,
): Metadata<TargetsBody> {
  const { keys, role: signing } = signingRole(role, root, loaded);
  const md = Metadata.parse<TargetsBody>(role, bytes, 'ErrBadTargets');
  md.verifyThreshold(keys, signing, 'ErrBadTargets');
  md.assertNotExpired(nowMs, 'ErrBadTargets');
  const bad = checkDelegationList(role, md.body.delegations);
  if (bad) throw new TufValidationError('ErrBadTargets', bad);
  for (const k of Object.values(md.body.delegations.keys)) {
    const res = validateDelegationCert(k, new Date(nowMs));
    if (!res.ok) throw new TufValidationError('ErrBadTargets', res.reason);
  }
  return md;
}

async function serverSign(
  body: SnapshotBody | TimestampBody,
  role: 'snapshot' | 'timestamp',
  root: RootBody,
  keyring: ServerKeyring,
): Promise<Buffer | undefined> {
  const r = root.roles[role];
  const signers = await keyring.signersFor(role, r.keyids);
  const usable = signers.filter((s) => r.keyids.includes(s.id));
  if (usable.length < r.threshold) return undefined;
  return signBody(body, usable);
}

function nextVersion(role: string, current: Metadata | undefined, state: RepoState): number {
  return Math.max(current?.version ?? 0, state.latestVersions.get(role) ?? 0) + 1;
}

/** Builds and signs a snapshot that records `changed` over the current one; undefined if keys are missing. */
async function generateSnapshot(
  changed: Map<string, Buffer>,
  current: Metadata<SnapshotBody> | undefined,
  root: RootBody,
  state: RepoState,
  keyring: ServerKeyring,
  nowMs: number,
  lifetimes: Lifetimes,
): Promise<PlannedFile | undefined> {
  const meta: Record<string, FileMeta> = { ...(current?.body.meta ?? {}) };
  for (const [role, bytes] of changed) meta[role] = fileMetaFor(bytes);
  const version = nextVersion('snapshot', current, state);
  const body: SnapshotBody = { _type: 'Snapshot', expires: formatRfc3339(nowMs + lifetimes.snapshotMs), meta, version };
  const bytes = await serverSign(body, 'snapshot', root, keyring);
  return bytes && { role: 'snapshot', version, bytes };
}

async function generateTimestamp(
  snapshot: Buffer,
  current: Metadata<TimestampBody> | undefined,
  root: RootBody,
  state: RepoState,
  keyring: ServerKeyring,
  nowMs: number,
  lifetimes: Lifetimes,
): Promise<PlannedFile> {
  const version = nextVersion('timestamp', current, state);
  const body: TimestampBody = {
    _type: 'Timestamp',
    expires: formatRfc3339(nowMs + lifetimes.timestampMs),
    meta: { snapshot: fileMetaFor(snapshot) },
    version,
  };
  const bytes = await serverSign(body, 'timestamp', root, keyring);
  if (!bytes) throw new TufValidationError('ErrBadRoot', 'no  timestamp keys exist on the server');
  return { role: 'timestamp', version, bytes };
}

/**
 * Validates an upload (role → exact bytes) against the stored repository and returns every file
 * to commit: the uploaded ones plus a generated snapshot (when the client sent none) and timestamp.
 * Version monotonicity is left to the store's atomic commit, which answers VERSION.
 */
export async function planPublish(
  gun: string,
  uploads: ReadonlyMap<string, Buffer>,
  state: RepoState,
  keyring: ServerKeyring,
  nowMs: number,
  lifetimes: Lifetimes = DEFAULT_LIFETIMES,
): Promise<PlannedFile[]> {
  const storedRoot = parseStored<RootBody>(state, 'root', state.root);
  const out: PlannedFile[] = [];

  // Step 2: root.
  let root = storedRoot;
  const rootBytes = uploads.get('root');
  if (rootBytes) {
    root = validateRoot(gun, rootBytes, storedRoot, nowMs);
    checkVersionStep('root', root.version, state);
    out.push({ role: 'root', version: root.version, bytes: rootBytes });
  }
  if (!root) throw new TufValidationError('ErrValidation', 'no pre-existing root and no root provided in update.');

  // Step 3: targets and delegations, shallowest first, each checked against its parent (new or stored).
  const loaded = new Map<string, Metadata<TargetsBody>>();
  const changed = new Map<string, Buffer>();
  if (rootBytes) changed.set('root', rootBytes);
  const targetRoles = [...uploads.keys()].filter(isTargetsRole).sort((a, b) => roleDepth(a) - roleDepth(b) || (a < b ? -1 : 1));
  const ensureLoaded = (role: string) => {
    // Ancestors not in the upload come from the store, expired or not; absent ones stay absent.
    for (let r = parentRole(role); r.length > 0 && !loaded.has(r); r = parentRole(r)) {
      const md = parseStored<TargetsBody>(state, r, state.targets.get(r), 'ErrBadTargets');
      if (md) loaded.set(r, md);
      if (r === 'targets') break;
    }
  };
  for (const role of targetRoles) {
    if (role !== 'targets') ensureLoaded(role);
    const bytes = uploads.get(role)!;
    const md = validateTargets(role, bytes, root.body, loaded, nowMs);
    checkVersionStep(role, md.version, state);
    loaded.set(role, md);
    changed.set(role, bytes);
    out.push({ role, version: md.version, bytes });
  }

  // Step 4: snapshot, from the client or generated by the server.
  const currentSnapshot = parseStored<SnapshotBody>(state, 'snapshot', state.snapshot);
  let snapshotBytes = uploads.get('snapshot');
  if (snapshotBytes) {
    const snap = Metadata.parse<SnapshotBody>('snapshot', snapshotBytes, 'ErrBadSnapshot');
    snap.verifyThreshold(root.body.keys, root.body.roles.snapshot, 'ErrBadSnapshot');
    snap.assertNotExpired(nowMs, 'ErrBadSnapshot');
    checkVersionStep('snapshot', snap.version, state);
    for (const must of ['root', 'targets']) {
      if (!snap.body.meta[must]?.hashes.sha256) throw new TufValidationError('ErrBadSnapshot', `snapshot is missing the sha256 of ${must}`);
    }
    // Root and the targets roles uploaded (or loaded as their parents) must be listed; every role
    // listed must match, length and hashes, the file that is current once this publish is stored.
    const present = new Map<string, Buffer>(state.targets);
    present.set('root', rootBytes ?? state.root!);
    for (const [role, md] of loaded) {
      present.set(role, md.bytes);
      if (!snap.body.meta[role]) throw new TufValidationError('ErrBadSnapshot', `snapshot has no entry for ${role}`);
    }
    for (const [role, fm] of Object.entries(snap.body.meta)) {
      const bytes = present.get(role);
      const bad = bytes && checkFileMeta(role, bytes, fm, true);
      if (bad) throw new TufValidationError('ErrBadSnapshot', bad);
    }
    out.push({ role: 'snapshot', version: snap.version, bytes: snapshotBytes });
  } else {
    const gen = await generateSnapshot(changed, currentSnapshot, root.body, state, keyring, nowMs, lifetimes);
    if (!gen) {
      throw new TufValidationError(
        'ErrBadHierarchy',
        'no snapshot was included in update and server does not hold current snapshot key for repository',
        'snapshot',
      );
    }
    snapshotBytes = gen.bytes;
    out.push(gen);
  }

  // Step 5: a timestamp over the new snapshot.
  out.push(
    await generateTimestamp(
      snapshotBytes,
      parseStored<TimestampBody>(state, 'timestamp', state.timestamp),
      root.body,
      state,
      keyring,
      nowMs,
      lifetimes,
    ),
  );
  return out;
}

/**
 * Lazy re-signing on GET (spec §3.7): a fresh snapshot when the server-held one expired, and a
 * fresh timestamp when it expired or no longer names the snapshot. Empty when nothing is due.
 */
export async function planRefresh(
  state: RepoState,
  keyring: ServerKeyring,
  nowMs: number,
  lifetimes: Lifetimes = DEFAULT_LIFETIMES,
): Promise<PlannedFile[]> {
  if (!state.timestamp || !state.snapshot || !state.root) return [];
  const root = Metadata.parse<RootBody>('root', state.root);
  const ts = Metadata.parse<TimestampBody>('timestamp', state.timestamp);
  const snap = Metadata.parse<SnapshotBody>('snapshot', state.snapshot);
  const out: PlannedFile[] = [];
  let snapshotBytes = state.snapshot;
  if (snap.isExpired(nowMs)) {
    if (root.isExpired(nowMs)) return [];
    const gen = await generateSnapshot(new Map([['root', state.root]]), snap, root.body, state, keyring, nowMs, lifetimes);
    if (!gen) return []; // the client holds the snapshot key: only it can renew the snapshot
    out.push(gen);
    snapshotBytes = gen.bytes;
  }
  if (out.length > 0 || ts.isExpired(nowMs) || checkFileMeta('snapshot', snapshotBytes, ts.body.meta.snapshot, true)) {
    out.push(await generateTimestamp(snapshotBytes, ts, root.body, state, keyring, nowMs, lifetimes));
  }
  return out;
}
