// Finds an object that holds the same key twice, at any depth. JSON.parse keeps the last
// duplicate silently, Go's encoding/json too, and other readers may keep the first: signed
// metadata must have one reading, so such a document is refused before it is used. Pure: no I/O.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index of the quote that closes the string opening at `open`. */
function stringEnd(text: string, open: number): number {
  let q = text.indexOf('"', open + 1);
  for (;;) {
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    if ((q - 1 - b) % 2 === 0) return q; // an even run of backslashes escapes nothing
    q = text.indexOf('"', q + 1);
  }
}

function pathText(at: Array<string | number>): string {
  let out = '';
  for (const p of at) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) ? `${out === '' ? '' : '.'}${p}` : `[${JSON.stringify(p)}]`;
  }
  return out === '' ? 'the top-level object' : out;
}

/**
 * The first repeated key of `text` as `"key" in <path>` (keys compared after unescaping), or
 * undefined. `text` must already be valid JSON (JSON.parse accepted it): this only scans.
 */
export function duplicateKey(text: string): string | undefined {
  // One entry per open container: the keys seen (objects) or null (arrays), and where we are in it.
  const keys: Array<Set<string> | null> = [];
  const at: Array<string | number> = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      const top = keys.length - 1;
      const seen = top >= 0 ? keys[top] : null;
      if (seen) {
        let j = end + 1;
        while (isSpace(text.charCodeAt(j))) j++;
        // In valid JSON a string inside an object is a key exactly when a colon follows it.
        if (text.charCodeAt(j) === COLON) {
          const rawKey = text.slice(i + 1, end);
          const key = rawKey.indexOf('\\') < 0 ? rawKey : (JSON.parse(text.slice(i, end + 1)) as string);
          if (seen.has(key)) return `${JSON.stringify(key)} in ${pathText(at.slice(0, top))}`;
          seen.add(key);
          at[top] = key;
          i = j;
          continue;
        }
      }
      i = end;
    } else if (c === 0x7b) {
      keys.push(new Set());
      at.push('');
    } else if (c === 0x5b) {
      keys.push(null);
      at.push(0);
    } else if (c === 0x7d || c === 0x5d) {
      keys.pop();
      at.pop();
    } else if (c === COMMA) {
      const top = at.length - 1;
      if (keys[top] === null) at[top] = (at[top] as number) + 1;
    }
  }
  return undefined;
}
