// Globally Unique Names (GUNs): the repository a trust collection belongs to, e.g.
// `registry.example.com:5000/team/app`. Notary only forbids `*`; we are stricter, since GUNs
// become storage keys, URLs and certificate CNs (Cure53 TUF-01-004: traversal through the GUN).
import { BASE_ROLES } from './roles.js';

const SEGMENT = /^[A-Za-z0-9](?:[A-Za-z0-9._:@-]*[A-Za-z0-9_])?$/;
export const MAX_GUN_LENGTH = 255;

/**
 * A GUN whose first segment is a top-level role name, in any case (`root`, `Targets/releases`)
 * reads like a role path, in URLs and in key and file names: refused.
 */
const ROLE_NAMES = new Set<string>(BASE_ROLES);

export function isValidGun(gun: string): boolean {
  if (gun.length === 0 || Buffer.byteLength(gun) > MAX_GUN_LENGTH) return false;
  const segments = gun.split('/');
  if (ROLE_NAMES.has(segments[0]!.toLowerCase())) return false;
  return segments.every((s) => SEGMENT.test(s) && !s.includes('..'));
}
