import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { canonicalBytes, canonicalString, compareUtf8, parseJson } from '../../src/core/json/canonical.js';
import { keyId, makeKey } from '../../src/core/crypto/keys.js';

const FIX = new URL('../fixtures/notary/metadata/', import.meta.url);

test('V1: ed25519 key of 32 zero bytes has notary\'s canonical form and key ID', () => {
  const k = makeKey('ed25519', Buffer.alloc(32));
  assert.equal(canonicalString(k), '{"keytype":"ed25519","keyval":{"private":null,"public":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}');
  assert.equal(keyId(k), '06256955f08f0df5598a5d102b828847052eddce612c559400d7e9b7c329f594');
});

test('V2: ecdsa key of the P-256 generator has notary\'s key ID', () => {
  const spki = 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==';
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
  assert.equal(canonicalString({ version: 2, expires: '2030-01-02T03:04:05.12-08:00', _type: 'Targets' }), '{"_type":"Targets","expires":"2030-01-02T03:04:05.12-08:00","version":2}');
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
  assert.equal(canonicalString({ b: { '😀': [1, { y: 1, x: 2 }], '\ue000': null }, a: true }), '{"a":true,"b":{"\ue000":null,"😀":[1,{"x":2,"y":1}]}}');
  // Without astral characters the order is plain code unit order, upper case before lower.
  assert.equal(canonicalString({ b: 1, B: 2, 'b/a': 3, 'b-a': 4, '': 5 }), '{"":5,"B":2,"b":1,"b-a":4,"b/a":3}');
  // Undefined members are left out; arrays keep their order.
  assert.equal(canonicalString({ b: undefined, a: [3, 1, 2] }), '{"a":[3,1,2]}');
});
