// The proxy's signedIdentity (containers-policy.json(5)) under `signatures: cosign`, with a real
// docker-registry upstream. Each signature is podman-style: a simple-signing payload as
// containers/image writes it (docker-reference `host/repo:tag` or `@digest`, optional creator and
// timestamp), signed with an ECDSA key the GUN's trust data names (the held targets key, or a
// delegation's key made elsewhere), pushed straight to the upstream as the `.sig` attachment.
// For each mode, pulls of the signed tag, of another tag on the same digest, and of the digest
// are admitted or refused where containers/image would admit or refuse them. The image as pulled
// is `<registry name>/<repository>` (the GUN) with the client's tag or digest.
import assert from 'node:assert/strict';
import { randomBytes, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { RepoEditor } from '../../src/trust/editor.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { cosignSign, podmanPayload } from '../helpers/strict-cosign.js';
import { editTargets } from '../helpers/trust-edits.js';
import { get, putBlob, putManifest, startStack, type Stack } from './support.js';

const NAME = 'registry.test:5000';
let s: Stack;
let px: StartedProxy;
let work: string;

before(async () => {
  work = await makeTempDir('proxy-identity');
  const policy = join(work, 'policy.yaml');
  const rule = (pattern: string, identity?: string) =>
    [`  - pattern: "${pattern}"`, '    signatures: cosign', ...(identity ? [`    signedIdentity: ${identity}`] : [])].join('\n');
  writeFileSync(
    policy,
    [
      'version: 1',
      'repositories:',
      rule('dflt/**'),
      rule('rdoe/**', '{type: matchRepoDigestOrExact}'),
      rule('mrepo/**', '{type: matchRepository}'),
      rule('mexact/**', '{type: matchExact}'),
      rule('exref/**', '{type: exactReference, dockerReference: "mirror.example.com/team/app:1.0"}'),
      rule('exrepo/**', '{type: exactRepository, dockerRepository: "mirror.example.com/team/app"}'),
      rule('remap/**', `{type: remapIdentity, prefix: "${NAME}/remap", signedPrefix: "upstream.example.com/prod"}`),
      '',
    ].join('\n'),
  );
  s = await startStack({ env: { TRUSTGATE_POLICY: policy, TRUSTGATE_REGISTRY_NAME: NAME } });
  // A second proxy on the same app, with the app's cosign verifier (which startStack's has not).
  px = await startProxy(s.tg.app, { cosign: s.tg.app.signing.cosignHook! }, { host: '127.0.0.1', port: 0 });
});
after(async () => {
  await px?.close();
  await s?.stop();
  await removeTempDir(work);
});

interface Scene {
  repo: string;
  gun: string;
  /** The signed image's digest, upstream under tags v1 and alias. */
  digest: string;
  /** The held targets key. */
  key: KeyObject;
}

/** A repository with trust data (keys held by trustgate) and one image under two tags. */
async function scene(repo: string): Promise<Scene> {
  const gun = `${NAME}/${repo}`;
  const img = await makeImageLayout(join(work, randomBytes(4).toString('hex')), { tag: 'v1', annotations: { repo } });
  await skopeoCopy(img.ref, `docker://${s.reg.host}/${repo}:v1`);
  await skopeoCopy(img.ref, `docker://${s.reg.host}/${repo}:alias`);
  await new RepoEditor(s.tg.app.trust, s.tg.app.keys).init(gun, { rootKey: 'keystore' });
  const [targets] = await s.tg.app.keys.list({ gun, role: 'targets' });
  return { repo, gun, digest: img.manifest.digest, key: await s.tg.app.keys.exportPrivate(targets!.id) };
}

/** Replaces the digest's `.sig` attachment in the upstream with these signatures, as cosign lays them out. */
async function attach(sc: Scene, sigs: Array<{ payload: Buffer; key?: KeyObject }>): Promise<void> {
  const layers = [];
  for (const { payload, key } of sigs) {
    const digest = await putBlob(s.reg.url, sc.repo, payload);
    const signature = cosignSign(key ?? sc.key, payload);
    layers.push({
      mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
      digest,
      size: payload.length,
      annotations: { 'dev.cosignproject.cosign/signature': signature },
    });
  }
  const config = Buffer.from(
    JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }),
  );
  const configDigest = await putBlob(s.reg.url, sc.repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers,
    }),
  );
  const put = await putManifest(s.reg.url, sc.repo, `${sc.digest.replace(':', '-')}.sig`, manifest, MEDIA_TYPES.ociManifest);
  assert.equal(put.status, 201, put.body.toString());
}

/** Which of (tag v1, tag alias, the digest) the proxy serves. */
async function served(sc: Scene): Promise<{ v1: boolean; alias: boolean; digest: boolean }> {
  const one = async (ref: string) => {
    const r = await get(`${px.url}/v2/${sc.repo}/manifests/${ref}`);
    assert.ok(r.status === 200 || r.status === 403, `${ref}: ${r.status} ${r.body.toString()}`);
    if (r.status === 200) assert.equal(r.headers.get('docker-content-digest'), sc.digest);
    else assert.equal(r.json().errors[0].detail.reason, 'not-signed');
    return r.status === 200;
  };
  return { v1: await one('v1'), alias: await one('alias'), digest: await one(sc.digest) };
}

/** Signs `claimed` podman-style with the scene's key and checks what the proxy then serves. */
async function expectServed(sc: Scene, claimed: string, want: { v1: boolean; alias: boolean; digest: boolean }): Promise<void> {
  await attach(sc, [{ payload: podmanPayload(claimed, sc.digest) }]);
  assert.deepEqual(await served(sc), want, `signature naming ${claimed}`);
}

const ALL = { v1: true, alias: true, digest: true };
const NONE = { v1: false, alias: false, digest: false };
const TAG_V1_OR_DIGEST = { v1: true, alias: false, digest: true };
const DIGEST_ONLY = { v1: false, alias: false, digest: true };

describe('default (no signedIdentity): matchRepoDigestOrExact, and the bare repository cosign writes', () => {
  let sc: Scene;
  before(async () => (sc = await scene('dflt/app')));

  test('the bare GUN (what cosign and trustgate write) admits every pull of the repository', async () => {
    await expectServed(sc, sc.gun, ALL);
  });
  test('repo:tag admits that tag and the digest, not another tag on the same digest', async () => {
    await expectServed(sc, `${sc.gun}:v1`, TAG_V1_OR_DIGEST);
  });
  test('repo@digest admits the digest only: a tag where a digest was signed is refused', async () => {
    await expectServed(sc, `${sc.gun}@${sc.digest}`, DIGEST_ONLY);
  });
  test('another repository, a prefix of the GUN, a name with the GUN as prefix, another registry: refused', async () => {
    for (const claimed of [
      `${NAME}/dflt/other:v1`,
      `${NAME}/dflt/ap:v1`,
      `${NAME}/dflt/ap`,
      `${NAME}/dflt`,
      `${NAME}/dflt/app/sub:v1`,
      `${NAME}/dflt/app/sub`,
      `${NAME}/dflt/app-x:v1`,
      `${NAME}/dflt/appx`,
      `registry.test:5001/dflt/app:v1`,
      `registry.test/dflt/app`,
      `dflt/app:v1`,
      `${NAME}/DFLT/app:v1`,
      `${sc.gun}:v1 `,
    ])
      await expectServed(sc, claimed, NONE);
  });
  test('the denial says which identity was claimed and that the mode refused it', async () => {
    await attach(sc, [{ payload: podmanPayload(`${NAME}/dflt/other:v1`, sc.digest) }]);
    const r = await get(`${px.url}/v2/${sc.repo}/manifests/v1`);
    assert.equal(r.status, 403);
    assert.match(
      r.json().errors[0].message,
      /names registry\.test:5000\/dflt\/other:v1, which signedIdentity default .* does not accept for registry\.test:5000\/dflt\/app:v1/,
    );
  });
  test('a payload with an extra top-level field is refused, although the key and identity are right', async () => {
    const good = JSON.parse(podmanPayload(sc.gun, sc.digest).toString()) as object;
    await attach(sc, [{ payload: Buffer.from(JSON.stringify({ ...good, extra: 'x' })) }]);
    assert.deepEqual(await served(sc), NONE);
    await attach(sc, [{ payload: Buffer.from(JSON.stringify({ critical: (good as { critical: object }).critical })) }]);
    assert.deepEqual(await served(sc), NONE, 'without optional');
  });
  test('a key the trust data does not name is refused; a delegation key the trust data names is accepted', async () => {
    const stranger = generateSigner('ecdsa');
    await attach(sc, [{ payload: podmanPayload(sc.gun, sc.digest), key: stranger.privateKey }]);
    assert.deepEqual(await served(sc), NONE);
    await editTargets(s.tg.app, sc.gun, 'targets', (b) => {
      b.delegations.keys[stranger.id] = stranger.key;
      b.delegations.roles.push({ name: 'targets/podman', keyids: [stranger.id], threshold: 1, paths: [''] });
    });
    await attach(sc, [{ payload: podmanPayload(`${sc.gun}:v1`, sc.digest), key: stranger.privateKey }]);
    assert.deepEqual(await served(sc), TAG_V1_OR_DIGEST);
  });
  test('one acceptable signature among refused ones admits the pull', async () => {
    await attach(sc, [
      { payload: podmanPayload(`${NAME}/dflt/other:v1`, sc.digest) },
      { payload: podmanPayload(`${sc.gun}:v1`, sc.digest) },
    ]);
    assert.deepEqual(await served(sc), TAG_V1_OR_DIGEST);
  });
});

describe('matchRepoDigestOrExact, as containers/image has it', () => {
  let sc: Scene;
  before(async () => (sc = await scene('rdoe/app')));
  test('a bare repository is refused', async () => expectServed(sc, sc.gun, NONE));
  test('repo:tag admits that tag and the digest', async () => expectServed(sc, `${sc.gun}:v1`, TAG_V1_OR_DIGEST));
  test('repo@digest admits the digest only', async () => expectServed(sc, `${sc.gun}@${sc.digest}`, DIGEST_ONLY));
  test('another repository is refused', async () => expectServed(sc, `${NAME}/rdoe/app2:v1`, NONE));
});

describe('matchRepository', () => {
  let sc: Scene;
  before(async () => (sc = await scene('mrepo/app')));
  test('any tag of the repository admits every pull', async () => expectServed(sc, `${sc.gun}:v9`, ALL));
  test('the bare repository admits every pull', async () => expectServed(sc, sc.gun, ALL));
  test('another repository or a longer name is refused', async () => {
    await expectServed(sc, `${NAME}/mrepo/other:v1`, NONE);
    await expectServed(sc, `${sc.gun}/x:v1`, NONE);
  });
});

describe('matchExact', () => {
  let sc: Scene;
  before(async () => (sc = await scene('mexact/app')));
  test('repo:tag admits that tag only, not the digest', async () =>
    expectServed(sc, `${sc.gun}:v1`, { v1: true, alias: false, digest: false }));
  test('repo@digest admits the digest only', async () => expectServed(sc, `${sc.gun}@${sc.digest}`, DIGEST_ONLY));
  test('a bare repository is refused', async () => expectServed(sc, sc.gun, NONE));
});

describe('exactReference', () => {
  let sc: Scene;
  before(async () => (sc = await scene('exref/app')));
  test('the named reference admits every pull', async () => expectServed(sc, 'mirror.example.com/team/app:1.0', ALL));
  test('another tag of it, its bare repository, or the GUN itself is refused', async () => {
    await expectServed(sc, 'mirror.example.com/team/app:1.1', NONE);
    await expectServed(sc, 'mirror.example.com/team/app', NONE);
    await expectServed(sc, `${sc.gun}:v1`, NONE);
  });
});

describe('exactRepository', () => {
  let sc: Scene;
  before(async () => (sc = await scene('exrepo/app')));
  test('any reference in the named repository admits every pull', async () => {
    await expectServed(sc, 'mirror.example.com/team/app:anything', ALL);
    await expectServed(sc, 'mirror.example.com/team/app', ALL);
  });
  test('another repository, or the GUN itself, is refused', async () => {
    await expectServed(sc, 'mirror.example.com/team/app2:1.0', NONE);
    await expectServed(sc, `${sc.gun}:v1`, NONE);
  });
});

describe('remapIdentity', () => {
  let sc: Scene;
  before(async () => (sc = await scene('remap/app')));
  test('the remapped name with the pulled tag admits that tag and the digest', async () =>
    expectServed(sc, 'upstream.example.com/prod/app:v1', TAG_V1_OR_DIGEST));
  test('the remapped repository with another tag admits the digest only', async () =>
    expectServed(sc, 'upstream.example.com/prod/app:v2', DIGEST_ONLY));
  test('the unmapped GUN, or another repository under the signed prefix, is refused', async () => {
    await expectServed(sc, `${sc.gun}:v1`, NONE);
    await expectServed(sc, 'upstream.example.com/prod/app-x:v1', NONE);
    await expectServed(sc, 'upstream.example.com/prodx/app:v1', NONE);
  });
});
