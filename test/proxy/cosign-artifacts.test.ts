// Under `signatures: cosign` a digest admitted by a cosign signature alone (no TUF target) is
// served, and so is its referrers listing: the artifacts that listing names and its cosign `.sig`
// tag (what `cosign verify` reads) must be pullable too, as they are for a TUF-signed digest.
// An artifact of a digest without such a signature, or a runnable "referrer", stays denied.
import assert from 'node:assert/strict';
import { randomBytes, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { RepoEditor } from '../../src/trust/editor.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { cosignSign, podmanPayload } from '../helpers/strict-cosign.js';
import { digestOf } from '../helpers/util.js';
import { get, putBlob, putManifest, startStack, type Stack } from './support.js';

const NAME = 'registry.test:5000';
const SPDX = 'application/spdx+json';
const REPO = 'csig/app';
const GUN = `${NAME}/${REPO}`;
let s: Stack;
let px: StartedProxy;
let work: string;
let key: KeyObject;

before(async () => {
  work = await makeTempDir('proxy-cosign-artifacts');
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, ['version: 1', 'repositories:', '  - pattern: "csig/**"', '    signatures: cosign', ''].join('\n'));
  s = await startStack({ env: { TRUSTGATE_POLICY: policy, TRUSTGATE_REGISTRY_NAME: NAME } });
  px = await startProxy(s.tg.app, { cosign: s.tg.app.signing.cosignHook! }, { host: '127.0.0.1', port: 0 });
  await new RepoEditor(s.tg.app.trust, s.tg.app.keys).init(GUN, { rootKey: 'keystore' });
  const [targets] = await s.tg.app.keys.list({ gun: GUN, role: 'targets' });
  key = await s.tg.app.keys.exportPrivate(targets!.id);
});
after(async () => {
  await px?.close();
  await s?.stop();
  await removeTempDir(work);
});

const image = async (tag: string): Promise<ImageLayout> => {
  const img = await makeImageLayout(join(work, randomBytes(4).toString('hex')), { tag, annotations: { tag } });
  await skopeoCopy(img.ref, `docker://${s.reg.host}/${REPO}:${tag}`);
  return img;
};

/** A cosign signature of `digest` with the held targets key, as cosign lays it out under sha256-<hex>.sig. */
async function cosignSignature(digest: string): Promise<string> {
  const payload = podmanPayload(GUN, digest);
  const layer = await putBlob(s.reg.url, REPO, payload);
  const config = Buffer.from(JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [layer] } }));
  const cfg = await putBlob(s.reg.url, REPO, config);
  const sig = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: config.length },
      layers: [
        {
          mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
          digest: layer,
          size: payload.length,
          annotations: { 'dev.cosignproject.cosign/signature': cosignSign(key, payload) },
        },
      ],
    }),
  );
  const tag = `${digest.replace(':', '-')}.sig`;
  assert.equal((await putManifest(s.reg.url, REPO, tag, sig, MEDIA_TYPES.ociManifest)).status, 201);
  return tag;
}

/** An SBOM referrer of `subject`, pushed by digest and listed in the fallback index; its digest. */
async function sbomReferrer(subject: ImageLayout): Promise<string> {
  const sbom = Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', n: randomBytes(4).toString('hex') }));
  const sbomDigest = await putBlob(s.reg.url, REPO, sbom);
  const empty = await putBlob(s.reg.url, REPO, Buffer.from('{}'));
  const art = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: SPDX,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
      layers: [{ mediaType: SPDX, digest: sbomDigest, size: sbom.length }],
      subject: { mediaType: subject.manifest.mediaType, digest: subject.manifest.digest, size: subject.manifest.size },
    }),
  );
  const digest = digestOf(art);
  assert.equal((await putManifest(s.reg.url, REPO, digest, art, MEDIA_TYPES.ociManifest)).status, 201);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest, size: art.length, artifactType: SPDX }],
    }),
  );
  const tag = subject.manifest.digest.replace(':', '-');
  assert.equal((await putManifest(s.reg.url, REPO, tag, index, MEDIA_TYPES.ociIndex)).status, 201);
  return digest;
}

const pull = (ref: string) => get(`${px.url}/v2/${REPO}/manifests/${ref}`);

test('a cosign-signed digest: its referrers list, a listed referrer and its .sig tag are served', async () => {
  const img = await image('v1');
  const sigTag = await cosignSignature(img.manifest.digest);
  const sbom = await sbomReferrer(img);
  assert.equal((await pull(img.manifest.digest)).status, 200, 'the image itself');
  const list = await get(`${px.url}/v2/${REPO}/referrers/${img.manifest.digest}`, { accept: MEDIA_TYPES.ociIndex });
  assert.equal(list.status, 200, list.body.toString());
  assert.deepEqual(
    (list.json() as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest),
    [sbom],
  );
  const sig = await pull(sigTag);
  const listed = await pull(sbom);
  assert.deepEqual(
    [sig.status, listed.status],
    [200, 200],
    `the .sig tag: ${sig.body.toString()}; the listed referrer: ${listed.body.toString()}`,
  );
});

test('an artifact of a digest without a cosign signature, and a runnable "referrer", are denied', async () => {
  const unsigned = await image('unsigned');
  const sbom = await sbomReferrer(unsigned);
  assert.equal((await pull(sbom)).status, 403);
  // A runnable image claiming a signed subject.
  const signed = await image('v2');
  await cosignSignature(signed.manifest.digest);
  const rogue = await makeImageLayout(join(work, randomBytes(4).toString('hex')), { tag: 'rogue', annotations: { rogue: '1' } });
  await skopeoCopy(rogue.ref, `docker://${s.reg.host}/${REPO}:rogue`);
  const m = JSON.parse(rogue.manifest.bytes.toString('utf8')) as Record<string, unknown>;
  const withSubject = Buffer.from(
    JSON.stringify({
      ...m,
      subject: { mediaType: signed.manifest.mediaType, digest: signed.manifest.digest, size: signed.manifest.size },
    }),
  );
  assert.equal((await putManifest(s.reg.url, REPO, digestOf(withSubject), withSubject, MEDIA_TYPES.ociManifest)).status, 201);
  assert.equal((await pull(digestOf(withSubject))).status, 403);
  assert.equal((await pull(signed.manifest.digest)).status, 200);
});
