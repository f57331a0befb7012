/**
 * A short, bounded rendering of an untrusted value for an error message: a string (cut to 100
 * characters) or a scalar as JSON, a container by its kind only. JSON.stringify of a value from a
 * request would echo it whole and, nested deeply enough, throws RangeError (a 500).
 */
export function preview(v: unknown): string {
  if (typeof v === 'string') return v.length > 100 ? `${JSON.stringify(v.slice(0, 100))}…` : JSON.stringify(v);
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return typeof v;
}
