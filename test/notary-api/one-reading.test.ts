// Security issue 13 over real HTTP: publishes whose JSON Go's notary would read otherwise (V5),
// roles that list one public key twice or key material in non-canonical base64 (V6), a client
// snapshot whose lengths do not match the stored files (V7), and GUNs named like roles. Each is
// refused with a 400 that says why, and nothing stored changes.
import assert from 'node:assert/strict';
import { createPublicKey, ECDH, type KeyObject } from 'node:crypto';
import { after, before, test } from 'node:test';
import { keyId, makeKey, type TufKey } from '../../src/core/crypto/keys.js';
import { generateSigner, LocalSigner } from '../../src/core/crypto/signer.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { initRepo, publish, raw, sign, targetMeta, targetsBody, tufPath, type TufRepo } from '../helpers/tuf-builder.js';
import { assertError, invalidUpdate, newGun, rawRequest, startServer, type Server } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let s: Server;
let client: TufRepo;
let server: TufRepo;
before(async () => {
  s = await startServer();
  client = await initRepo(s.agent, newGun('one-client'));
  server = await initRepo(s.agent, newGun('one-server'), { serverSnapshot: true });
  for (const r of [client, server]) assert.equal((await r.addTarget('v1', 'honest')).status, 200);
});
after(() => s.stop());

async function refused(repo: TufRepo, files: Array<[string, Buffer]>, body: string): Promise<void> {
  await unchanged(s, [repo.gun], async () => assertError(await publish(s.agent, repo.gun, files), 400, body));
}

/**
 * A targets file whose `signed` is exactly `signedText` (key order and duplicates as written),
 * signed as notary signs: over the canonical JSON of the parsed `signed` object.
 */
async function craftedTargets(repo: TufRepo, signedText: string): Promise<Buffer> {
  const msg = canonicalBytes(JSON.parse(signedText));
  const sig = (await repo.targetsKey.sign(msg)).toString('base64');
  return Buffer.from(`{"signed":${signedText},"signatures":[{"keyid":"${repo.targetsKey.id}","method":"ecdsa","sig":"${sig}"}]}`);
}

/** The next targets body's canonical text with `after` spliced in right after the `targets` map. */
function withAfterTargets(repo: TufRepo, after: string): string {
  const body = repo.next('targets', (b) => void (b.targets.v1 = targetMeta('honest')));
  const text = canonicalBytes(body).toString('utf8');
  const at = text.indexOf(',"version"');
  return `${text.slice(0, at)}${after}${text.slice(at)}`;
}

test('V5: a targets.json with both targets and Targets is refused', async () => {
  // Go's encoding/json keeps the last of the two (field names match case-insensitively): notary
  // list would show the evil digest while trustgate verified the honest one.
  const evil = JSON.stringify({ v1: targetMeta('evil') });
  for (const repo of [server, client]) {
    const file = await craftedTargets(repo, withAfterTargets(repo, `,"Targets":${evil}`));
    const files: Array<[string, Buffer]> = [['targets', file]];
    if (repo === client) files.push(['snapshot', await repo.clientSnapshot(files)]);
    await refused(
      repo,
      files,
      invalidUpdate('ErrBadTargets', 'targets: signed: key "Targets" is not the field "targets" (field names are case-sensitive)'),
    );
  }
  const onlyUpper = await craftedTargets(server, withAfterTargets(server, '').replace('"targets":', '"TARGETS":'));
  await refused(
    server,
    [['targets', onlyUpper]],
    invalidUpdate('ErrBadTargets', 'targets: signed: key "TARGETS" is not the field "targets" (field names are case-sensitive)'),
  );
});

test('V5: duplicate keys refused over HTTP', async () => {
  const evil = JSON.stringify({ v1: targetMeta('evil') });
  const file = await craftedTargets(server, withAfterTargets(server, `,"targets":${evil}`));
  await refused(server, [['targets', file]], invalidUpdate('ErrBadTargets', 'targets: duplicate key "targets" in signed'));
  // A duplicate in the unsigned envelope is refused as well.
  const good = (await server.files([['targets', server.next()]]))[0]![1];
  const doubled = Buffer.from(good.toString().replace('"signatures":', '"signatures":[],"signatures":'));
  await refused(
    server,
    [['targets', doubled]],
    invalidUpdate('ErrBadTargets', 'targets: duplicate key "signatures" in the top-level object'),
  );
});

function compressedSpki(pub: KeyObject): Buffer {
  const jwk = pub.export({ format: 'jwk' });
  const point = ECDH.convertKey(
    Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]),
    'prime256v1',
    undefined,
    undefined,
    'compressed',
  ) as Buffer;
  return Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), point]);
}

test('V6: one key listed twice (raw and re-encoded) is refused on publish, in a delegation and in a root', async () => {
  const k = generateSigner('ecdsa');
  const variants: TufKey[] = [
    makeKey('ecdsa', compressedSpki(createPublicKey(k.privateKey))), // other DER, same key
    { keytype: 'ecdsa', keyval: { private: null, public: `${k.key.keyval.public}=` } }, // Node decodes this to the same bytes
  ];
  for (const twin of variants) {
    const body = server.next('targets', (b) => {
      b.delegations.keys[k.id] = k.key;
      b.delegations.keys[keyId(twin)] = twin;
      b.delegations.roles.push({ name: 'targets/releases', keyids: [k.id, keyId(twin)], threshold: 2, paths: [''] });
    });
    const want = twin.keyval.public.endsWith('==')
      ? `targets: delegations: key ${keyId(twin)}: key public value is not canonical base64`
      : `delegation targets/releases: keys ${k.id} and ${keyId(twin)} are the same public key`;
    await refused(server, [['targets', await sign(body, [server.targetsKey])]], invalidUpdate('ErrBadTargets', want));
  }
  // A root whose targets role lists the key twice (threshold 2), signed under both IDs.
  const twin = variants[0]!;
  const rootBody = client.rootBodyFor(client.root.body.version + 1, { targets: [k.key, twin], thresholds: { targets: 2 } });
  const rootBytes = await sign(rootBody, client.rootSigners);
  const t = await sign(client.next(), [k, new LocalSigner(k.privateKey, twin)]);
  const files: Array<[string, Buffer]> = [
    ['root', rootBytes],
    ['targets', t],
  ];
  files.push(['snapshot', await client.clientSnapshot(files)]);
  await refused(
    client,
    files,
    invalidUpdate('ErrBadRoot', `role targets lists keys ${k.id} and ${keyId(twin)}, which are the same public key`),
  );
});

test('V7: a client snapshot with a wrong targets length is refused', async () => {
  const files = await client.files([['targets', client.next('targets', (b) => void (b.targets.v2 = targetMeta('two')))]], {
    snapshot: false,
  });
  const targetsLength = files[0]![1].length;
  for (const delta of [1, -1]) {
    const snap = await client.clientSnapshot(files, (b) => void (b.meta.targets!.length += delta));
    await refused(
      client,
      [...files, ['snapshot', snap]],
      invalidUpdate('ErrBadSnapshot', `length for targets did not match: expected ${targetsLength + delta}`),
    );
  }
  // A stored role the upload does not touch is checked too: here root, with a wrong hash and then a wrong length.
  const rootLength = client.root.bytes.length;
  const badHash = await client.clientSnapshot(files, (b) => void (b.meta.root!.hashes = { sha256: targetMeta('x').hashes.sha256! }));
  await refused(
    client,
    [...files, ['snapshot', badHash]],
    invalidUpdate(
      'ErrBadSnapshot',
      `sha256 checksum for root did not match: expected ${Buffer.from(targetMeta('x').hashes.sha256!, 'base64').toString('hex')}`,
    ),
  );
  const badLength = await client.clientSnapshot(files, (b) => void (b.meta.root!.length = rootLength + 7));
  await refused(
    client,
    [...files, ['snapshot', badLength]],
    invalidUpdate('ErrBadSnapshot', `length for root did not match: expected ${rootLength + 7}`),
  );
  // The honest snapshot still goes through.
  assert.equal((await client.publish([...files, ['snapshot', await client.clientSnapshot(files)]])).status, 200);
});

test('GUN named like a role is refused', async () => {
  const INVALID_GUN =
    '{"errors":[{"code":"INVALID_GUN","message":"The server does not support actions on images of this name.","detail":"invalid GUN"}]}\n';
  const t = await sign(targetsBody({ version: 1 }), [generateSigner('ecdsa')]);
  for (const gun of ['root', 'targets', 'snapshot', 'timestamp', 'targets/releases', 'targets/a/b', 'Targets/x']) {
    await unchanged(s, [], async () => {
      assertError(await publish(s.agent, gun, [['targets', t]]), 400, INVALID_GUN);
      // No server key is made for it either.
      assert.equal((await raw(s.agent.get(tufPath(gun, 'timestamp.key')))).status, 404);
      assert.equal((await rawRequest(s, 'DELETE', tufPath(gun))).status, 404);
    });
  }
});
