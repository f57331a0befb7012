// Globally Unique Names (GUNs): the repository a trust collection belongs to, e.g.
// `registry.example.com:5000/team/app`. Notary only forbids `*`; we are stricter, since GUNs
// become storage keys, URLs and certificate CNs (Cure53 TUF-01-004: traversal through the GUN).

const SEGMENT = /^[A-Za-z0-9](?:[A-Za-z0-9._:@-]*[A-Za-z0-9_])?$/;
export const MAX_GUN_LENGTH = 255;

export function isValidGun(gun: string): boolean {
  if (gun.length === 0 || Buffer.byteLength(gun) > MAX_GUN_LENGTH) return false;
  const segments = gun.split('/');
  return segments.every((s) => SEGMENT.test(s) && !s.includes('..'));
}
