// Mutations for the fuzzer: a JSON tree that keeps key order and duplicate keys and can hold
// literal text JSON values cannot (1e400, lone surrogates, deep nesting), byte-level edits,
// and multipart bodies built from parts that can be broken on purpose.
import type { Rng } from './prng.js';

export type Node = null | boolean | number | string | Obj | Arr | Raw;
export interface Obj {
  t: 'obj';
  e: Array<[string, Node]>;
}
export interface Arr {
  t: 'arr';
  v: Node[];
}
/** Literal JSON text, written as is. */
export interface Raw {
  t: 'raw';
  s: string;
}

const isObj = (n: Node): n is Obj => typeof n === 'object' && n !== null && n.t === 'obj';
const isArr = (n: Node): n is Arr => typeof n === 'object' && n !== null && n.t === 'arr';

export function toTree(v: unknown): Node {
  if (Array.isArray(v)) return { t: 'arr', v: v.map(toTree) };
  if (v !== null && typeof v === 'object') return { t: 'obj', e: Object.entries(v).map(([k, x]) => [k, toTree(x)]) };
  return v as Node;
}

export function serialize(n: Node): string {
  if (n === null || typeof n !== 'object') return JSON.stringify(n);
  if (n.t === 'raw') return n.s;
  if (n.t === 'arr') return `[${n.v.map(serialize).join(',')}]`;
  return `{${n.e.map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(',')}}`;
}

/** A place in the tree: the container and the index of the value in it. */
interface Slot {
  parent: Obj | Arr;
  index: number;
  key?: string;
}

function slots(root: Node, out: Slot[] = []): Slot[] {
  if (isObj(root)) {
    root.e.forEach(([k, v], i) => {
      out.push({ parent: root, index: i, key: k });
      slots(v, out);
    });
  } else if (isArr(root)) {
    root.v.forEach((v, i) => {
      out.push({ parent: root, index: i });
      slots(v, out);
    });
  }
  return out;
}

const get = (s: Slot): Node => (isObj(s.parent) ? s.parent.e[s.index]![1] : s.parent.v[s.index]!);
function set(s: Slot, v: Node): void {
  if (isObj(s.parent)) s.parent.e[s.index]![1] = v;
  else s.parent.v[s.index] = v;
}
const clone = (n: Node): Node => structuredClone(n);

const HUGE_NUMBERS = [
  '1e400',
  '-1e400',
  '1e-400',
  '-0',
  '0.0',
  '1.5',
  '-1',
  '0',
  '9007199254740992',
  '9007199254740993',
  '18446744073709551616',
  '-9223372036854775809',
  '1E2',
  '100000000000000000000000000000000000000000000000000',
  '4294967296',
  '2147483648',
  '0.000000000000000000000000001',
];
const UNICODE = [
  '\u0000',
  '\u202e',
  '\ufeff',
  'e\u0301',
  '\u00e9',
  '\ud83d\ude00',
  '\u0442\u0430rgets',
  '\uffff',
  '\u2028',
  '..',
  '/',
  '\\',
  '%2e%2e',
];
const KEY_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', '', ' ', 'signed ', 'x'.repeat(300)];

function caseVariant(rng: Rng, k: string): string {
  if (k === '') return 'A';
  const options = [
    k.toUpperCase(),
    k.toLowerCase(),
    k[0]!.toUpperCase() + k.slice(1),
    [...k].map((c) => (rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase())).join(''),
  ].filter((x) => x !== k);
  return options.length > 0 ? rng.pick(options) : `${k}_`;
}

function renamed(rng: Rng, k: string): string {
  return rng.weighted<() => string>([
    [4, () => caseVariant(rng, k)],
    [1, () => `${k}${rng.pick(UNICODE)}`],
    [1, () => rng.pick(KEY_NAMES)],
    [1, () => k.slice(0, Math.max(0, k.length - 1))],
    [1, () => `_${k}`],
  ])();
}

function longString(rng: Rng): string {
  const n = rng.pick([256, 4096, 65536, 300000]);
  return rng.pick(['a', '\u00e9', '\ud83d\ude00', '"', '\\', '/']).repeat(n);
}

function badBase64(rng: Rng, s: string): string {
  return rng.weighted<() => string>([
    [2, () => `${s}=`],
    [1, () => `${s}==`],
    [2, () => s.slice(0, Math.max(0, s.length - rng.int(1, 3)))],
    [1, () => s.replace(/[A-Za-z]/, '!')],
    [1, () => s.replace(/\+/g, '-').replace(/\//g, '_')],
    [1, () => ` ${s}`],
    [1, () => `${s.slice(0, 4)}\n${s.slice(4)}`],
    [1, () => Buffer.from(s, 'base64').toString('hex')],
    [1, () => ''],
    [1, () => 'A'],
  ])();
}

function deep(rng: Rng): Raw {
  const d = rng.pick([64, 1000, 5000, 20000]);
  return rng.chance(0.5) ? { t: 'raw', s: '['.repeat(d) + ']'.repeat(d) } : { t: 'raw', s: '{"a":'.repeat(d) + '1' + '}'.repeat(d) };
}

/** A value of another type (or a nasty value of the same type) in place of `v`. */
function replacement(rng: Rng, v: Node, key?: string): Node {
  if (typeof v === 'string' && /^[A-Za-z0-9+/=]{8,}$/.test(v) && rng.chance(0.6)) return badBase64(rng, v);
  if (typeof v === 'number' && (key === 'length' || key === 'version' || key === 'threshold' || key === 'size') && rng.chance(0.6)) {
    return rng.pick<Node>([v + 1, v - 1, 0, -1, v * 2, { t: 'raw', s: rng.pick(HUGE_NUMBERS) }]);
  }
  return rng.weighted<() => Node>([
    [3, () => ({ t: 'raw', s: rng.pick(HUGE_NUMBERS) })],
    [2, () => rng.pick<Node>([null, true, false, '', 0, { t: 'arr', v: [] }, { t: 'obj', e: [] }])],
    [2, () => (typeof v === 'string' ? rng.int(0, 10) : String(serialize(v)).slice(0, 200))],
    [1, () => ({ t: 'arr', v: [clone(v)] })],
    [1, () => ({ t: 'obj', e: [[key ?? 'x', clone(v)]] })],
    [2, () => longString(rng)],
    [2, () => (typeof v === 'string' ? v + rng.pick(UNICODE) : rng.pick(UNICODE))],
    [1, () => ({ t: 'raw', s: rng.pick(['"\\ud800"', '"\\udc00x"', '"\\u0000"', '"a\\/b"', '"\\u0041"']) })],
    [1, () => deep(rng)],
    [1, () => (typeof v === 'string' ? v.toUpperCase() : v)],
  ])();
}

/** One structural or value mutation somewhere in the tree (in place). Returns its name. */
export function mutateTree(rng: Rng, root: Node): string {
  const all = slots(root);
  if (all.length === 0) return 'none';
  const s = rng.pick(all);
  const v = get(s);
  const op = rng.weighted<string>([
    [4, 'replace'],
    [2, 'drop'],
    [2, 'duplicate'],
    [2, 'rename'],
    [2, 'add-case-twin'],
    [1, 'add-unknown'],
    [1, 'empty-container'],
    [1, 'grow-array'],
  ]);
  if (op === 'replace') {
    set(s, replacement(rng, v, s.key));
  } else if (op === 'drop') {
    if (isObj(s.parent)) s.parent.e.splice(s.index, 1);
    else s.parent.v.splice(s.index, 1);
  } else if (op === 'duplicate') {
    const copy = rng.chance(0.5) ? clone(v) : replacement(rng, v, s.key);
    if (isObj(s.parent)) s.parent.e.splice(s.index + rng.int(0, 1), 0, [s.key!, copy]);
    else s.parent.v.splice(s.index, 0, copy);
  } else if (op === 'rename') {
    if (isObj(s.parent)) s.parent.e[s.index]![0] = renamed(rng, s.key!);
    else set(s, replacement(rng, v));
  } else if (op === 'add-case-twin') {
    // A second field that equals an existing one case-insensitively (Go's decoder would read either).
    if (isObj(s.parent))
      s.parent.e.splice(rng.int(0, s.parent.e.length), 0, [
        caseVariant(rng, s.key!),
        rng.chance(0.5) ? clone(v) : replacement(rng, v, s.key),
      ]);
    else s.parent.v.push(clone(v));
  } else if (op === 'add-unknown') {
    const target = isObj(v) ? v : isObj(s.parent) ? s.parent : undefined;
    if (target) target.e.push([rng.pick(['custom', 'x', 'extra', ...KEY_NAMES]), replacement(rng, 'x')]);
    else set(s, { t: 'obj', e: [] });
  } else if (op === 'empty-container') {
    if (isObj(v)) v.e = [];
    else if (isArr(v)) v.v = [];
    else
      set(
        s,
        rng.pick<Node>([
          { t: 'obj', e: [] },
          { t: 'arr', v: [] },
        ]),
      );
  } else {
    if (isArr(v) && v.v.length > 0) {
      const first = v.v[0]!;
      // At most ~4 MB more: a body far beyond the server's limit is cut off mid-upload, not answered.
      const n = Math.min(rng.pick([2, 10, 1000]), Math.floor(4e6 / (serialize(first).length + 1)));
      for (let i = 0; i < n; i++) v.v.push(clone(first));
    } else if (isArr(s.parent)) s.parent.v.push(clone(v));
    else set(s, { t: 'arr', v: [clone(v), clone(v)] });
  }
  return `json:${op}@${s.key ?? `[${s.index}]`}`;
}

/** Parses JSON text into a tree (JSON.parse: the base inputs have no duplicate keys). */
export const parseTree = (text: string): Node => toTree(JSON.parse(text));

const INTERESTING_BYTES = [0x00, 0xff, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x0a, 0x0d, 0x80, 0xc3, 0xed];

/** One byte-level edit (returns a new buffer). */
export function mutateBytes(rng: Rng, b: Buffer): { bytes: Buffer; op: string } {
  const at = b.length === 0 ? 0 : rng.int(0, b.length - 1);
  const op = rng.weighted<string>([
    [3, 'flip'],
    [2, 'set'],
    [2, 'insert'],
    [2, 'delete'],
    [1, 'duplicate'],
    [2, 'truncate'],
    [1, 'bom'],
    [1, 'invalid-utf8'],
  ]);
  let out: Buffer;
  if (b.length === 0) out = rng.bytes(rng.int(1, 8));
  else if (op === 'flip') {
    out = Buffer.from(b);
    out[at] = out[at]! ^ (1 << rng.int(0, 7));
  } else if (op === 'set') {
    out = Buffer.from(b);
    out[at] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(0, 255);
  } else if (op === 'insert') {
    out = Buffer.concat([
      b.subarray(0, at),
      rng.chance(0.5) ? Buffer.from([rng.pick(INTERESTING_BYTES)]) : rng.bytes(rng.int(1, 16)),
      b.subarray(at),
    ]);
  } else if (op === 'delete') {
    out = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.int(1, 32)))]);
  } else if (op === 'duplicate') {
    const end = Math.min(b.length, at + rng.int(1, 64));
    out = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
  } else if (op === 'truncate') {
    out = b.subarray(0, at);
  } else if (op === 'bom') {
    out = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]);
  } else {
    out = Buffer.concat([
      b.subarray(0, at),
      Buffer.from(
        rng.pick([
          [0xc3, 0x28],
          [0xed, 0xa0, 0x80],
          [0xf8, 0x88, 0x80, 0x80],
          [0xc0, 0xaf],
        ]),
      ),
      b.subarray(at),
    ]);
  }
  return { bytes: out, op: `bytes:${op}@${at}` };
}

// ---------------------------------------------------------------------------------------------
// Multipart

export interface MPart {
  filename: string;
  bytes: Buffer;
  /** Header lines as sent; undefined: the usual Content-Disposition and Content-Type. */
  headers?: string[];
}

export interface MBody {
  boundary: string;
  /** The boundary the Content-Type header names (normally `boundary`). */
  headerBoundary: string;
  contentType?: string;
  parts: MPart[];
  nl: string;
  preamble: string;
  epilogue: string;
  close: boolean;
  /** Cut the encoded body to this many bytes. */
  truncate?: number;
}

export function mbody(files: Array<[string, Buffer]>, boundary: string): MBody {
  return {
    boundary,
    headerBoundary: boundary,
    parts: files.map(([filename, bytes]) => ({ filename, bytes })),
    nl: '\r\n',
    preamble: '',
    epilogue: '',
    close: true,
  };
}

export function encodeMultipart(m: MBody): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [Buffer.from(m.preamble)];
  for (const p of m.parts) {
    const headers = p.headers ?? [
      `Content-Disposition: form-data; name="files"; filename="${p.filename}"`,
      'Content-Type: application/octet-stream',
    ];
    chunks.push(Buffer.from(`--${m.boundary}${m.nl}${headers.map((h) => h + m.nl).join('')}${m.nl}`), p.bytes, Buffer.from(m.nl));
  }
  if (m.close) chunks.push(Buffer.from(`--${m.boundary}--${m.nl}`));
  chunks.push(Buffer.from(m.epilogue));
  let body = Buffer.concat(chunks);
  if (m.truncate !== undefined) body = body.subarray(0, m.truncate);
  return { body, contentType: m.contentType ?? `multipart/form-data; boundary=${m.headerBoundary}` };
}

const ROLE_NAMES = [
  'root',
  'targets',
  'snapshot',
  'timestamp',
  'targets/releases',
  'Targets',
  'ROOT',
  'targets.json',
  'root.json',
  'targets/',
  '/targets',
  '../root',
  'targets/../root',
  'targets//x',
  '',
  'snapshot\u0000',
  'targets/Releases',
  'targets/releases/../../root',
  'x'.repeat(300),
];

/** One multipart-level mutation (in place). */
export function mutateMultipart(rng: Rng, m: MBody): string {
  const op = rng.weighted<string>([
    [2, 'drop-part'],
    [2, 'duplicate-part'],
    [1, 'swap-parts'],
    [3, 'rename-part'],
    [1, 'header-boundary'],
    [1, 'content-type'],
    [1, 'lf-only'],
    [1, 'no-close'],
    [2, 'truncate'],
    [1, 'preamble'],
    [1, 'epilogue'],
    [2, 'part-headers'],
    [1, 'many-parts'],
    [1, 'boundary-in-body'],
  ]);
  const i = m.parts.length ? rng.int(0, m.parts.length - 1) : 0;
  const p = m.parts[i];
  switch (op) {
    case 'drop-part':
      m.parts.splice(i, 1);
      break;
    case 'duplicate-part':
      if (p)
        m.parts.splice(rng.int(0, m.parts.length), 0, { ...p, ...(rng.chance(0.3) ? { filename: caseVariant(rng, p.filename) } : {}) });
      break;
    case 'swap-parts':
      if (m.parts.length > 1) m.parts.reverse();
      break;
    case 'rename-part':
      if (p) p.filename = rng.chance(0.5) ? rng.pick(ROLE_NAMES) : caseVariant(rng, p.filename);
      break;
    case 'header-boundary':
      m.headerBoundary = rng.pick([
        `${m.boundary}x`,
        m.boundary.slice(1),
        '',
        `"${m.boundary}"`,
        `${m.boundary}; boundary=${m.boundary}`,
        'x'.repeat(71),
        `${m.boundary.toUpperCase()}`,
      ]);
      break;
    case 'content-type':
      m.contentType = rng.pick([
        'application/json',
        'multipart/mixed; boundary=' + m.boundary,
        'multipart/form-data',
        'multipart/form-data; boundary=',
        `multipart/form-data; boundary=${m.boundary}; boundary=${m.boundary}`,
        `multipart/form-data; boundary*=utf-8''${m.boundary}`,
        `Multipart/Form-Data; BOUNDARY="${m.boundary}"`,
        `multipart/form-data; boundary="${m.boundary}`,
        `multipart/form-data;; boundary=${m.boundary}`,
        '',
      ]);
      break;
    case 'lf-only':
      m.nl = '\n';
      break;
    case 'no-close':
      m.close = false;
      break;
    case 'truncate': {
      const full = encodeMultipart({ ...m, truncate: undefined }).body.length;
      m.truncate = rng.int(0, Math.max(0, full - 1));
      break;
    }
    case 'preamble':
      m.preamble = rng.pick(['garbage\r\n', `--${m.boundary}x\r\n`, '\r\n\r\n', 'x'.repeat(5000)]);
      break;
    case 'epilogue':
      m.epilogue = rng.pick([
        `--${m.boundary}\r\nContent-Disposition: form-data; filename="root"\r\n\r\n{}\r\n--${m.boundary}--\r\n`,
        'trailing',
        '\r\n',
      ]);
      break;
    case 'part-headers':
      if (p) {
        p.headers = rng.pick([
          [],
          [`Content-Disposition: form-data; name="files"`],
          [`Content-Disposition: form-data; name="files"; filename=${p.filename}`],
          [`Content-Disposition: form-data; name="files"; filename="${p.filename}"; filename="root"`],
          [`Content-Disposition: form-data; name="files"; filename*=utf-8''${encodeURIComponent(p.filename)}`],
          [`content-disposition: FORM-DATA; NAME="files"; FILENAME="${p.filename}"`],
          [`Content-Disposition: form-data; name="files"; filename="${p.filename}`],
          [`Content-Disposition: attachment; filename="${p.filename}"`],
          [`Content-Disposition: form-data; name="files"; filename="${p.filename}"`, 'Content-Transfer-Encoding: base64'],
          [`Content-Disposition: form-data; name="files"; filename="${p.filename}"`, 'X: ' + 'y'.repeat(20000)],
          [`Content-Disposition: form-data; name="files";\r\n filename="${p.filename}"`],
        ]);
      }
      break;
    case 'many-parts': {
      const n = rng.pick([50, 999, 1001]);
      for (let k = 0; k < n; k++) m.parts.push({ filename: rng.pick(['targets', `targets/d${k}`, 'x']), bytes: Buffer.from('{}') });
      break;
    }
    case 'boundary-in-body':
      if (p) p.bytes = Buffer.concat([p.bytes.subarray(0, 10), Buffer.from(`\r\n--${m.boundary}\r\n`), p.bytes.subarray(10)]);
      break;
  }
  return `multipart:${op}`;
}
