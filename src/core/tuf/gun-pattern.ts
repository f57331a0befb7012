// GUN patterns: the one matcher for names like `registry.example.com/team/*` wherever a GUN (or a
// repository path) is granted or configured — management API token scopes (src/auth/tokens.ts),
// registry token grants (src/auth/jwt-issuer.ts) and the proxy's policy rules (src/proxy/policy.ts).
//
// Semantics: fully anchored, matched segment by segment on `/`.
//   - `*` matches any run of characters inside one path segment (never `/`; a segment never
//     matches empty, so a lone `*` needs at least one character);
//   - a segment that is exactly `**` matches one or more whole segments;
//   - every other character is literal (`.` included); nothing is normalised.
// Refused: empty patterns, empty segments (`a//b`, leading or trailing `/`), `..`, `**` inside a
// segment, and characters GUNs cannot hold. Pure: no I/O, no state but a bounded compile cache.

export const MAX_PATTERN_LENGTH = 255;

/** A segment: GUN characters and `*`, or `**` alone. */
const SEGMENT = /^(?:\*\*|[A-Za-z0-9._:@*-]+)$/;

export class GunPatternError extends Error {
  override name = 'GunPatternError';
}

export interface Specificity {
  /** No wildcard at all: matches exactly one name. */
  exact: boolean;
  /** Characters that are not wildcards: more means more specific. */
  literal: number;
}

export interface GunPattern {
  readonly source: string;
  readonly regexp: RegExp;
  readonly specificity: Specificity;
  test(name: string): boolean;
}

/** Throws GunPatternError naming what is wrong with `pattern`. */
export function validateGunPattern(pattern: string): void {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > MAX_PATTERN_LENGTH) {
    throw new GunPatternError(`a GUN pattern must be 1 to ${MAX_PATTERN_LENGTH} characters`);
  }
  for (const seg of pattern.split('/')) {
    const what = `invalid pattern segment ${JSON.stringify(seg)}`;
    if (seg.length === 0) throw new GunPatternError(`${what}: empty segments are not allowed`);
    if (seg.includes('..')) throw new GunPatternError(`${what}: GUN patterns must not contain \`..\``);
    if (seg.includes('**') && seg !== '**') throw new GunPatternError(`${what}: \`**\` must be a whole path segment`);
    if (!SEGMENT.test(seg)) throw new GunPatternError(`${what}: only letters, digits, ._:@- and * are allowed`);
  }
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function specificity(pattern: string): Specificity {
  return { exact: !pattern.includes('*'), literal: pattern.replace(/\*/g, '').length };
}

/** Orders patterns most specific first: exact names, then more literal characters (stable for ties). */
export function compareSpecificity(a: Specificity, b: Specificity): number {
  return Number(b.exact) - Number(a.exact) || b.literal - a.literal;
}

const cache = new Map<string, GunPattern>();
const CACHE_MAX = 1024;

/** Validates and compiles a pattern (compiled patterns are cached). */
export function compileGunPattern(pattern: string): GunPattern {
  const hit = cache.get(pattern);
  if (hit) return hit;
  validateGunPattern(pattern);
  // A segment never matches empty (names with empty segments are not GUNs): a lone `*` needs a character.
  const parts = pattern
    .split('/')
    .map((seg) => (seg === '**' ? '[^/]+(?:/[^/]+)*' : seg === '*' ? '[^/]+' : seg.split('*').map(escapeRe).join('[^/]*')));
  const regexp = new RegExp(`^${parts.join('/')}$`);
  const compiled: GunPattern = { source: pattern, regexp, specificity: specificity(pattern), test: (name: string) => regexp.test(name) };
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(pattern, compiled);
  return compiled;
}

/** Whether `name` matches `pattern` (which must be valid: an invalid one throws). */
export function matchGunPattern(pattern: string, name: string): boolean {
  return compileGunPattern(pattern).test(name);
}
