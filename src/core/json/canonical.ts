// Canonical JSON as docker/go's MarshalCanonical writes it (the OLPC rules notary signs over):
// no whitespace, object keys sorted by UTF-8 byte order, only `"` and `\` escaped, every other
// character written raw, integral numbers only. Pure: no I/O.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export class CanonicalJsonError extends Error {
  override name = 'CanonicalJsonError';
}

/** Compares two strings by their UTF-8 bytes, which is the same as comparing code points. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only surrogates (astral characters) sort differently in UTF-16 and UTF-8: lift them above the BMP.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

// Only `"` and `\` are escaped; a fast path keeps the common case (keys, base64) cheap.
const NEEDS_ESCAPE = /["\\]/;
function encodeString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function encodeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new CanonicalJsonError('canonical JSON cannot encode NaN or Infinity');
  if (!Number.isInteger(n)) throw new CanonicalJsonError(`canonical JSON cannot encode the fraction ${n}`);
  if (!Number.isSafeInteger(n)) throw new CanonicalJsonError(`integer ${n} is outside the exactly representable range`);
  return Object.is(n, -0) ? '0' : String(n);
}

// Object keys in UTF-8 byte order. For strings without surrogates that is plain UTF-16 code unit
// order, which the built-in sort gives much faster than a comparator; keys with astral
// characters (surrogate pairs) take compareUtf8.
const SURROGATE = /[\uD800-\uDFFF]/;
function sortedKeys(obj: Record<string, unknown>): string[] {
  const keys: string[] = [];
  let astral = false;
  for (const k of Object.keys(obj)) {
    if (obj[k] === undefined) continue;
    keys.push(k);
    if (!astral && SURROGATE.test(k)) astral = true;
  }
  return astral ? keys.sort(compareUtf8) : keys.sort();
}

function encode(value: unknown, depth: number): string {
  if (depth > 64) throw new CanonicalJsonError('JSON nested too deeply');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return encodeNumber(value);
    case 'string':
      return encodeString(value);
    case 'object': {
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i > 0 ? ',' : '') + encode(value[i], depth + 1);
        return out + ']';
      }
      const obj = value as Record<string, unknown>;
      const keys = sortedKeys(obj);
      let out = '{';
      for (let i = 0; i < keys.length; i++) out += (i > 0 ? ',' : '') + encodeString(keys[i]!) + ':' + encode(obj[keys[i]!], depth + 1);
      return out + '}';
    }
    default:
      throw new CanonicalJsonError(`canonical JSON cannot encode a ${typeof value}`);
  }
}

/** Canonical JSON text of a value (undefined object members are left out, as Go's omitempty does). */
export function canonicalString(value: unknown): string {
  return encode(value, 0);
}

/** Canonical JSON bytes, the message that TUF signatures cover. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalString(value), 'utf8');
}

/** Parses JSON text strictly (a syntax error throws); numbers beyond 2^53 fail later, in encoding. */
export function parseJson(bytes: Buffer | string): JsonValue {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  return JSON.parse(text) as JsonValue;
}
