// Input rules for signing requests, shared by the REST routes, the service and the CLI: digests,
// sizes, OCI tag names, role names and image references. Pure: every check either returns the
// clean value or throws a SigningInputError naming the field and what was wrong with it.
import { preview } from '../core/json/preview.js';
import { isValidGun } from '../core/tuf/gun.js';
import { isTargetsRole } from '../core/tuf/roles.js';

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
/** The OCI distribution spec's tag grammar. */
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export class SigningInputError extends Error {
  override name = 'SigningInputError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Refuses a field the schema (api/signing.json, additionalProperties false) does not name: a typo
 * such as `rol` or `cosgin` was ignored, so the request went on with the default (a revoke from
 * every role, a signature without cosign) instead of what was asked.
 */
export function onlyFields(o: Record<string, unknown>, allowed: ReadonlySet<string>, at = ''): void {
  for (const k of Object.keys(o)) {
    if (allowed.has(k)) continue;
    const field = `${at ? `${at}.` : ''}${k.slice(0, 40)}`;
    throw new SigningInputError(field, `unknown field ${JSON.stringify(field)}: allowed are ${[...allowed].join(', ')}`);
  }
}

export function checkDigest(v: unknown, field = 'digest'): string {
  if (typeof v !== 'string' || !DIGEST_RE.test(v)) {
    throw new SigningInputError(field, `${field} must be sha256:<64 lower-case hex digits>, got ${preview(v)}`);
  }
  return v;
}

export function checkTag(v: unknown, field = 'tag'): string {
  if (typeof v !== 'string' || !TAG_RE.test(v)) {
    throw new SigningInputError(field, `${field} ${preview(v)} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})`);
  }
  return v;
}

export function checkSize(v: unknown, field = 'size'): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new SigningInputError(field, `${field} must be a positive whole number of bytes, got ${preview(v)}`);
  }
  return v;
}

export function checkRole(v: unknown, field = 'role'): string {
  if (typeof v !== 'string' || !isTargetsRole(v)) {
    throw new SigningInputError(field, `${field} ${preview(v)} is not a targets role (targets, targets/releases, targets/<name>)`);
  }
  return v;
}

export function checkGun(v: unknown, field = 'gun'): string {
  if (typeof v !== 'string' || !isValidGun(v)) throw new SigningInputError(field, `${field} ${preview(v)} is not a valid repository name`);
  return v;
}

/** Custom metadata is stored inside the signed targets file: plain JSON of bounded size only. */
export function checkCustom(v: unknown, field = 'custom'): Record<string, unknown> {
  if (!isObj(v)) throw new SigningInputError(field, `${field} must be a JSON object`);
  // Depth first: JSON.stringify of a deeply nested value throws RangeError.
  const walk = (x: unknown, depth: number): void => {
    if (depth > 16) throw new SigningInputError(field, `${field} is nested too deeply`);
    if (typeof x === 'number' && !Number.isSafeInteger(x))
      throw new SigningInputError(field, `${field} may hold only whole numbers (canonical JSON)`);
    if (Array.isArray(x)) x.forEach((y) => walk(y, depth + 1));
    else if (isObj(x)) Object.values(x).forEach((y) => walk(y, depth + 1));
  };
  walk(v, 0);
  if (JSON.stringify(v).length > 16 * 1024) throw new SigningInputError(field, `${field} is larger than 16 KiB`);
  return v;
}

/** A predicate type: an absolute URI (https://slsa.dev/provenance/v1), at most 1024 characters. */
export function checkPredicateType(v: unknown, field = 'predicateType'): string {
  if (typeof v !== 'string' || v.length > 1024 || !/^[a-z][a-z0-9+.-]*:[^\s]+$/i.test(v))
    throw new SigningInputError(field, `${field} must be a URI such as https://slsa.dev/provenance/v1, got ${preview(v)}`);
  return v;
}

/** A predicate: a JSON object of at most `maxBytes` (serialized), meeting `problem` (the type's required fields). */
export function checkPredicate(v: unknown, maxBytes: number, problem: (p: unknown) => string | undefined, field = 'predicate'): object {
  if (!isObj(v)) throw new SigningInputError(field, `${field} must be a JSON object`);
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(v));
  } catch {
    throw new SigningInputError(field, `${field} is nested too deeply`);
  }
  if (size > maxBytes) throw new SigningInputError(field, `${field} is ${size} bytes; at most ${maxBytes} are signed`);
  const why = problem(v);
  if (why) throw new SigningInputError(field, `${field}: ${why}`);
  return v;
}

export interface ImageRef {
  /** The repository name with its registry host: the GUN. */
  name: string;
  /** Registry host[:port], when the name has one. */
  host?: string;
  /** Path within the registry. */
  path: string;
  tag?: string;
  digest?: string;
}

/** A registry host as docker tells it apart from a path segment: has a dot or a port, or is localhost. */
const looksLikeHost = (s: string) => s.includes('.') || s.includes(':') || s === 'localhost';

/**
 * Parses `host/repo:tag`, `host/repo@sha256:…` or `host/repo:tag@sha256:…`. A tag and a digest
 * together keep both; the caller decides which wins.
 */
export function parseImageRef(ref: string, field = 'image'): ImageRef {
  if (typeof ref !== 'string' || ref.length === 0 || ref.length > 512)
    throw new SigningInputError(field, `${field} must be an image reference like host/repo:tag or host/repo@sha256:<hex>`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = checkDigest(rest.slice(at + 1), `${field} digest`);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = checkTag(rest.slice(colon + 1), `${field} tag`);
    rest = rest.slice(0, colon);
  }
  const name = checkGun(rest, `${field} name`);
  const first = name.split('/')[0]!;
  const host = name.includes('/') && looksLikeHost(first) ? first : undefined;
  const path = host ? name.slice(host.length + 1) : name;
  if (/[:@]/.test(path))
    throw new SigningInputError(
      field,
      `${field} ${JSON.stringify(ref)} is not an image reference: only the registry host may hold ":" (a tag goes last)`,
    );
  return { name, ...(host ? { host } : {}), path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}
