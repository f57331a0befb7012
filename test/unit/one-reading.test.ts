// Security issue 13, V5 and V6 in the pure core: signed JSON has one reading (no duplicate keys,
// no field names that Go's case-insensitive decoder would take for another field), key material
// and signatures are canonical base64, and thresholds count public keys rather than key IDs.
import assert from 'node:assert/strict';
import { createPublicKey, ECDH, type KeyObject } from 'node:crypto';
import { test } from 'node:test';
import { decodeCanonicalBase64, keyId, keyIdentity, makeKey, parseKey, type TufKey } from '../../src/core/crypto/keys.js';
import { generateSigner, LocalSigner } from '../../src/core/crypto/signer.js';
import { createCertificateForKey } from '../../src/core/crypto/x509.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { duplicateKey } from '../../src/core/json/duplicates.js';
import { MalformedMetadataError, TufValidationError } from '../../src/core/tuf/errors.js';
import { isValidGun } from '../../src/core/tuf/gun.js';
import { Metadata, checkDelegationList, countValidSignatures, type TargetsBody } from '../../src/core/tuf/metadata.js';
import { planPublish } from '../../src/core/tuf/update.js';
import { resolveTarget, verifyRepository } from '../../src/core/tuf/verify.js';
import { newRootSigner, rootBody, sign, snapshotBody, targetMeta, targetsBody } from '../helpers/tuf-builder.js';

/** The error Metadata.parse throws for `text` as `role`, or 'parsed'. */
function parseError(role: string, text: string | Buffer): string {
  try {
    Metadata.parse(role, Buffer.from(text), 'ErrBadTargets');
    return 'parsed';
  } catch (e) {
    assert.ok(e instanceof TufValidationError && e.kind === 'ErrBadTargets', String(e));
    return e.message;
  }
}

const SIGNED = '{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2099-01-01T00:00:00Z","targets":{},"version":1}';
/** A targets document whose `signed` text is `signed` (raw, so duplicates and key order survive). */
const doc = (signed: string, signatures = '[]') => `{"signed":${signed},"signatures":${signatures}}`;
const H = targetMeta('image');
const FM = JSON.stringify(H);

test('V5: duplicate keys refused', () => {
  assert.equal(parseError('targets', doc(SIGNED)), 'parsed');
  assert.equal(duplicateKey('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}'), undefined);
  assert.equal(duplicateKey('{"a":1,"a":2}'), '"a" in the top-level object');
  assert.equal(duplicateKey('{"a":{"b":[0,{"x":"\\"","x":1}]}}'), '"x" in a.b[1]');
  // Keys are compared as JSON reads them: an escaped spelling is the same key.
  assert.equal(duplicateKey('{"targets":1,"t\\u0061rgets":2}'), '"targets" in the top-level object');
  // Quotes, colons and braces inside strings are not structure.
  assert.equal(duplicateKey('{"a":"\\\\","b":"{\\"a\\":1,\\"a\\":2}","c":"x:"}'), undefined);
  const cases: Array<[string, RegExp]> = [
    [doc(SIGNED.replace('"version":1', '"version":1,"version":2')), /^targets: duplicate key "version" in signed$/],
    [
      doc(SIGNED.replace('"targets":{}', `"targets":{"v1":${FM}},"targets":{"v1":${JSON.stringify(targetMeta('evil'))}}`)),
      /duplicate key "targets" in signed/,
    ],
    [doc(SIGNED.replace('"targets":{}', `"targets":{"v1":${FM},"v1":${FM}}`)), /duplicate key "v1" in signed.targets$/],
    [
      doc(SIGNED.replace('"targets":{}', `"targets":{"v1":{"hashes":{"sha256":"${H.hashes.sha256}","sha256":"AAAA"},"length":5}}`)),
      /duplicate key "sha256" in signed.targets.v1.hashes$/,
    ],
    [doc(SIGNED).replace('{"signed"', '{"signatures":[],"signed"'), /duplicate key "signatures" in the top-level object/],
    [doc(SIGNED, '[{"keyid":"a","keyid":"b","method":"ecdsa","sig":"AAAA"}]'), /duplicate key "keyid" in signatures\[0\]/],
  ];
  for (const [text, want] of cases) assert.match(parseError('targets', text), want, text);
  // Invalid UTF-8 is read differently by different decoders: refused too.
  const bad = Buffer.from(doc(SIGNED.replace('"targets":{}', `"targets":{"v\u00e9":${FM}}`)));
  bad[bad.indexOf(0xc3)] = 0xff;
  assert.match(parseError('targets', bad), /not valid UTF-8/);
});

test('V5: case-variant field names refused', () => {
  const evil = JSON.stringify(targetMeta('evil'));
  const cases: Array<[string, string]> = [
    // Go's encoding/json keeps the last of "targets" and "Targets" and JSON.parse the other.
    [SIGNED.replace('"targets":{}', `"targets":{"v1":${FM}},"Targets":{"v1":${evil}}`), 'signed: key "Targets" is not the field "targets"'],
    [SIGNED.replace('"targets":{}', `"TARGETS":{"v1":${evil}}`), 'signed: key "TARGETS" is not the field "targets"'],
    [SIGNED.replace('"expires"', '"Expires":"2000-01-01T00:00:00Z","expires"'), 'signed: key "Expires" is not the field "expires"'],
    [SIGNED.replace('"_type"', '"_TYPE":"Root","_type"'), 'signed: key "_TYPE" is not the field "_type"'],
    // Go folds ſ (U+017F) to s and K (U+212A) to k.
    [SIGNED.replace('"version":1', '"version":1,"ver\u017fion":2'), 'signed: key "ver\u017fion" is not the field "version"'],
    [
      SIGNED.replace('"targets":{}', `"targets":{"v1":{"hashes":${JSON.stringify(H.hashes)},"length":5,"Length":6}}`),
      'signed.targets.v1: key "Length" is not the field "length"',
    ],
    [SIGNED.replace('"keys":{}', '"Keys":{}'), 'signed.delegations: key "Keys" is not the field "keys"'],
    [
      SIGNED.replace('"roles":[]', '"roles":[{"keyids":[],"name":"targets/a","Paths":["x"],"threshold":1}]'),
      'signed.delegations.roles[0]: key "Paths" is not the field "paths"',
    ],
  ];
  for (const [signed, want] of cases)
    assert.equal(parseError('targets', doc(signed)), `targets: ${want} (field names are case-sensitive)`, signed);
  const k = generateSigner('ecdsa').key;
  const keyText = `{"\u212Aeytype":"rsa","keytype":"ecdsa","KeyVal":{"public":"x"},"keyval":{"private":null,"public":"${k.keyval.public}"}}`;
  assert.match(
    parseError('targets', doc(SIGNED.replace('"keys":{}', `"keys":{"${keyId(k)}":${keyText}}`))),
    /signed.delegations.keys(\.|\["?)[0-9a-f]{64}"?\]?: key "\u212Aeytype" is not the field "keytype"/,
  );
  assert.match(
    parseError('targets', doc(SIGNED, '[{"keyid":"a","KeyID":"b","method":"ecdsa","sig":"AAAA"}]')),
    /^targets: signatures\[0\]: key "KeyID" is not the field "keyid"/,
  );
  // Outside `signed` every other key is already refused as unsigned data, case variants included.
  for (const extra of ['"Signed":{}', '"SIGNATURES":[]']) {
    assert.throws(
      () => Metadata.parse('targets', Buffer.from(doc(SIGNED).replace('{"signed"', `{${extra},"signed"`))),
      MalformedMetadataError,
    );
  }
  // Names in maps are data, not fields: a target called "Targets" or a hash called "SHA256" is fine.
  assert.equal(
    parseError(
      'targets',
      doc(SIGNED.replace('"targets":{}', `"targets":{"Targets":{"hashes":{"SHA256":"AAAA","sha256":"${H.hashes.sha256}"},"length":5}}`)),
    ),
    'parsed',
  );
  // And `custom` is opaque to Go (json.RawMessage).
  assert.equal(
    parseError(
      'targets',
      doc(
        SIGNED.replace(
          '"targets":{}',
          `"targets":{"v1":{"custom":{"Length":1,"length":2},"hashes":{"sha256":"${H.hashes.sha256}"},"length":5}}`,
        ),
      ),
    ),
    'parsed',
  );
});

/** The same EC public key as SPKI DER with a compressed point: other bytes, another key ID. */
function compressedSpki(pub: KeyObject): Buffer {
  const jwk = pub.export({ format: 'jwk' });
  const raw = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const point = ECDH.convertKey(raw, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
  return Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), point]);
}

test('V6: a non-canonical base64 key gets no second key ID / is refused', () => {
  assert.ok(decodeCanonicalBase64('AAAA'));
  assert.ok(decodeCanonicalBase64('AAE='));
  for (const bad of ['AAAA=', 'AAF=', 'AAE', 'AA E=', 'AAE=\n', '-_8=', 'AAE==']) assert.equal(decodeCanonicalBase64(bad), undefined, bad);
  const k = generateSigner('ecdsa').key;
  const pub = k.keyval.public;
  assert.ok(pub.endsWith('='), 'a P-256 SPKI (91 bytes) ends in padding');
  // Node decodes each of these to the very same bytes, and each would hash to another key ID.
  for (const variant of [
    `${pub}=`,
    `${pub.slice(0, -2)}${String.fromCharCode(pub.charCodeAt(pub.length - 2) + 1)}=`,
    pub.replace(/=+$/, ''),
    `${pub.slice(0, 8)}\n${pub.slice(8)}`,
  ]) {
    assert.ok(Buffer.from(variant, 'base64').equals(Buffer.from(pub, 'base64')), variant);
    assert.throws(() => parseKey({ keytype: 'ecdsa', keyval: { private: null, public: variant } }), /not canonical base64/);
    const other = { keytype: 'ecdsa' as const, keyval: { private: null, public: variant } };
    const signed = SIGNED.replace('"keys":{}', `"keys":${JSON.stringify({ [keyId(other)]: other })}`);
    assert.match(parseError('targets', doc(signed)), /not canonical base64/);
  }
  assert.deepEqual(parseKey(k), k);
  // Signatures and hashes are base64 in Go's structs as well.
  assert.match(
    parseError('targets', doc(SIGNED, '[{"keyid":"a","method":"ecdsa","sig":"AAAA="}]')),
    /signatures\[0\]: sig is not canonical base64/,
  );
  assert.match(
    parseError(
      'targets',
      doc(SIGNED.replace('"targets":{}', `"targets":{"v1":{"hashes":{"sha256":"${H.hashes.sha256!.replace(/=$/, '')}"},"length":5}}`)),
    ),
    /hash sha256 is not canonical base64/,
  );
});

test('V6: one key listed twice (raw and re-encoded) does not meet a threshold of 2', async () => {
  const s = generateSigner('ecdsa');
  const pub = createPublicKey(s.privateKey);
  const recoded = makeKey('ecdsa', compressedSpki(pub));
  const ca = generateSigner('ecdsa');
  const cert = (
    await createCertificateForKey({ commonName: 'targets/a', privateKey: ca.privateKey, publicKey: pub, issuerCommonName: 'another CA' })
  ).key;
  const ids = [s.id, keyId(recoded), keyId(cert)];
  assert.equal(new Set(ids).size, 3, 'three key IDs');
  assert.equal(new Set([s.key, recoded, cert].map(keyIdentity)).size, 1, 'one public key');
  const keys: Record<string, TufKey> = { [ids[0]!]: s.key, [ids[1]!]: recoded, [ids[2]!]: cert };
  const body = targetsBody({ version: 1 });
  const msg = canonicalBytes(body);
  const signers = [s, new LocalSigner(s.privateKey, recoded), new LocalSigner(s.privateKey, cert)];
  const signatures = await Promise.all(
    signers.map(async (x) => ({ keyid: x.id, method: 'ecdsa', sig: (await x.sign(msg)).toString('base64') })),
  );
  assert.equal(countValidSignatures(msg, signatures, keys, ids).size, 1);
  const other = generateSigner('ecdsa');
  const withOther = { ...keys, [other.id]: other.key };
  const sigOther = { keyid: other.id, method: 'ecdsa', sig: (await other.sign(msg)).toString('base64') };
  assert.equal(countValidSignatures(msg, [...signatures, sigOther], withOther, [...ids, other.id]).size, 2);
  // verifyThreshold: the same file signed under two IDs of one key misses a threshold of 2.
  const file = Buffer.from(JSON.stringify({ signed: body, signatures }));
  const md = Metadata.parse<TargetsBody>('targets', file);
  assert.throws(() => md.verifyThreshold(keys, { keyids: ids.slice(0, 2), threshold: 2 }, 'ErrBadTargets'), /did not meet threshold/);
  // A role listing one key twice is refused outright: in a delegation...
  for (const pair of [
    [ids[0]!, ids[1]!],
    [ids[0]!, ids[2]!],
    [ids[1]!, ids[2]!],
  ]) {
    const bad = checkDelegationList('targets', { keys, roles: [{ name: 'targets/a', keyids: pair, threshold: 1 }] });
    assert.equal(bad, `delegation targets/a: keys ${pair[0]} and ${pair[1]} are the same public key`);
  }
  // ...and in a root.
  const gun = 'example.com/v6';
  const rootSigner = await newRootSigner(gun);
  const rootBytes = await sign(
    rootBody({
      version: 1,
      root: [rootSigner.key],
      targets: [s.key, recoded],
      snapshot: [other.key],
      timestamp: [other.key],
      thresholds: { targets: 2 },
    }),
    [rootSigner],
  );
  const t1 = await sign(targetsBody({ version: 1 }), [s, signers[1]!]);
  const snap = await sign(snapshotBody({ version: 1, files: { root: rootBytes, targets: t1 } }), [other]);
  const state = { targets: new Map<string, Buffer>(), latestVersions: new Map<string, number>() };
  const keyring = { signersFor: async () => [other] };
  await assert.rejects(
    planPublish(
      gun,
      new Map([
        ['root', rootBytes],
        ['targets', t1],
        ['snapshot', snap],
      ]),
      state,
      keyring,
      Date.now(),
    ),
    (e: unknown) =>
      e instanceof TufValidationError &&
      e.kind === 'ErrBadRoot' &&
      /role targets lists keys [0-9a-f]+ and [0-9a-f]+, which are the same public key/.test(e.message),
  );
});

test('V6: the client-side verifier counts one key once, in role thresholds and in named policy signers', async () => {
  const gun = 'example.com/v6-verify';
  const k = generateSigner('ecdsa');
  const twin = new LocalSigner(k.privateKey, makeKey('ecdsa', compressedSpki(createPublicKey(k.privateKey))));
  const root = await newRootSigner(gun);
  const [snapshot, timestamp] = [generateSigner('ecdsa'), generateSigner('ecdsa')];
  const rootBytes = await sign(
    rootBody({ version: 1, root: [root.key], targets: [k.key], snapshot: [snapshot.key], timestamp: [timestamp.key] }),
    [root],
  );
  // As a hostile server could serve them: targets/qa lists the key under both IDs with threshold 2.
  const tb = targetsBody({ version: 1, targets: { v1: targetMeta('one') } });
  tb.delegations = {
    keys: { [k.id]: k.key, [twin.id]: twin.key },
    roles: [
      { name: 'targets/releases', keyids: [twin.id], threshold: 1, paths: [''] },
      { name: 'targets/qa', keyids: [k.id, twin.id], threshold: 2, paths: [''] },
    ],
  };
  const roles = new Map<string, Buffer>([
    ['targets', await sign(tb, [k])],
    ['targets/releases', await sign(targetsBody({ version: 1, targets: { v1: targetMeta('one') } }), [twin])],
    ['targets/qa', await sign(targetsBody({ version: 1, targets: { v3: targetMeta('three') } }), [k, twin])],
  ]);
  const snap = await sign(snapshotBody({ version: 1, files: new Map([['root', rootBytes], ...roles]) }), [snapshot]);
  const ts = await sign(
    {
      _type: 'Timestamp',
      expires: '2099-01-01T00:00:00Z',
      meta: { snapshot: snapshotBody({ version: 1, files: { snapshot: snap } }).meta.snapshot! },
      version: 1,
    },
    [timestamp],
  );
  const repo = verifyRepository({ gun, roots: [rootBytes], timestamp: ts, snapshot: snap, roles, nowMs: Date.now() });
  assert.ok(repo.ok, JSON.stringify(repo));
  assert.deepEqual(
    repo.skipped.map((x) => `${x.role} ${x.reason}`),
    ['targets/qa threshold-not-met'],
  );
  assert.equal(resolveTarget(repo, 'v3', { roles: ['targets/qa'] }).ok, false);
  // v1 is signed in targets by k and in targets/releases by its twin ID: one signer, not two.
  const twoSigners = resolveTarget(repo, 'v1', { roles: ['targets/releases', 'targets'], signers: [k.id, twin.id], threshold: 2 });
  assert.ok(!twoSigners.ok && twoSigners.reason === 'policy-unmet', JSON.stringify(twoSigners));
  assert.ok(resolveTarget(repo, 'v1', { roles: ['targets/releases', 'targets'], signers: [k.id, twin.id], threshold: 1 }).ok);
});

test('GUN named like a role is refused', () => {
  for (const gun of ['root', 'targets', 'snapshot', 'timestamp', 'targets/releases', 'targets/a/b', 'Targets/x', 'ROOT', 'timestamp/x'])
    assert.equal(isValidGun(gun), false, gun);
  for (const gun of [
    'docker.io/library/alpine',
    'localhost:5000/team/app',
    'example.com/targets',
    'example.com/root/app',
    'rooty/app',
    'targets.example.com/app',
    'targets:5000/app',
    'a/timestamp',
  ]) {
    assert.equal(isValidGun(gun), true, gun);
  }
});
