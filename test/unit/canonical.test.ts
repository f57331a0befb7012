import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  CanonicalJsonError,
  canonicalBytes,
  canonicalString,
  canonicalStringSlow,
  compareUtf8,
  parseJson,
} from '../../src/core/json/canonical.js';
import { keyId, makeKey } from '../../src/core/crypto/keys.js';

const FIX = new URL('../fixtures/notary/metadata/', import.meta.url);

test("V1: ed25519 key of 32 zero bytes has notary's canonical form and key ID", () => {
  const k = makeKey('ed25519', Buffer.alloc(32));
  assert.equal(
    canonicalString(k),
    '{"keytype":"ed25519","keyval":{"private":null,"public":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}',
  );
  assert.equal(keyId(k), '06256955f08f0df5598a5d102b828847052eddce612c559400d7e9b7c329f594');
});

test("V2: ecdsa key of the P-256 generator has notary's key ID", () => {
  const spki =
    'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==';
  assert.equal(keyId(makeKey('ecdsa', Buffer.from(spki, 'base64'))), '2a4a3169341f90dec00876954704aaaf9377744a576e20b3e17d3950976a448d');
});

test('V3: parse-then-canonicalise sorts by UTF-8 bytes and writes control characters raw', () => {
  const input = String.raw`{"z":1,"a":{"y":[3,2,1],"b":"tab\there nl\nq\"bs\\ lt<gt>amp& e\u00e9 ls\u2028 ctl\u0001 emoji\ud83d\ude00","n":12.0,"neg":-7},"\u00e9":true,"\uff61":null,"\ud83d\ude00":false,"A":[]}`;
  const out = canonicalBytes(parseJson(input));
  assert.equal(out.length, 144);
  assert.equal(createHash('sha256').update(out).digest('hex'), 'd7e311c8a4209b79c5da5b262afa50d9d66577bf137ebbb080157db698f84f06');
  const keys = Object.keys(parseJson(input) as object).sort(compareUtf8);
  assert.deepEqual(keys, ['A', 'a', 'z', 'é', '｡', '😀']);
});

test('V4: fractions, NaN and numbers beyond 2^53 cannot be canonicalised', () => {
  assert.throws(() => canonicalString({ x: 1.5 }), /fraction/);
  assert.throws(() => canonicalString({ x: NaN }), /NaN/);
  assert.throws(() => canonicalString(parseJson('{"version":9223372036854775807}')), /representable/);
});

test('V5: a value with an offset expiry keeps the text as written', () => {
  assert.equal(
    canonicalString({ version: 2, expires: '2030-01-02T03:04:05.12-08:00', _type: 'Targets' }),
    '{"_type":"Targets","expires":"2030-01-02T03:04:05.12-08:00","version":2}',
  );
});

test('the signed part of every fixture file is already canonical', () => {
  for (const name of ['root.json', 'targets.json', 'snapshot.json', 'timestamp.json', 'targets-releases.json', 'targets-qa.json']) {
    const raw = readFileSync(new URL(name, FIX), 'utf8');
    const signed = (JSON.parse(raw) as { signed: unknown }).signed;
    const start = raw.indexOf('"signed":') + '"signed":'.length;
    const canon = canonicalString(signed);
    assert.equal(raw.slice(start, start + canon.length), canon, name);
  }
});

test('compareUtf8 orders astral characters after the whole BMP', () => {
  assert.ok(compareUtf8('\uffff', '😀') < 0);
  assert.ok('😀' < '\uffff', 'plain JS string order (UTF-16) differs, which is why compareUtf8 exists');
  assert.ok(compareUtf8('a', 'ab') < 0);
  assert.equal(compareUtf8('abc', 'abc'), 0);
});

test('object keys: UTF-8 byte order whether or not a key has an astral character, and at any depth', () => {
  // U+FFFD sorts before U+1F600 in UTF-8 bytes but after it in UTF-16 code units.
  assert.equal(canonicalString({ '😀': 1, '\ufffd': 2, a: 3, Z: 4 }), '{"Z":4,"a":3,"\ufffd":2,"😀":1}');
  assert.equal(
    canonicalString({ b: { '😀': [1, { y: 1, x: 2 }], '\ue000': null }, a: true }),
    '{"a":true,"b":{"\ue000":null,"😀":[1,{"x":2,"y":1}]}}',
  );
  // Without astral characters the order is plain code unit order, upper case before lower.
  assert.equal(canonicalString({ b: 1, B: 2, 'b/a': 3, 'b-a': 4, '': 5 }), '{"":5,"B":2,"b":1,"b-a":4,"b/a":3}');
  // Undefined members are left out; arrays keep their order.
  assert.equal(canonicalString({ b: undefined, a: [3, 1, 2] }), '{"a":[3,1,2]}');
});

// canonicalString takes a JSON.stringify fast path when it can prove the output is the same;
// canonicalStringSlow is the reference encoder. They must agree on every input: the same text,
// or the same error class and message.
type Outcome = { ok: string } | { err: string; name: string };
function outcome(f: (v: unknown) => string, v: unknown): Outcome {
  try {
    return { ok: f(v) };
  } catch (e) {
    return { err: (e as Error).message, name: (e as Error).constructor.name };
  }
}

/** Counts JSON.stringify calls made by canonicalString, i.e. how often the fast path was tried. */
function countingStringify<T>(fn: () => T): { result: T; calls: number } {
  const real = JSON.stringify;
  let calls = 0;
  JSON.stringify = ((...a: Parameters<typeof JSON.stringify>) => {
    calls++;
    return real(...a);
  }) as typeof JSON.stringify;
  try {
    return { result: fn(), calls };
  } finally {
    JSON.stringify = real;
  }
}

// A small seeded PRNG (mulberry32), so a failure reproduces.
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = [
  'a',
  'b',
  'Z',
  '_type',
  'tag-1',
  'tag-10',
  'tag-9',
  '0',
  '9',
  '10',
  '01',
  '-1',
  '1e3',
  '4294967295',
  '',
  '__proto__',
  'é',
  '\ue000',
  '\uffff',
  '😀',
  'a\nb',
  'q"',
  'b\\s',
  '\u0000',
  '\ud800',
  'x\udc00',
];
const CHARS = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '\n',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  '\u2028',
  'é',
  '\ue000',
  '\uffff',
  '😀',
  '\ud800',
  '\udfff',
  '/',
  '<',
];
const CLEAN_CHARS = ['a', 'Z', '0', ' ', '+', '/', '=', '-', '.', 'é', '\u2028', '\u007f'];
const NUMBERS = [0, -0, 1, -7, 1234, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, -(2 ** 53) - 2, 1.5, -0.25, 1e21, NaN, Infinity, -Infinity];

function gen(r: () => number, depth: number, clean: boolean): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const x = r();
  if (depth > 4 || x < 0.45) {
    const y = r();
    if (y < 0.45) return Array.from({ length: Math.floor(r() * 6) }, () => pick(clean ? CLEAN_CHARS : CHARS)).join('');
    if (y < 0.75) return clean ? Math.floor(r() * 1e6) - 5e5 : pick(NUMBERS);
    if (y < 0.85) return r() < 0.5;
    if (y < 0.93 || clean) return null;
    return pick([undefined, undefined, () => 1, Symbol('s'), 1n]);
  }
  if (x < 0.6) return Array.from({ length: Math.floor(r() * 4) }, () => gen(r, depth + 1, clean));
  const n = Math.floor(r() * 6);
  const keys = new Set<string>();
  for (let i = 0; i < n; i++) keys.add(clean ? pick(['a', 'b', 'c', 'hashes', 'length', 'tag-1', 'tag-2', 'é']) : pick(KEYS));
  const ks = [...keys];
  // Mostly sorted by code units (what a parsed canonical file looks like), sometimes not.
  if (r() < 0.8) ks.sort();
  // fromEntries defines own properties, so "__proto__" is a plain key as in a JSON.parse result.
  return Object.fromEntries(ks.map((k) => [k, gen(r, depth + 1, clean)]));
}

function nest(depth: number, leaf: unknown, asArray: boolean): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { k: v };
  return v;
}

test('fast path and reference encoder agree on generated trees, errors included', () => {
  const r = rng(20240611);
  let fast = 0;
  let total = 0;
  for (let i = 0; i < 6000; i++) {
    const clean = i % 3 === 0;
    const tree = gen(r, 0, clean);
    const { result: got, calls } = countingStringify(() => outcome(canonicalString, tree));
    const want = outcome(canonicalStringSlow, tree);
    assert.deepEqual(got, want, `case ${i}: ${String(want && 'ok' in want ? want.ok : want.err)}`);
    if ('err' in want) assert.equal(want.name, CanonicalJsonError.name, `case ${i}: ${want.err}`);
    // The same tree as a parser hands it over: keys in the file's (canonical) order.
    if ('ok' in want) {
      // Canonical text writes control characters raw, which JSON.parse refuses: escape them first.
      // eslint-disable-next-line no-control-regex
      const parsed = parseJson(want.ok.replace(/[\u0000-\u001f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
      assert.equal(canonicalString(parsed), want.ok, `case ${i} parsed`);
    }
    if (typeof tree === 'object' && tree !== null) {
      total++;
      if (calls > 0 && 'ok' in got && got.ok === JSON.stringify(tree)) fast++;
    }
  }
  // The property means little unless the fast path carries a good share of the cases.
  assert.ok(fast > total / 4, `fast path taken in ${fast} of ${total} cases`);
});

test('fast path edge cases match the reference encoder', () => {
  const cases: unknown[] = [
    { 10: 1, 9: 2 }, // V8 lists "9" first; byte order puts "10" first
    { 1: 'a', 2: 'b', a: 0 },
    { '01': 1, '1': 2, '-1': 3, '1e3': 4, '0': 5 },
    { b: 1, a: 2 },
    { a: 'ctl\u0001', b: 'nl\n' },
    { 'k\u001f': 1 },
    { a: '\ud800' },
    { a: 'x\udc00y' },
    { '😀': 1, '\uffff': 2 }, // UTF-16 order, not UTF-8 order
    { '\uffff': 2, '😀': 1 },
    { a: '😀 astral, paired' },
    { 'q"': '"', 'b\\': '\\' },
    { a: NaN },
    { a: Infinity },
    { a: [-Infinity] },
    { a: -0, b: [-0] },
    { a: 1.5 },
    { a: 2 ** 53 },
    { a: -(2 ** 53) },
    { a: 2 ** 53 - 1 },
    { a: undefined, b: 1 },
    { b: 1, a: undefined },
    { a: [1, undefined] },
    [1, , 3], // eslint-disable-line no-sparse-arrays
    { a: () => 1 },
    { a: Symbol('s') },
    { a: 1n },
    { a: new Date(0) },
    { a: Buffer.from('hi') },
    { a: new Number(1) },
    { a: new String('s') },
    { a: { toJSON: () => 'x' } },
    { a: { toJSON: 'not a function' } },
    { a: Object.assign([1, 2], { toJSON: () => 'x' }) },
    {
      a: new (class extends Array {
        toJSON() {
          return 'x';
        }
      })(),
    },
    {
      a: new (class Plain {
        x = 1;
      })(),
    },
    Object.assign(Object.create(null) as object, { a: 1, b: [] }),
    JSON.parse('{"__proto__":{"a":1},"b":2}') as unknown,
    [],
    {},
    [[[]], {}, null, true, false, 'x', 0],
  ];
  for (const d of [62, 63, 64, 65, 66, 70]) {
    for (const leaf of [1, 'x', null, [], {}, NaN]) cases.push(nest(d, leaf, true), nest(d, leaf, false));
  }
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  cases.push(cyclic);
  for (const [i, c] of cases.entries()) {
    assert.deepEqual(outcome(canonicalString, c), outcome(canonicalStringSlow, c), `case ${i}`);
  }
  // A toJSON patched onto a prototype changes JSON.stringify but not the canonical encoding.
  for (const proto of [Object.prototype, Array.prototype] as Array<{ toJSON?: unknown }>) {
    proto.toJSON = () => 'patched';
    try {
      assert.equal(canonicalString({ a: [1] }), '{"a":[1]}');
    } finally {
      delete proto.toJSON;
    }
  }
  assert.throws(() => canonicalString(nest(65, 1, true)), { name: 'CanonicalJsonError', message: 'JSON nested too deeply' });
  assert.equal(canonicalString(nest(64, 1, true)), '['.repeat(64) + '1' + ']'.repeat(64));
  assert.throws(() => canonicalString({ a: Infinity }), {
    name: 'CanonicalJsonError',
    message: 'canonical JSON cannot encode NaN or Infinity',
  });
  assert.throws(() => canonicalString({ a: 2 ** 53 }), {
    name: 'CanonicalJsonError',
    message: 'integer 9007199254740992 is outside the exactly representable range',
  });
  assert.equal(canonicalString({ 10: 1, 9: 2 }), '{"10":1,"9":2}');
  assert.equal(canonicalString({ '\uffff': 2, '😀': 1 }), '{"\uffff":2,"😀":1}');
  assert.equal(canonicalString({ a: 'nl\n"' }), '{"a":"nl\n\\""}');
});

test('a parsed canonical targets file takes the fast path and comes out byte for byte', () => {
  const targets: Record<string, unknown> = {};
  for (let i = 0; i < 300; i++)
    targets[`tag-${i}`] = { hashes: { sha256: createHash('sha256').update(String(i)).digest('base64') }, length: 1000 + i };
  const text = canonicalStringSlow({
    _type: 'Targets',
    delegations: { keys: {}, roles: [] },
    expires: '2030-01-01T00:00:00Z',
    targets,
    version: 3,
  });
  const { result, calls } = countingStringify(() => canonicalString(parseJson(text)));
  assert.equal(result, text);
  assert.equal(calls, 1);
  assert.ok(canonicalBytes(parseJson(text)).equals(Buffer.from(text, 'utf8')));
});
