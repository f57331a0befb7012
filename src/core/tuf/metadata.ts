// The TUF metadata model in notary's dialect: a signed envelope around one of four role bodies.
// A `Metadata` keeps three views of one file: the exact bytes (stored and hashed as they are),
// the generic parsed tree of `signed` (canonicalised for signature checks, so unknown signed
// fields are covered), and a typed, validated view for the rules. Pure: no I/O.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { CanonicalJsonError, canonicalBytes, canonicalString, type JsonValue } from '../json/canonical.js';
import { duplicateKey } from '../json/duplicates.js';
import { isCanonicalBase64, keyId, keyIdentity, parseKey, signingMethod, verifySignature, type TufKey } from '../crypto/keys.js';
import type { Signer } from '../crypto/signer.js';
import { preview } from '../json/preview.js';
import { MalformedMetadataError, TufValidationError, type ValidationErrorName } from './errors.js';
import { BASE_ROLES, isDelegationName } from './roles.js';
import { formatUnixDate, parseRfc3339 } from './time.js';

export interface Signature {
  keyid: string;
  method: string;
  sig: string;
}
export interface FileMeta {
  length: number;
  hashes: Record<string, string>;
  custom?: JsonValue;
}
export interface RoleKeys {
  keyids: string[];
  threshold: number;
}
export interface DelegatedRole extends RoleKeys {
  name: string;
  paths?: string[];
}
export interface Delegations {
  keys: Record<string, TufKey>;
  roles: DelegatedRole[];
}
interface Common {
  expires: string;
  version: number;
}
export interface RootBody extends Common {
  _type: 'Root';
  consistent_snapshot: boolean;
  keys: Record<string, TufKey>;
  roles: Record<'root' | 'targets' | 'snapshot' | 'timestamp', RoleKeys>;
}
export interface TargetsBody extends Common {
  _type: 'Targets';
  delegations: Delegations;
  targets: Record<string, FileMeta>;
}
export interface SnapshotBody extends Common {
  _type: 'Snapshot';
  meta: Record<string, FileMeta>;
}
export interface TimestampBody extends Common {
  _type: 'Timestamp';
  meta: { snapshot: FileMeta };
}
export type RoleBody = RootBody | TargetsBody | SnapshotBody | TimestampBody;
export type RoleType = RoleBody['_type'];

/** Upper bound on versions: past 2^53 JSON numbers lose precision (Cure53 TUF-01-002). */
export const MAX_VERSION = Number.MAX_SAFE_INTEGER;
/** Bounds that keep hostile metadata from costing unbounded work. */
export const MAX_SIGNATURES = 64;

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Thrown by the typed readers; the caller maps it to the role's error kind. */
class ShapeError extends Error {}
function need(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new ShapeError(msg);
}

function shapeError(msg: string): never {
  throw new ShapeError(msg);
}

// Target names (tags) are untrusted keys, and "__proto__", "constructor" or "toString" are valid
// tags. The typed `targets` and `meta` maps have no prototype, so a lookup never finds an
// inherited member and `map["__proto__"] = x` makes an own entry. Bodies edited for signing are
// JSON clones whose maps do inherit from Object.prototype: there, write with setEntry (plain
// assignment of "__proto__" would set the prototype and the entry would be left out of the JSON)
// and read with ownEntry.
const entryMap = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

/** Sets `map[name]` as an own, enumerable entry, whatever the name. */
export function setEntry<T>(map: Record<string, T>, name: string, value: T): void {
  Object.defineProperty(map, name, { value, enumerable: true, writable: true, configurable: true });
}

/** `map[name]` when it is an own entry of the map, never an inherited member. */
export function ownEntry<T>(map: Record<string, T> | null | undefined, name: string): T | undefined {
  return map != null && Object.hasOwn(map, name) ? map[name] : undefined;
}

// Runs once per target, so messages are built only on failure and keys are walked without
// Object.entries. It copies rather than reuses the parsed objects: an edit of the typed body
// (which shares nothing with signedTree but `custom`) must never change the signed tree.
function readFileMeta(v: unknown, what: string, name: string): FileMeta {
  if (!isObj(v)) shapeError(`${what} ${name}: file meta is not an object`);
  const length = v.length;
  if (!(Number.isSafeInteger(length) && (length as number) >= 0)) shapeError(`${what} ${name}: bad length`);
  const h = v.hashes;
  if (!isObj(h)) shapeError(`${what} ${name}: hashes missing`);
  const hashes: Record<string, string> = {};
  for (const alg of Object.keys(h)) {
    const x = h[alg];
    if (typeof x !== 'string') shapeError(`${what} ${name}: hash ${alg} is not a string`);
    if (!isCanonicalBase64(x)) shapeError(`${what} ${name}: hash ${alg} is not canonical base64`);
    hashes[alg] = x;
  }
  const fm: FileMeta = { length: length as number, hashes };
  if (v.custom !== undefined) fm.custom = v.custom as JsonValue;
  return fm;
}

function readRoleKeys(v: unknown, what: string): RoleKeys {
  need(isObj(v), `${what}: role is not an object`);
  // Go writes a role whose last key was removed as `"keyids": null`.
  const keyids = v.keyids ?? [];
  need(Array.isArray(keyids) && keyids.every((k) => typeof k === 'string'), `${what}: keyids must be strings`);
  need(Number.isSafeInteger(v.threshold) && (v.threshold as number) >= 1, `${what}: threshold must be at least 1`);
  return { keyids: keyids as string[], threshold: v.threshold as number };
}

/** Keys maps must hold each key under its own ID; a mismatch is an error, never skipped. */
function readKeys(v: unknown, what: string): Record<string, TufKey> {
  need(isObj(v), `${what}: keys is not an object`);
  // Key IDs in role and delegation entries are untrusted too: `keys["constructor"]` must miss.
  const out = entryMap<TufKey>();
  for (const [id, raw] of Object.entries(v)) {
    let k: TufKey;
    try {
      k = parseKey(raw);
    } catch (e) {
      throw new ShapeError(`${what}: key ${id}: ${(e as Error).message}`);
    }
    need(keyId(k) === id, `${what}: key ID ${id} does not match its key`);
    out[id] = k;
  }
  return out;
}

function readCommon(v: Record<string, unknown>, type: RoleType): Common {
  if (v._type !== type) shapeError(`expected _type ${type}, found ${preview(v._type)}`);
  need(Number.isSafeInteger(v.version) && (v.version as number) >= 1, 'version must be an integer of at least 1');
  need(typeof v.expires === 'string' && !Number.isNaN(parseRfc3339(v.expires)), 'expires is not an RFC 3339 time');
  return { version: v.version as number, expires: v.expires as string };
}

function readBody(type: RoleType, v: unknown): RoleBody {
  need(isObj(v), 'signed is not an object');
  const common = readCommon(v, type);
  switch (type) {
    case 'Root': {
      need(isObj(v.roles), 'root has no roles');
      const roles = {} as RootBody['roles'];
      for (const r of BASE_ROLES) roles[r] = readRoleKeys(v.roles[r], `root role ${r}`);
      return { ...common, _type: 'Root', consistent_snapshot: v.consistent_snapshot === true, keys: readKeys(v.keys, 'root'), roles };
    }
    case 'Targets': {
      const targets = entryMap<FileMeta>();
      if (v.targets !== undefined && v.targets !== null) {
        need(isObj(v.targets), 'targets is not an object');
        const t = v.targets;
        for (const name of Object.keys(t)) targets[name] = readFileMeta(t[name], 'target', name);
      }
      // Absent or null `keys` must give an empty map without a prototype too, or a delegation naming
      // key "constructor" finds Object.prototype's member and passes checkDelegationList.
      let delegations: Delegations = { keys: entryMap<TufKey>(), roles: [] };
      if (v.delegations !== undefined && v.delegations !== null) {
        const d = v.delegations;
        need(isObj(d), 'delegations is not an object');
        const roles = d.roles ?? [];
        need(Array.isArray(roles), 'delegation roles is not a list');
        delegations = {
          keys: d.keys === undefined || d.keys === null ? entryMap<TufKey>() : readKeys(d.keys, 'delegations'),
          roles: roles.map((r, i) => {
            const rk = readRoleKeys(r, `delegation ${i}`);
            const o = r as Record<string, unknown>;
            need(typeof o.name === 'string', `delegation ${i} has no name`);
            const paths = o.paths ?? undefined;
            need(
              paths === undefined || paths === null || (Array.isArray(paths) && paths.every((p) => typeof p === 'string')),
              `delegation ${o.name}: paths must be strings`,
            );
            return { ...rk, name: o.name, ...(Array.isArray(paths) ? { paths: paths as string[] } : {}) };
          }),
        };
      }
      return { ...common, _type: 'Targets', targets, delegations };
    }
    case 'Snapshot': {
      need(isObj(v.meta), 'snapshot has no meta');
      const meta = entryMap<FileMeta>();
      const m = v.meta;
      for (const name of Object.keys(m)) meta[name] = readFileMeta(m[name], 'snapshot meta', name);
      return { ...common, _type: 'Snapshot', meta };
    }
    case 'Timestamp': {
      need(isObj(v.meta), 'timestamp has no meta');
      return { ...common, _type: 'Timestamp', meta: { snapshot: readFileMeta(v.meta.snapshot, 'timestamp meta', 'snapshot') } };
    }
  }
}

// The fields of the structs notary (Go) decodes metadata into; `each` is a map's values or a list's
// items. Go's encoding/json matches a key to a field case-insensitively (folding ſ to s and K to
// k too), so a key that folds to a field name without being it is read by Go and not by us.
type Shape = { fields: Record<string, Shape> } | { each: Shape } | null;
const KEY: Shape = { fields: { keytype: null, keyval: { fields: { public: null, private: null } } } };
const FILE_META: Shape = { fields: { length: null, hashes: null, custom: null } };
const ROLE_KEYS = { keyids: null, threshold: null };
const COMMON = { _type: null, expires: null, version: null };
const SIGNATURE: Shape = { fields: { keyid: null, method: null, sig: null } };
const BODY_SHAPES: Record<RoleType, Shape> = {
  Root: { fields: { ...COMMON, consistent_snapshot: null, keys: { each: KEY }, roles: { each: { fields: ROLE_KEYS } } } },
  Targets: {
    fields: {
      ...COMMON,
      targets: { each: FILE_META },
      delegations: { fields: { keys: { each: KEY }, roles: { each: { fields: { ...ROLE_KEYS, name: null, paths: null } } } } },
    },
  },
  Snapshot: { fields: { ...COMMON, meta: { each: FILE_META } } },
  Timestamp: { fields: { ...COMMON, meta: { each: FILE_META } } },
};

/** Go's case folding of a field name, for the lower-case ASCII names above. */
const foldName = (k: string) => k.replace(/\u017f/g, 's').toLowerCase();

/**
 * The first key of `v` that a Go reader would take for a field of `shape` it is not exactly,
 * as [path segments..., key, field], or undefined.
 */
function miscasedField(v: unknown, shape: Shape): Array<string | number> | undefined {
  if (shape === null || v === null || typeof v !== 'object') return undefined;
  if ('each' in shape) {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const bad = miscasedField(v[i], shape.each);
        if (bad) return [i, ...bad];
      }
    } else {
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const bad = miscasedField(o[k], shape.each);
        if (bad) return [k, ...bad];
      }
    }
    return undefined;
  }
  if (Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (Object.hasOwn(shape.fields, k)) {
      const bad = miscasedField(o[k], shape.fields[k]!);
      if (bad) return [k, ...bad];
    } else {
      const f = foldName(k);
      if (Object.hasOwn(shape.fields, f)) return [k, f];
    }
  }
  return undefined;
}

function miscasedMessage(where: string, bad: Array<string | number>): string {
  const field = bad.pop() as string;
  const key = bad.pop() as string;
  const path = bad
    .map((p) => (typeof p === 'number' ? `[${p}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) ? `.${p}` : `[${JSON.stringify(p)}]`))
    .join('');
  return `${where}${path}: key ${JSON.stringify(key)} is not the field ${JSON.stringify(field)} (field names are case-sensitive)`;
}

export function roleType(role: string): RoleType {
  if (role === 'root') return 'Root';
  if (role === 'snapshot') return 'Snapshot';
  if (role === 'timestamp') return 'Timestamp';
  return 'Targets';
}

interface Envelope {
  signed: JsonValue;
  signatures: Signature[];
  /** Why a reader other than JSON.parse could see something else in these bytes; refused by Metadata.parse. */
  problem?: string;
}

// An upload is parsed at the HTTP edge (a malformed file is refused before any other work) and
// again by the publish checks: the second parse of the same Buffer reuses the first. Parsed
// trees are read, never changed, and stored or uploaded bytes are never written to.
const envelopes = new WeakMap<Buffer, Envelope>();

/** Splits bytes into the signed tree and the signatures, or throws MalformedMetadataError. */
export function parseEnvelope(bytes: Buffer): Envelope {
  const known = envelopes.get(bytes);
  if (known) return known;
  const env = readEnvelope(bytes);
  envelopes.set(bytes, env);
  return env;
}

function readEnvelope(bytes: Buffer): Envelope {
  let doc: JsonValue;
  const text = bytes.toString('utf8');
  try {
    doc = JSON.parse(text) as JsonValue;
  } catch {
    throw new MalformedMetadataError('metadata is not JSON');
  }
  if (!isObj(doc) || !isObj(doc.signed) || !(Array.isArray(doc.signatures) || doc.signatures === null)) {
    throw new MalformedMetadataError('metadata is not a {"signed","signatures"} document');
  }
  // Anything outside `signed` is unsigned: refuse it rather than store it (Cure53 TUF-01-001).
  for (const k of Object.keys(doc)) {
    if (k !== 'signed' && k !== 'signatures') throw new MalformedMetadataError(`unsigned field ${JSON.stringify(k)} in metadata`);
  }
  const sigs = (doc.signatures ?? []) as unknown[];
  if (sigs.length > MAX_SIGNATURES) throw new MalformedMetadataError('too many signatures');
  let problem: string | undefined;
  const signatures = sigs.map((s, i) => {
    if (!isObj(s) || typeof s.keyid !== 'string' || typeof s.method !== 'string' || typeof s.sig !== 'string') {
      throw new MalformedMetadataError('malformed signature entry');
    }
    const bad = miscasedField(s, SIGNATURE);
    if (bad) problem ??= miscasedMessage(`signatures[${i}]`, bad);
    if (!isCanonicalBase64(s.sig)) problem ??= `signatures[${i}]: sig is not canonical base64`;
    return { keyid: s.keyid, method: s.method, sig: s.sig };
  });
  // Invalid UTF-8 is replaced on decoding, by Go and by Node in their own ways.
  if (!isUtf8(bytes)) problem = 'metadata is not valid UTF-8';
  else {
    const dup = duplicateKey(text);
    if (dup !== undefined) problem = `duplicate key ${dup}`;
  }
  return { signed: doc.signed, signatures, ...(problem !== undefined ? { problem } : {}) };
}

export interface Hashes {
  sha256: string; // hex
  sha512: string; // hex
}
export function hashBytes(bytes: Buffer): Hashes {
  return {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    sha512: createHash('sha512').update(bytes).digest('hex'),
  };
}

/** FileMeta over exact bytes, as snapshots and timestamps record them. */
export function fileMetaFor(bytes: Buffer): FileMeta {
  const h = hashBytes(bytes);
  return {
    hashes: { sha256: Buffer.from(h.sha256, 'hex').toString('base64'), sha512: Buffer.from(h.sha512, 'hex').toString('base64') },
    length: bytes.length,
  };
}

/** Hex sha256 recorded in a FileMeta, if any. */
export function metaSha256Hex(fm: FileMeta | undefined): string | undefined {
  const h = fm?.hashes.sha256;
  return h === undefined ? undefined : Buffer.from(h, 'base64').toString('hex');
}

/**
 * Checks that `bytes` match a FileMeta: every known hash present must match and at least one
 * must be present. Returns an error message, or undefined when they match.
 */
export function checkFileMeta(role: string, bytes: Buffer, fm: FileMeta, checkLength = false): string | undefined {
  if (checkLength && fm.length !== bytes.length) return `length for ${role} did not match: expected ${fm.length}`;
  let seen = 0;
  for (const alg of ['sha256', 'sha512'] as const) {
    const want = fm.hashes[alg];
    if (want === undefined) continue;
    const raw = Buffer.from(want, 'base64');
    if (raw.length !== (alg === 'sha256' ? 32 : 64)) return `invalid ${alg} checksum for ${role}`;
    seen++;
    const got = createHash(alg).update(bytes).digest();
    if (!got.equals(raw)) return `${alg} checksum for ${role} did not match: expected ${raw.toString('hex')}`;
  }
  return seen === 0 ? `no checksums for supported algorithms were provided for ${role}` : undefined;
}

/** A parsed metadata file. `T` is the typed body. */
export class Metadata<T extends RoleBody = RoleBody> {
  private constructor(
    readonly role: string,
    readonly bytes: Buffer,
    readonly signedTree: JsonValue,
    readonly signatures: Signature[],
    readonly body: T,
  ) {}

  /**
   * Parses and shape-checks a role file. Malformed JSON throws MalformedMetadataError; a body
   * that is JSON but breaks the role's schema throws TufValidationError of `kind`.
   */
  static parse<R extends RoleBody = RoleBody>(role: string, bytes: Buffer, kind: ValidationErrorName = 'ErrValidation'): Metadata<R> {
    const env = parseEnvelope(bytes);
    // One reading: refuse what Go's notary would read otherwise (duplicates, case-folded fields).
    if (env.problem !== undefined) throw new TufValidationError(kind, `${role}: ${env.problem}`);
    const type = roleType(role);
    const miscased = miscasedField(env.signed, BODY_SHAPES[type]);
    if (miscased) throw new TufValidationError(kind, `${role}: ${miscasedMessage('signed', miscased)}`);
    try {
      const body = readBody(type, env.signed) as R;
      return new Metadata<R>(role, bytes, env.signed, env.signatures, body);
    } catch (e) {
      if (e instanceof ShapeError) throw new TufValidationError(kind, `${role}: ${e.message}`);
      throw e;
    }
  }

  get version(): number {
    return this.body.version;
  }
  get expiresMs(): number {
    return parseRfc3339(this.body.expires);
  }
  isExpired(nowMs: number): boolean {
    return this.expiresMs <= nowMs;
  }
  /** The message signatures cover: canonical JSON of the parsed `signed` tree. */
  message(): Buffer {
    return canonicalBytes(this.signedTree);
  }

  /**
   * Counts distinct valid signatures by `role`'s keys and throws unless the threshold is met.
   * Unknown key IDs and invalid signatures are skipped; an empty list is an error.
   */
  verifyThreshold(keys: Record<string, TufKey>, role: RoleKeys, kind: ValidationErrorName): Set<string> {
    if (this.signatures.length === 0) throw new TufValidationError(kind, 'tuf: data has no signatures');
    let message: Buffer;
    try {
      message = this.message();
    } catch (e) {
      // e.g. a number beyond 2^53 or a fraction in `custom`: nothing can have signed it canonically.
      if (e instanceof CanonicalJsonError) throw new TufValidationError(kind, `${this.role}: ${e.message}`);
      throw e;
    }
    const valid = countValidSignatures(message, this.signatures, keys, role.keyids);
    if (valid.size < role.threshold) {
      throw new TufValidationError(kind, `valid signatures did not meet threshold for ${this.role}`);
    }
    return valid;
  }

  assertNotExpired(nowMs: number, kind: ValidationErrorName): void {
    if (this.isExpired(nowMs)) throw new TufValidationError(kind, `${this.role} expired at ${formatUnixDate(this.expiresMs)}`);
  }
}

/**
 * The one place that decides which signatures count: trusted key IDs with a valid signature,
 * one per public key (a key listed under two IDs, raw and in a certificate say, counts once).
 */
export function countValidSignatures(
  message: Buffer,
  signatures: readonly Signature[],
  keys: Record<string, TufKey>,
  allowed: readonly string[],
): Set<string> {
  const valid = new Set<string>();
  const counted = new Set<string>();
  for (const s of signatures) {
    if (valid.has(s.keyid) || !allowed.includes(s.keyid)) continue;
    // Own entries only: a signature's key ID is untrusted, and maps built elsewhere inherit Object.prototype.
    const key = ownEntry(keys, s.keyid);
    if (!key) continue;
    if (!verifySignature(key, message, s.method, Buffer.from(s.sig, 'base64'))) continue;
    const identity = keyIdentity(key) ?? `id:${s.keyid}`;
    if (counted.has(identity)) continue;
    counted.add(identity);
    valid.add(s.keyid);
  }
  return valid;
}

/** Signs a body with each signer and serialises the envelope canonically. */
export async function signBody(body: RoleBody | JsonValue, signers: readonly Signer[]): Promise<Buffer> {
  const message = canonicalString(body);
  const bytes = Buffer.from(message, 'utf8');
  const signatures: Signature[] = [];
  for (const s of signers) {
    const sig = await s.sign(bytes);
    signatures.push({ keyid: s.id, method: signingMethod(s.key.keytype), sig: sig.toString('base64') });
  }
  // canonicalBytes({ signed: body, signatures }) without encoding the body a second time:
  // "signatures" sorts before "signed".
  return Buffer.from(`{"signatures":${canonicalString(signatures)},"signed":${message}}`, 'utf8');
}

/**
 * The first key ID a role lists twice, if any. Signatures count once per distinct key, so a
 * repeated ID would let [k, k] pass a threshold-2 check and never be met.
 */
export function repeatedKeyId(keyids: readonly string[]): string | undefined {
  return keyids.find((id, i) => keyids.indexOf(id) !== i);
}

/**
 * Two key IDs of `keyids` that hold the same public key (raw and re-encoded, or certificates over
 * one key), if any: a role listing them would look like it had more keys than it has.
 */
export function repeatedPublicKey(keyids: readonly string[], keys: Record<string, TufKey>): [string, string] | undefined {
  const seen = new Map<string, string>();
  for (const id of keyids) {
    const k = ownEntry(keys, id);
    const identity = k && keyIdentity(k);
    if (identity === undefined) continue;
    const other = seen.get(identity);
    if (other !== undefined && other !== id) return [other, id];
    seen.set(identity, id);
  }
  return undefined;
}

/** Delegation name checks shared by publish validation and key management. */
export function checkDelegationList(parent: string, d: Delegations): string | undefined {
  for (const r of d.roles) {
    if (!isDelegationName(r.name) || r.name.slice(0, r.name.lastIndexOf('/')) !== parent) {
      return `invalid delegation ${r.name}: must be a direct child of ${parent}`;
    }
    // A delegation with no keys is disabled (notary's `delegation remove` of the last key);
    // one with some keys but fewer than its threshold could never sign: refuse that.
    const dup = repeatedKeyId(r.keyids);
    if (dup !== undefined) return `delegation ${r.name}: key ${dup} is listed more than once`;
    if (r.keyids.length > 0 && r.threshold > r.keyids.length)
      return `delegation ${r.name}: threshold ${r.threshold} is larger than its ${r.keyids.length} keys`;
    for (const id of r.keyids) if (!d.keys[id]) return `delegation ${r.name}: key ${id} is not in delegations.keys`;
    const same = repeatedPublicKey(r.keyids, d.keys);
    if (same) return `delegation ${r.name}: keys ${same[0]} and ${same[1]} are the same public key`;
  }
  return undefined;
}
