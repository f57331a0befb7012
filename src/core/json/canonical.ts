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

// Fast path. Clients upload canonical JSON and JSON.parse keeps key order, so a parsed tree
// usually has its keys sorted already; then JSON.stringify (native, much cheaper than encode)
// writes the canonical text, provided nothing in the tree is written differently by the two.
// `canonicalReady` checks what only the tree can tell (key order, numbers, types, depth); the
// strings are checked on the output (see canonicalString). Whenever in doubt it says no, and
// encode, the reference, does the work (and throws its own errors).
function canonicalReady(value: object, depth: number): boolean {
  // encode fails past depth 64; a container at 64 may still be fine, but leave it to encode.
  if (depth >= 64) return false;
  // JSON.stringify calls toJSON (own, inherited or patched onto a prototype); encode does not.
  if ((value as { toJSON?: unknown }).toJSON !== undefined) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      // JSON.stringify writes undefined (or a hole) in an array as null: encode throws.
      if (!readyMember(value[i], depth)) return false;
    }
    return true;
  }
  // JSON.stringify unwraps boxed primitives (new Number(1)); encode writes them as {}.
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  for (let i = 0; i < keys.length; i++) {
    // Sorted by UTF-16 code units, which is UTF-8 byte order unless a key has a surrogate (the
    // output check catches those). Integer-like keys, which V8 lists first in numeric order,
    // fail here unless that happens to be byte order too (as "1","2" is).
    if (i > 0 && !(keys[i - 1]! < keys[i]!)) return false;
    const v = obj[keys[i]!];
    // An undefined member is left out by both.
    if (v !== undefined && !readyMember(v, depth)) return false;
  }
  return true;
}

function readyMember(v: unknown, parentDepth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      // JSON.stringify writes NaN and Infinity as null and fractions as they are; -0 is "0" in both.
      return Number.isSafeInteger(v);
    case 'object':
      return v === null || canonicalReady(v, parentDepth + 1);
    default:
      return false; // undefined in an array, functions, symbols, bigints
  }
}

/** Canonical JSON text of a value (undefined object members are left out, as Go's omitempty does). */
export function canonicalString(value: unknown): string {
  if (typeof value === 'object' && value !== null && canonicalReady(value, 0)) {
    const out = JSON.stringify(value);
    // JSON.stringify escapes `"`, `\`, control characters and lone surrogates, each with a
    // backslash: none in the output means every string was written raw, as encode would. No
    // surrogate at all also means no key needed compareUtf8. (The test is nearly free on a
    // one-byte string, which is what ASCII metadata is.)
    if (out.indexOf('\\') === -1 && !SURROGATE.test(out)) return out;
  }
  return encode(value, 0);
}

/** The reference encoder, without the JSON.stringify fast path (for tests and benchmarks). */
export function canonicalStringSlow(value: unknown): string {
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
