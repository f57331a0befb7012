// Signing against a real upstream (docker-registry) with images pushed by skopeo: sizes read
// from the registry, the upstream check (TRUSTGATE_SIGN_CHECK_UPSTREAM), the cosign-format
// `.sig` attachment read back from the registry and checked with node:crypto alone (Debian's
// skopeo is built with sigstore verification disabled, so it cannot serve as a second check), and the Sigstore bundle found
// through the referrers tag schema and checked with @sigstore/verify.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { signatureLayers, signatureTag, verifySimpleSigning, SIMPLE_SIGNING_MEDIA_TYPE } from '../../src/core/crypto/cosign.js';
import { BUNDLE_MEDIA_TYPE, verifyBundle } from '../../src/core/crypto/sigstore.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { cli } from '../cli/support.js';
import { bearer, fakeDigest, initRepo, startSigningServer, targetsOf, versions, type SigningServer } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let reg: RegistryService;
let s: SigningServer;
let tmp: string;
before(async () => {
  reg = await startRegistry();
  s = await startSigningServer({ upstream: reg.url, checkUpstream: true });
  tmp = await makeTempDir('signing-oci');
});
after(async () => {
  await s?.stop();
  await reg?.stop();
  await removeTempDir(tmp);
});

let n = 0;
/** A fresh image pushed to the registry; its GUN names it under a public registry name. */
async function pushed(): Promise<{ repo: string; gun: string; image: ImageLayout }> {
  const repo = `ci/app-${process.pid}-${++n}`;
  const image = await makeImageLayout(join(tmp, `img-${n}`), { tag: 'v1', annotations: { n: String(n) } });
  await skopeoCopy(image.ref, `docker://${reg.host}/${repo}:v1`);
  return { repo, gun: `registry.example.com:5000/${repo}`, image };
}

async function regGet(
  path: string,
  accept = 'application/vnd.oci.image.manifest.v1+json',
): Promise<{ status: number; bytes: Buffer; type: string }> {
  const res = await fetch(`${reg.url}${path}`, { headers: { Accept: accept } });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), type: res.headers.get('content-type') ?? '' };
}

const post = (path: string, body: unknown) =>
  s.agent
    .post(`/api/v1/signing/${path}`)
    .set(bearer(s.adminToken))
    .send(body as object);

async function publicKey(gun: string): Promise<{ pem: string; keyId: string }> {
  const res = await s.agent.get('/api/v1/signing/public-key').query({ gun }).set(bearer(s.adminToken)).set('Accept', 'application/json');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { pem: string; keyId: string };
}

describe('the upstream registry', () => {
  test('without a size, the manifest size is read from the registry', async () => {
    const { gun, image } = await pushed();
    await initRepo(s, gun);
    const res = await post('sign', { gun, tag: 'v1', digest: image.manifest.digest });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.items[0].size, image.manifest.size);
    assert.equal((await targetsOf(s, gun))!.targets.v1!.length, image.manifest.size);
  });

  test('a digest the upstream does not have is refused (400 DIGEST_UNKNOWN) and nothing is published', async () => {
    const { gun } = await pushed();
    await initRepo(s, gun);
    const before = await versions(s, gun);
    const res = await unchanged(s, gun, () => post('sign', { gun, tag: 'v1', digest: fakeDigest('not pushed'), size: 100 }));
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'DIGEST_UNKNOWN');
    assert.match(res.body.error.message, /is not a manifest in upstream repository ci\/app-/);
    assert.deepEqual(await versions(s, gun), before);
  });

  test('a size that does not match the manifest in the upstream is refused', async () => {
    const { gun, image } = await pushed();
    await initRepo(s, gun);
    const res = await unchanged(s, gun, () =>
      post('sign', { gun, tag: 'v1', digest: image.manifest.digest, size: image.manifest.size + 1 }),
    );
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'SIZE_MISMATCH');
  });

  test('one unknown digest in a batch refuses the whole batch', async () => {
    const { gun, image } = await pushed();
    await initRepo(s, gun);
    const res = await unchanged(s, gun, () =>
      post('batch', {
        gun,
        items: [
          { tag: 'v1', digest: image.manifest.digest },
          { tag: 'v2', digest: fakeDigest('nope'), size: 5 },
        ],
      }),
    );
    assert.equal(res.status, 400);
    assert.equal(res.body.error.field, 'items[1].digest');
  });
});

describe('cosign-format signatures and Sigstore bundles', () => {
  test('cosign: true writes sha256-<hex>.sig that verifies with the exported PEM and an independent node:crypto check', async () => {
    const { repo, gun, image } = await pushed();
    await initRepo(s, gun);
    const digest = image.manifest.digest;
    const res = await post('sign', { gun, tag: 'v1', digest, cosign: true });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.items[0].cosign.tag, signatureTag(digest));

    // Read the attachment back from the registry, as cosign would.
    const m = await regGet(`/v2/${repo}/manifests/${signatureTag(digest)}`);
    assert.equal(m.status, 200);
    const layers = signatureLayers(m.bytes);
    assert.equal(layers.length, 1);
    const manifest = JSON.parse(m.bytes.toString()) as { layers: Array<{ mediaType: string }> };
    assert.equal(manifest.layers[0]!.mediaType, SIMPLE_SIGNING_MEDIA_TYPE);
    const payload = await regGet(`/v2/${repo}/blobs/${layers[0]!.digest}`, '*/*');
    assert.equal(payload.status, 200);
    const { pem } = await publicKey(gun);
    assert.deepEqual(verifySimpleSigning(pem, payload.bytes, layers[0]!.signature, digest, gun), { ok: true, dockerReference: gun });
    // Another image's digest, or a changed payload, must not verify.
    assert.equal(verifySimpleSigning(pem, payload.bytes, layers[0]!.signature, fakeDigest('other')).ok, false);
    const bent = Buffer.from(payload.bytes);
    bent[bent.length - 3]! ^= 1;
    assert.equal(verifySimpleSigning(pem, bent, layers[0]!.signature, digest).ok, false);
  });

  test('signing again with another key keeps the first signature in the .sig manifest', async () => {
    const { repo, gun, image } = await pushed();
    await initRepo(s, gun);
    const digest = image.manifest.digest;
    assert.equal((await post('sign', { gun, tag: 'v1', digest, cosign: true })).status, 201);
    // Rotate the held targets key's use: a second GUN naming the same upstream repository signs it too.
    const gun2 = `${gun.replace('registry.example.com:5000', 'mirror.example.com')}`;
    await initRepo(s, gun2);
    assert.equal((await post('sign', { gun: gun2, tag: 'v1', digest, cosign: true })).status, 201);
    const m = await regGet(`/v2/${repo}/manifests/${signatureTag(digest)}`);
    const layers = signatureLayers(m.bytes);
    assert.equal(layers.length, 2);
    const keys = [await publicKey(gun), await publicKey(gun2)];
    for (const [i, l] of layers.entries()) {
      const payload = await regGet(`/v2/${repo}/blobs/${l.digest}`, '*/*');
      assert.equal(verifySimpleSigning(keys[i]!.pem, payload.bytes, l.signature, digest).ok, true);
    }
  });

  test('bundle: true attaches a Sigstore bundle as an OCI referrer that verifies with @sigstore/verify', async () => {
    const { repo, gun, image } = await pushed();
    await initRepo(s, gun);
    const digest = image.manifest.digest;
    const res = await post('sign', { gun, tag: 'v1', digest, bundle: true });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const info = res.body.items[0].bundle as { manifestDigest: string; via: string };

    // The referrers API if the registry has it, else the tag schema (sha256-<hex>).
    const api = await regGet(`/v2/${repo}/referrers/${digest}`, 'application/vnd.oci.image.index.v1+json');
    const index =
      api.status === 200 && api.type.includes('image.index')
        ? api
        : await regGet(`/v2/${repo}/manifests/${digest.replace(':', '-')}`, 'application/vnd.oci.image.index.v1+json');
    assert.equal(index.status, 200);
    const refs = (JSON.parse(index.bytes.toString()) as { manifests: Array<{ digest: string; artifactType?: string }> }).manifests.filter(
      (d) => d.artifactType === BUNDLE_MEDIA_TYPE,
    );
    assert.equal(refs.length, 1);
    assert.equal(refs[0]!.digest, info.manifestDigest);

    const m = await regGet(`/v2/${repo}/manifests/${refs[0]!.digest}`);
    const manifest = JSON.parse(m.bytes.toString()) as {
      artifactType: string;
      subject: { digest: string; size: number };
      layers: Array<{ mediaType: string; digest: string }>;
    };
    assert.equal(manifest.artifactType, BUNDLE_MEDIA_TYPE);
    assert.deepEqual([manifest.subject.digest, manifest.subject.size], [digest, image.manifest.size]);
    assert.equal(manifest.layers[0]!.mediaType, BUNDLE_MEDIA_TYPE);
    const blob = await regGet(`/v2/${repo}/blobs/${manifest.layers[0]!.digest}`, '*/*');
    const bundle = bundleFromJSON(JSON.parse(blob.bytes.toString()));
    const { pem, keyId } = await publicKey(gun);
    const { statement } = verifyBundle(bundle, { hint: keyId, key: pem });
    const subject = (statement.subject as Array<{ name: string; digest: { sha256: string } }>)[0]!;
    assert.deepEqual([subject.name, subject.digest.sha256], [gun, digest.slice(7)]);
    assert.equal((statement.predicate as { tag: string }).tag, 'v1');
    // The same bundle must not verify with another trustgate key.
    const { generateKeyPairSync } = await import('node:crypto');
    assert.throws(() => verifyBundle(bundle, { hint: keyId, key: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey }));
  });

  test('cosign without an upstream configured is refused before anything is published', async () => {
    const local = await startSigningServer();
    try {
      const gun = 'registry.example.com:5000/ci/no-upstream';
      await initRepo(local, gun);
      const before = await versions(local, gun);
      const res = await local.agent
        .post('/api/v1/signing/sign')
        .set(bearer(local.adminToken))
        .send({ gun, tag: 'v1', digest: fakeDigest('x'), size: 3, cosign: true });
      assert.equal(res.status, 400);
      assert.equal(res.body.error.code, 'UPSTREAM_REQUIRED');
      assert.deepEqual(await versions(local, gun), before);
    } finally {
      await local.stop();
    }
  });

  test('the CLI reads the size from a registry it is pointed at (--registry) when the server has no upstream', async () => {
    const local = await startSigningServer();
    try {
      const { gun, image } = await pushed();
      await initRepo(local, gun);
      const c = cli(local.tg.url, local.adminToken);
      const without = await c.run(['sign', `${gun}@${image.manifest.digest}`, '--tag', 'v1']);
      assert.equal(without.code, 1, without.stderr);
      assert.match(without.stderr, /SIZE_REQUIRED/);
      const r = await c.run(['sign', `${gun}@${image.manifest.digest}`, '--tag', 'v1', '--registry', reg.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await targetsOf(local, gun))!.targets.v1!.length, image.manifest.size);
    } finally {
      await local.stop();
    }
  });
});
