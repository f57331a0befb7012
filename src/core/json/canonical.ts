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

function encode(value: unknown, out: string[], depth: number): void {
  if (depth > 64) throw new CanonicalJsonError('JSON nested too deeply');
  if (value === null) {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      out.push(encodeNumber(value));
      return;
    case 'string':
      out.push(encodeString(value));
      return;
    case 'object': {
      if (Array.isArray(value)) {
        out.push('[');
        value.forEach((item, i) => {
          if (i > 0) out.push(',');
          encode(item, out, depth + 1);
        });
        out.push(']');
        return;
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareUtf8);
      out.push('{');
      keys.forEach((k, i) => {
        if (i > 0) out.push(',');
        out.push(encodeString(k), ':');
        encode(obj[k], out, depth + 1);
      });
      out.push('}');
      return;
    }
    default:
      throw new CanonicalJsonError(`canonical JSON cannot encode a ${typeof value}`);
  }
}

/** Canonical JSON text of a value (undefined object members are left out, as Go's omitempty does). */
export function canonicalString(value: unknown): string {
  const out: string[] = [];
  encode(value, out, 0);
  return out.join('');
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
