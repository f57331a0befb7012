// The repository as `docker trust inspect` presents it (docker/cli cli/command/trust/common.go):
// signed tags are those released in `targets` or `targets/releases`, named by the other roles
// that sign the same digest; `targets/releases` is never listed as a signer.
import type { FileMeta } from './metadata.js';

/** What Docker calls a tag released only by the repository's own keys. */
export const REPO_ADMIN = 'Repo Admin';
const RELEASED = new Set(['targets', 'targets/releases']);

export const isReleasedRole = (role: string) => RELEASED.has(role);

/** Docker's signer name of a role: `targets/alice/ci` → `alice/ci`. */
export const signerName = (role: string) => (isReleasedRole(role) ? REPO_ADMIN : role.replace(/^targets\//, ''));

/** Go's sortorder.NaturalLess: runs of digits compare as numbers, digits sort before other bytes. */
export function naturalLess(a: string, b: string): boolean {
  const digit = (c: number) => c >= 48 && c <= 57;
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const c1 = a.charCodeAt(i);
    const c2 = b.charCodeAt(j);
    const d1 = digit(c1);
    const d2 = digit(c2);
    if (d1 !== d2) return d1;
    if (!d1) {
      if (c1 !== c2) return c1 < c2;
      i++;
      j++;
      continue;
    }
    while (i < a.length && a[i] === '0') i++;
    while (j < b.length && b[j] === '0') j++;
    const s1 = i;
    const s2 = j;
    while (i < a.length && digit(a.charCodeAt(i))) i++;
    while (j < b.length && digit(b.charCodeAt(j))) j++;
    if (i - s1 !== j - s2) return i - s1 < j - s2;
    const n1 = a.slice(s1, i);
    const n2 = b.slice(s2, j);
    if (n1 !== n2) return n1 < n2;
    if (s1 !== s2) return s1 < s2;
  }
  return a.length < b.length;
}

/** A comparator from naturalLess, ties broken by code unit order (Go's sort.Slice is not stable). */
export const naturalCompare = (a: string, b: string) => (naturalLess(a, b) ? -1 : naturalLess(b, a) ? 1 : a < b ? -1 : a > b ? 1 : 0);

/** Go's sort.Strings order (byte order; equal to code unit order for the ASCII names roles have). */
export const byteCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export interface TagRow {
  tag: string;
  digest: string;
  size: number;
  /** Every role that lists this tag with this digest. */
  roles: string[];
  /** Docker's signers: the non-released roles, sorted; `Repo Admin` alone when there are none. */
  signers: string[];
}

const hex = (b64: string) => Buffer.from(b64, 'base64').toString('hex');

/** A target's digest as Docker writes it (`sha256:<hex>`, else `sha512:<hex>`, else empty). */
export const targetDigest = (fm: FileMeta) =>
  fm.hashes.sha256 ? `sha256:${hex(fm.hashes.sha256)}` : fm.hashes.sha512 ? `sha512:${hex(fm.hashes.sha512)}` : '';

/** Every target of the given roles, one row per tag and digest, in Docker's order. */
export function tagRows(roles: Iterable<readonly [string, Record<string, FileMeta>]>): TagRow[] {
  const rows = new Map<string, TagRow>();
  for (const [role, targets] of roles) {
    for (const [tag, fm] of Object.entries(targets)) {
      const digest = targetDigest(fm);
      const k = `${tag}\n${digest}`;
      const row = rows.get(k) ?? { tag, digest, size: fm.length, roles: [], signers: [] };
      if (!row.roles.includes(role)) row.roles.push(role);
      if (!isReleasedRole(role) && !row.signers.includes(signerName(role))) row.signers.push(signerName(role));
      rows.set(k, row);
    }
  }
  for (const r of rows.values()) {
    if (r.signers.length === 0) r.signers.push(REPO_ADMIN);
    r.signers.sort(byteCompare);
  }
  return [...rows.values()].sort((a, b) => naturalCompare(a.tag, b.tag) || byteCompare(a.digest, b.digest));
}

/** The rows `docker trust inspect` shows: tags released in `targets` or `targets/releases`. */
export const releasedRows = (rows: TagRow[]) => rows.filter((r) => r.roles.some(isReleasedRole));
