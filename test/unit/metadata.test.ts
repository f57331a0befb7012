import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { canonicalKeyId, keyId, verifySignature, type TufKey } from '../../src/core/crypto/keys.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { MalformedMetadataError, TufValidationError } from '../../src/core/tuf/errors.js';
import {
  Metadata,
  checkFileMeta,
  countValidSignatures,
  signBody,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from '../../src/core/tuf/metadata.js';

const fix = (n: string) => readFileSync(new URL(`../fixtures/notary/metadata/${n}`, import.meta.url));
const root = Metadata.parse<RootBody>('root', fix('root.json'));

test("fixture root, targets, snapshot and timestamp verify against the root's keys", () => {
  const keys = root.body.keys;
  assert.equal(root.verifyThreshold(keys, root.body.roles.root, 'ErrBadRoot').size, 1);
  Metadata.parse<TargetsBody>('targets', fix('targets.json')).verifyThreshold(keys, root.body.roles.targets, 'ErrBadTargets');
  Metadata.parse<SnapshotBody>('snapshot', fix('snapshot.json')).verifyThreshold(keys, root.body.roles.snapshot, 'ErrBadSnapshot');
  Metadata.parse<TimestampBody>('timestamp', fix('timestamp.json')).verifyThreshold(keys, root.body.roles.timestamp, 'ErrValidation');
});

test('the hash chain of the fixtures holds: timestamp names snapshot, snapshot names root and targets', () => {
  const ts = Metadata.parse<TimestampBody>('timestamp', fix('timestamp.json'));
  const snap = Metadata.parse<SnapshotBody>('snapshot', fix('snapshot.json'));
  assert.equal(checkFileMeta('snapshot', fix('snapshot.json'), ts.body.meta.snapshot, true), undefined);
  assert.equal(checkFileMeta('root', fix('root.json'), snap.body.meta.root!), undefined);
  assert.equal(checkFileMeta('targets', fix('targets.json'), snap.body.meta.targets!), undefined);
  assert.match(checkFileMeta('targets', fix('root.json'), snap.body.meta.targets!) ?? '', /sha256 checksum for targets did not match/);
});

test('delegation files verify against the keys their parent delegates to', () => {
  const targets = Metadata.parse<TargetsBody>('targets', fix('targets.json'));
  for (const [name, file] of [
    ['targets/releases', 'targets-releases.json'],
    ['targets/qa', 'targets-qa.json'],
  ] as const) {
    const entry = targets.body.delegations.roles.find((r) => r.name === name);
    if (!entry) continue;
    Metadata.parse<TargetsBody>(name, fix(file)).verifyThreshold(targets.body.delegations.keys, entry, 'ErrBadTargets');
  }
  assert.ok(targets.body.delegations.roles.length > 0);
});

test('x509 root key: TUF ID hashes the PEM, canonical ID hashes the inner key', () => {
  const id = root.body.roles.root.keyids[0]!;
  const k = root.body.keys[id]!;
  assert.equal(k.keytype, 'ecdsa-x509');
  assert.equal(keyId(k), id);
  assert.notEqual(canonicalKeyId(k), id);
  assert.match(canonicalKeyId(k), /^[0-9a-f]{64}$/);
});

test('keyId: a key object changed after its ID was taken gets the ID of what it holds now', () => {
  const id = root.body.roles.root.keyids[0]!;
  const k = structuredClone(root.body.keys[id]!);
  assert.equal(keyId(k), id);
  assert.equal(keyId(k), id); // remembered
  const other = Object.values(root.body.keys).find((x) => x.keytype === 'ecdsa')!;
  k.keyval.public = other.keyval.public;
  assert.notEqual(keyId(k), id, 'a new public value');
  k.keytype = 'ecdsa';
  assert.equal(keyId(k), keyId(structuredClone(other)), 'a new type too');
});

test('a tampered signed body fails the threshold; so does an empty signature list', () => {
  const raw = JSON.parse(fix('targets.json').toString()) as { signed: { version: number }; signatures: unknown[] };
  raw.signed.version += 1;
  const tampered = Metadata.parse<TargetsBody>('targets', Buffer.from(JSON.stringify(raw)));
  assert.throws(
    () => tampered.verifyThreshold(root.body.keys, root.body.roles.targets, 'ErrBadTargets'),
    /did not meet threshold for targets/,
  );
  raw.signatures = [];
  const unsigned = Metadata.parse<TargetsBody>('targets', Buffer.from(JSON.stringify(raw)));
  assert.throws(() => unsigned.verifyThreshold(root.body.keys, root.body.roles.targets, 'ErrBadTargets'), /data has no signatures/);
});

test('the algorithm comes from the key: an ecdsa signature labelled eddsa, or vice versa, never verifies', async () => {
  const ec = generateSigner('ecdsa');
  const ed = generateSigner('ed25519');
  const msg = Buffer.from('message');
  const ecSig = await ec.sign(msg);
  assert.ok(verifySignature(ec.key, msg, 'ecdsa', ecSig));
  assert.ok(verifySignature(ec.key, msg, 'ECDSA', ecSig), 'method is case-insensitive');
  assert.ok(!verifySignature(ec.key, msg, 'eddsa', ecSig));
  assert.ok(!verifySignature(ec.key, msg, 'rsapss', ecSig));
  const edSig = await ed.sign(msg);
  assert.ok(verifySignature(ed.key, msg, 'eddsa', edSig));
  assert.ok(!verifySignature(ed.key, msg, 'ecdsa', edSig));
  // A key whose declared type lies about its contents is refused outright.
  const liar: TufKey = { keytype: 'ed25519', keyval: { private: null, public: ec.key.keyval.public } };
  assert.ok(!verifySignature(liar, msg, 'eddsa', edSig));
});

test('ECDSA signatures are raw r||s of 64 bytes; DER-encoded ones are refused', async () => {
  const { sign } = await import('node:crypto');
  const ec = generateSigner('ecdsa');
  const msg = Buffer.from('m');
  const der = sign('sha256', msg, ec.privateKey);
  assert.ok(!verifySignature(ec.key, msg, 'ecdsa', der));
  assert.equal((await ec.sign(msg)).length, 64);
});

test('RSA keys under 2048 bits are refused', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { tufKeyFromPublic } = await import('../../src/core/crypto/signer.js');
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const { publicKeyObject } = await import('../../src/core/crypto/keys.js');
  assert.throws(() => publicKeyObject(tufKeyFromPublic(publicKey)), /at least 2048/);
});

test('signBody output parses back and verifies; unsigned top-level fields are refused', async () => {
  const s = generateSigner('ed25519');
  const body: TimestampBody = {
    _type: 'Timestamp',
    expires: '2099-01-01T00:00:00Z',
    meta: { snapshot: { hashes: { sha256: Buffer.alloc(32).toString('base64') }, length: 1 } },
    version: 3,
  };
  const bytes = await signBody(body, [s]);
  const md = Metadata.parse<TimestampBody>('timestamp', bytes);
  md.verifyThreshold({ [s.id]: s.key }, { keyids: [s.id], threshold: 1 }, 'ErrValidation');
  const extra = Buffer.from(JSON.stringify({ ...JSON.parse(bytes.toString()), unsigned: 1 }));
  assert.throws(() => Metadata.parse('timestamp', extra), MalformedMetadataError);
});

test('shape errors name the role and the problem', () => {
  const bad = Buffer.from(
    JSON.stringify({ signed: { _type: 'Targets', version: 0, expires: '2099-01-01T00:00:00Z', targets: {} }, signatures: [] }),
  );
  assert.throws(
    () => Metadata.parse('targets', bad, 'ErrBadTargets'),
    (e: unknown) => e instanceof TufValidationError && e.kind === 'ErrBadTargets' && /version/.test(e.message),
  );
  const wrongType = Buffer.from(JSON.stringify({ signed: { _type: 'Root', version: 1, expires: '2099-01-01T00:00:00Z' }, signatures: [] }));
  assert.throws(() => Metadata.parse('targets', wrongType), /expected _type Targets/);
  assert.throws(() => Metadata.parse('targets', Buffer.from('not json')), MalformedMetadataError);
});

test('RSA keys sign with PSS and verify as rsapss; PKCS#1 v1.5 signatures verify too', async () => {
  const { sign, constants } = await import('node:crypto');
  const r = generateSigner('rsa');
  const msg = Buffer.from('rsa message');
  const pss = await r.sign(msg);
  assert.ok(verifySignature(r.key, msg, 'rsapss', pss));
  assert.ok(!verifySignature(r.key, Buffer.from('other'), 'rsapss', pss));
  const v15 = sign('sha256', msg, { key: r.privateKey, padding: constants.RSA_PKCS1_PADDING });
  assert.ok(verifySignature(r.key, msg, 'rsapkcs1v15', v15));
  assert.ok(!verifySignature(r.key, msg, 'ecdsa', pss));
});

test('a delegation emptied of keys (Go writes "keyids": null) parses; too few keys for the threshold does not', async () => {
  const { checkDelegationList } = await import('../../src/core/tuf/metadata.js');
  const body = {
    _type: 'Targets',
    version: 2,
    expires: '2099-01-01T00:00:00Z',
    targets: {},
    delegations: { keys: {}, roles: [{ name: 'targets/releases', keyids: null, threshold: 1, paths: [''] }] },
  };
  const md = Metadata.parse<TargetsBody>('targets', Buffer.from(JSON.stringify({ signed: body, signatures: [] })));
  assert.deepEqual(md.body.delegations.roles[0]!.keyids, []);
  assert.equal(checkDelegationList('targets', md.body.delegations), undefined);
  const k = generateSigner('ecdsa');
  const two = { keys: { [k.id]: k.key }, roles: [{ name: 'targets/qa', keyids: [k.id], threshold: 2 }] };
  assert.match(checkDelegationList('targets', two) ?? '', /threshold 2 is larger than its 1 keys/);
});

test('signBody writes exactly canonicalBytes({ signed, signatures })', async () => {
  const signers = [generateSigner('ecdsa'), generateSigner('ed25519')];
  const body = {
    _type: 'Targets',
    delegations: { keys: {}, roles: [] },
    expires: '2030-01-01T00:00:00Z',
    targets: { 'b\\"q': { hashes: { sha256: 'AAAA' }, length: 1 }, a: { hashes: { sha256: 'BBBB' }, length: 2 } },
    version: 3,
  };
  const bytes = await signBody(body as never, signers);
  const doc = JSON.parse(bytes.toString('utf8')) as { signed: unknown; signatures: unknown };
  assert.deepEqual(doc.signed, body);
  assert.ok(bytes.equals(canonicalBytes({ signed: body, signatures: doc.signatures } as never)), bytes.toString('utf8'));
});

const targetsFile = (targets: unknown) =>
  Buffer.from(JSON.stringify({ signed: { _type: 'Targets', expires: '2099-01-01T00:00:00Z', targets, version: 1 }, signatures: [] }));

test('targets file meta: custom kept, unknown fields dropped, null or missing targets are empty', () => {
  const md = Metadata.parse<TargetsBody>(
    'targets',
    targetsFile({
      a: { custom: { x: [1, 'y'] }, hashes: { sha256: 'AAAA', sha512: 'BBBB' }, length: 5 },
      b: { custom: null, hashes: {}, length: 0 },
      c: { extra: true, hashes: { sha256: 'CCCC' }, length: 1 },
    }),
  );
  // The typed map has no prototype (see readBody); compare its entries.
  assert.deepEqual(
    { ...md.body.targets },
    {
      a: { length: 5, hashes: { sha256: 'AAAA', sha512: 'BBBB' }, custom: { x: [1, 'y'] } },
      b: { length: 0, hashes: {}, custom: null },
      c: { length: 1, hashes: { sha256: 'CCCC' } },
    },
  );
  assert.deepEqual(Object.keys(md.body.targets.a!), ['length', 'hashes', 'custom']);
  assert.deepEqual({ ...Metadata.parse<TargetsBody>('targets', targetsFile(null)).body.targets }, {});
  const none = Buffer.from(JSON.stringify({ signed: { _type: 'Targets', expires: '2099-01-01T00:00:00Z', version: 1 }, signatures: [] }));
  assert.deepEqual({ ...Metadata.parse<TargetsBody>('targets', none).body.targets }, {});
});

test('editing the typed targets body leaves the signed tree, and so the message, unchanged', () => {
  const md = Metadata.parse<TargetsBody>(
    'targets',
    targetsFile({ a: { hashes: { sha256: 'AAAA' }, length: 5 }, b: { hashes: { sha256: 'BBBB' }, length: 6 } }),
  );
  const before = md.message().toString('utf8');
  md.body.targets.a!.hashes.sha256 = 'ZZZZ';
  md.body.targets.a!.length = 99;
  delete md.body.targets.b;
  md.body.targets.c = { hashes: {}, length: 1 };
  assert.equal(md.message().toString('utf8'), before);
  assert.equal(
    before,
    '{"_type":"Targets","expires":"2099-01-01T00:00:00Z","targets":{"a":{"hashes":{"sha256":"AAAA"},"length":5},"b":{"hashes":{"sha256":"BBBB"},"length":6}},"version":1}',
  );
});

test('file meta shape errors keep their messages', () => {
  const err = (role: string, bytes: Buffer) => {
    try {
      Metadata.parse(role, bytes, 'ErrBadTargets');
    } catch (e) {
      assert.ok(e instanceof TufValidationError && e.kind === 'ErrBadTargets', String(e));
      return e.message;
    }
    return 'parsed';
  };
  const h = { sha256: 'AAAA' };
  assert.equal(err('targets', targetsFile({ ok: { hashes: h, length: 1 }, a: 1 })), 'targets: target a: file meta is not an object');
  assert.equal(err('targets', targetsFile({ a: [] })), 'targets: target a: file meta is not an object');
  assert.equal(err('targets', targetsFile({ a: { hashes: h, length: -1 } })), 'targets: target a: bad length');
  assert.equal(err('targets', targetsFile({ a: { hashes: h, length: 1.5 } })), 'targets: target a: bad length');
  assert.equal(err('targets', targetsFile({ a: { length: 1 } })), 'targets: target a: hashes missing');
  assert.equal(
    err('targets', targetsFile({ a: { hashes: { sha256: 'AAAA', sha512: 5 }, length: 1 } })),
    'targets: target a: hash sha512 is not a string',
  );
  assert.equal(err('targets', targetsFile([])), 'targets: targets is not an object');
  const snap = Buffer.from(
    JSON.stringify({
      signed: { _type: 'Snapshot', expires: '2099-01-01T00:00:00Z', meta: { root: { hashes: h, length: 'x' } }, version: 1 },
      signatures: [],
    }),
  );
  assert.equal(err('snapshot', snap), 'snapshot: snapshot meta root: bad length');
  const ts = Buffer.from(
    JSON.stringify({
      signed: { _type: 'Timestamp', expires: '2099-01-01T00:00:00Z', meta: { snapshot: { length: 1 } }, version: 1 },
      signatures: [],
    }),
  );
  assert.equal(err('timestamp', ts), 'timestamp: timestamp meta snapshot: hashes missing');
  assert.equal(
    err('targets', Buffer.from(JSON.stringify({ signed: { _type: 'Root', expires: '2099-01-01T00:00:00Z', version: 1 }, signatures: [] }))),
    'targets: expected _type Targets, found "Root"',
  );
});

test('target and snapshot meta names are own entries of the typed body: "__proto__" is kept, "constructor" is not found', () => {
  // JSON.parse makes "__proto__" an own member, as any JSON reader does.
  const targets = JSON.parse(
    '{"__proto__":{"hashes":{"sha256":"AAAA"},"length":5},"v1":{"hashes":{"sha256":"BBBB"},"length":6}}',
  ) as unknown;
  const md = Metadata.parse<TargetsBody>('targets', targetsFile(targets));
  assert.deepEqual(Object.keys(md.body.targets), ['__proto__', 'v1']);
  assert.ok(Object.hasOwn(md.body.targets, '__proto__'));
  assert.deepEqual({ ...md.body.targets['__proto__'] }, { length: 5, hashes: { sha256: 'AAAA' } });
  for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'length', 'hashes'])
    assert.equal(md.body.targets[name], undefined, name);
  // The typed map and the signed tree's still canonicalise to the same text.
  assert.equal(canonicalBytes(md.body.targets).toString(), canonicalBytes((md.signedTree as { targets: unknown }).targets).toString());

  const meta = JSON.parse(
    '{"__proto__":{"hashes":{"sha256":"AAAA"},"length":1},"root":{"hashes":{"sha256":"BBBB"},"length":2}}',
  ) as unknown;
  const snap = Metadata.parse<SnapshotBody>(
    'snapshot',
    Buffer.from(JSON.stringify({ signed: { _type: 'Snapshot', expires: '2099-01-01T00:00:00Z', meta, version: 1 }, signatures: [] })),
  );
  assert.deepEqual(Object.keys(snap.body.meta), ['__proto__', 'root']);
  assert.equal(snap.body.meta.targets, undefined);
  assert.equal(snap.body.meta['constructor'], undefined);
});

test('countValidSignatures looks keys up as own entries: a key ID named like an Object.prototype member is an unknown key, never a crash', async () => {
  const s = generateSigner('ecdsa');
  const message = Buffer.from('message');
  const sig = (await s.sign(message)).toString('base64');
  for (const id of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    // A plain object (as a root's keys map built elsewhere would be) and an allowed list naming the ID.
    const keys: Record<string, TufKey> = { [s.id]: s.key };
    assert.deepEqual([...countValidSignatures(message, [{ keyid: id, method: 'ecdsa', sig }], keys, [id, s.id])], []);
  }
  assert.deepEqual([...countValidSignatures(message, [{ keyid: s.id, method: 'ecdsa', sig }], { [s.id]: s.key }, [s.id])], [s.id]);
});
