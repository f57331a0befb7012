// What the proxy serves as an artifact of a served digest: a manifest whose artifact type, config
// and layers are of types the policy allows (signatures, attestations, SBOMs), never a runnable
// image or an index, whatever its `subject`/`artifactType` says; and `sha256-<hex>.sig|.att|.sbom`
// tags only when they hold such an artifact. The attacker's side pushes straight to the upstream.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { checkArtifact, DEFAULT_ARTIFACT_TYPES } from '../../src/proxy/artifacts.js';
import { parsePolicy, PolicyError } from '../../src/proxy/policy.js';
import { Upstream } from '../../src/registry/client.js';
import { writeBundleReferrer, writeCosignSignature } from '../../src/registry/signatures.js';
import { UpstreamRegistry } from '../../src/registry/artifacts.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { denied, get, putBlob, putManifest, startStack, type Stack } from './support.js';
import { digestOf } from '../helpers/util.js';
import { editTargets } from '../helpers/trust-edits.js';

const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const SPDX = 'application/spdx+json';
const EMPTY = 'application/vnd.oci.empty.v1+json';

let s: Stack;
let work: string;
let up: Upstream;
before(async () => {
  s = await startStack();
  work = await makeTempDir('proxy-artifacts');
  up = new Upstream({ url: s.reg.url });
});
after(async () => {
  up?.close();
  await s?.stop();
  await removeTempDir(work);
});

const layout = (name: string) => path.join(work, `${name}-${randomBytes(4).toString('hex')}`);
const fixture = (name: string) => readFileSync(new URL(`../fixtures/sigstore/${name}`, import.meta.url));

/** An image pushed (and so signed) through the proxy `at`. */
async function signedImage(at: Stack, repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(layout(tag), { tag });
  await skopeoCopy(img.ref, `docker://${at.host}/${repo}:${tag}`, ['--dest-creds', at.creds]);
  return img;
}

/** An unsigned runnable image pushed straight to the upstream. */
async function rogueImage(at: Stack, repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(layout(`rogue-${tag}`), { tag, annotations: { rogue: tag } });
  await skopeoCopy(img.ref, `docker://${at.reg.host}/${repo}:${tag}`);
  return img;
}

const subjectOf = (img: ImageLayout) => ({ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size });

/** An OCI artifact (empty config, one layer of `type`) pushed straight to the upstream; its manifest bytes. */
async function artifact(at: Stack, repo: string, type: string, extra: object, ref?: string): Promise<Buffer> {
  const content = Buffer.from(JSON.stringify({ kind: type, n: randomBytes(4).toString('hex') }));
  const layer = await putBlob(at.reg.url, repo, content);
  const empty = await putBlob(at.reg.url, repo, Buffer.from('{}'));
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: type,
      config: { mediaType: EMPTY, digest: empty, size: 2 },
      layers: [{ mediaType: type, digest: layer, size: content.length }],
      ...extra,
    }),
  );
  const put = await putManifest(at.reg.url, repo, ref ?? digestOf(bytes), bytes, MEDIA_TYPES.ociManifest);
  assert.equal(put.status, 201, put.body.toString());
  return bytes;
}

test('V3: a runnable image with a subject is not served as an artifact', async () => {
  const signed = await signedImage(s, 'v3/app', 'v1');
  const rogue = await rogueImage(s, 'v3/app', 'rogue');
  const image = JSON.parse(rogue.manifest.bytes.toString('utf8')) as Record<string, unknown>;
  // The unsigned image itself, given a subject, with or without an artifact type that is allowed.
  for (const extra of [{}, { artifactType: BUNDLE }, { artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' }]) {
    const bytes = Buffer.from(JSON.stringify({ ...image, ...extra, subject: subjectOf(signed) }));
    assert.equal((await putManifest(s.reg.url, 'v3/app', digestOf(bytes), bytes, MEDIA_TYPES.ociManifest)).status, 201);
    const e = denied(await get(`${s.px.url}/v2/v3/app/manifests/${digestOf(bytes)}`));
    assert.equal(e.detail.reason, 'not-signed');
    assert.match(e.message, /layer of type application\/vnd\.oci\.image\.layer/);
  }
  // An image config with no layers, and an index listing the rogue image: neither is an artifact.
  const bare = Buffer.from(JSON.stringify({ ...image, layers: [], artifactType: BUNDLE, subject: subjectOf(signed) }));
  assert.equal((await putManifest(s.reg.url, 'v3/app', digestOf(bare), bare, MEDIA_TYPES.ociManifest)).status, 201);
  assert.match(denied(await get(`${s.px.url}/v2/v3/app/manifests/${digestOf(bare)}`)).message, /runnable image config/);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      artifactType: BUNDLE,
      manifests: [subjectOf(rogue)],
      subject: subjectOf(signed),
    }),
  );
  assert.equal((await putManifest(s.reg.url, 'v3/app', digestOf(index), index, MEDIA_TYPES.ociIndex)).status, 201);
  assert.match(denied(await get(`${s.px.url}/v2/v3/app/manifests/${digestOf(index)}`)).message, /index/);
  denied(await get(`${s.px.url}/v2/v3/app/manifests/${rogue.manifest.digest}`));

  // trustgate's own Sigstore bundle referrer of the signed image is still served.
  const bundle = await writeBundleReferrer(
    new UpstreamRegistry(up),
    'v3/app',
    subjectOf(signed),
    { repository: s.gun('v3/app'), tag: 'v1' },
    generateSigner('ecdsa'),
  );
  const got = await get(`${s.px.url}/v2/v3/app/manifests/${bundle.manifestDigest}`);
  assert.equal(got.status, 200, got.body.toString());
  assert.equal(digestOf(got.body), bundle.manifestDigest);
});

test('V3: an artifact of a type the policy does not allow is denied', async () => {
  // The default list: signatures, attestations, bundles and SBOMs; a Helm chart is not among them.
  const wide = await signedImage(s, 'wide/app', 'v1');
  const helmContent = randomBytes(64);
  const chart = await putBlob(s.reg.url, 'wide/app', helmContent);
  const helmConfig = Buffer.from('{"name":"x","version":"1.0.0"}');
  const config = await putBlob(s.reg.url, 'wide/app', helmConfig);
  const helm = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: config, size: helmConfig.length },
      layers: [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', digest: chart, size: helmContent.length }],
      subject: subjectOf(wide),
    }),
  );
  assert.equal((await putManifest(s.reg.url, 'wide/app', digestOf(helm), helm, MEDIA_TYPES.ociManifest)).status, 201);
  assert.match(denied(await get(`${s.px.url}/v2/wide/app/manifests/${digestOf(helm)}`)).message, /not an allowed artifact type/);
  const unknown = await artifact(s, 'wide/app', 'application/vnd.example.tool+json', { subject: subjectOf(wide) });
  assert.match(denied(await get(`${s.px.url}/v2/wide/app/manifests/${digestOf(unknown)}`)).message, /not an allowed artifact type/);
  for (const type of [SPDX, BUNDLE, 'application/vnd.dsse.envelope.v1+json', 'application/vnd.cyclonedx+json']) {
    const ok = await artifact(s, 'wide/app', type, { subject: subjectOf(wide) });
    assert.equal((await get(`${s.px.url}/v2/wide/app/manifests/${digestOf(ok)}`)).status, 200, type);
  }

  // A type a runtime would unpack may not be allowed at all.
  for (const t of [
    MEDIA_TYPES.ociLayerGzip,
    MEDIA_TYPES.ociConfig,
    'application/vnd.docker.image.rootfs.diff.tar.gzip',
    MEDIA_TYPES.ociIndex,
    EMPTY,
  ]) {
    assert.throws(() => parsePolicy(`version: 1\ndefault:\n  artifactTypes: ["${t}"]\n`, 'inline'), PolicyError, t);
  }
  // A rule's own list replaces the default: here only SPDX SBOMs.
  const file = path.join(work, 'policy.yaml');
  writeFileSync(
    file,
    [
      'version: 1',
      'default:',
      '  signOnPush: targets',
      'repositories:',
      '  - pattern: "narrow/**"',
      '    signOnPush: targets',
      `    artifactTypes: ["${SPDX}"]`,
      '',
    ].join('\n'),
  );
  const t = await startStack({ reg: s.reg, env: { TRUSTGATE_POLICY: file } });
  try {
    const narrow = await signedImage(t, 'narrow/app', 'v1');
    const sbom = await artifact(t, 'narrow/app', SPDX, { subject: subjectOf(narrow) });
    assert.equal((await get(`${t.px.url}/v2/narrow/app/manifests/${digestOf(sbom)}`)).status, 200);
    const bundle = await artifact(t, 'narrow/app', BUNDLE, { subject: subjectOf(narrow) });
    assert.match(denied(await get(`${t.px.url}/v2/narrow/app/manifests/${digestOf(bundle)}`)).message, /not an allowed artifact type/);
    const sigTag = `${narrow.manifest.digest.replace(':', '-')}.sig`;
    await writeCosignSignature(
      new UpstreamRegistry(up),
      'narrow/app',
      t.gun('narrow/app'),
      narrow.manifest.digest,
      generateSigner('ecdsa'),
    );
    assert.match(denied(await get(`${t.px.url}/v2/narrow/app/manifests/${sigTag}`)).message, /simplesigning.*not an allowed artifact type/);
  } finally {
    await t.stop();
  }
});

test('V4: a signature-shaped tag with an unsigned image is denied', async () => {
  const signed = await signedImage(s, 'v4/app', 'v1');
  const hex = signed.manifest.digest.slice('sha256:'.length);
  for (const kind of ['sig', 'att', 'sbom']) {
    const tag = `sha256-${hex}.${kind}`;
    const rogue = await rogueImage(s, 'v4/app', tag);
    const e = denied(await get(`${s.px.url}/v2/v4/app/manifests/${tag}`));
    assert.equal(e.detail.reason, 'not-signed');
    assert.match(e.message, /not served as an artifact: .*layer of type application\/vnd\.oci\.image\.layer/);
    assert.equal((await get(`${s.px.url}/v2/v4/app/manifests/${tag}`, { method: 'HEAD' })).status, 403);
    denied(await get(`${s.px.url}/v2/v4/app/manifests/${rogue.manifest.digest}`));
  }
  // An artifact under the signed digest's tag whose subject is an unsigned image: the subject counts.
  const stray = await rogueImage(s, 'v4/app', 'stray');
  await artifact(s, 'v4/app', SPDX, { subject: subjectOf(stray) }, `sha256-${hex}.sbom`);
  assert.match(denied(await get(`${s.px.url}/v2/v4/app/manifests/sha256-${hex}.sbom`)).message, /subject .* is not served/);
  // A signature tag nobody pushed: the upstream's 404, as cosign expects, when the digest is served.
  const other = await signedImage(s, 'v4/app', 'v2');
  const missing = await get(`${s.px.url}/v2/v4/app/manifests/${other.manifest.digest.replace(':', '-')}.sig`);
  assert.equal(missing.status, 404, missing.body.toString());
  assert.equal(missing.json().errors[0].code, 'MANIFEST_UNKNOWN');
  assert.equal(missing.headers.get('content-length'), String(missing.body.length));
});

test('V4: a real cosign signature of a signed digest is still served', async () => {
  const meta = JSON.parse(fixture('meta.json').toString('utf8')) as {
    signedImage: { manifestDigest: string };
    attachment: { tag: string; manifestDigest: string };
  };
  // The image the fixture signs, signed in this GUN's trust data (the proxy needs only its digest).
  await signedImage(s, 'v4/real', 'init');
  const image = fixture('signed-image-manifest.json');
  assert.equal(digestOf(image), meta.signedImage.manifestDigest);
  await editTargets(s.tg.app, s.gun('v4/real'), 'targets', (b) => {
    b.targets.hello = {
      hashes: { sha256: Buffer.from(meta.signedImage.manifestDigest.slice(7), 'hex').toString('base64') },
      length: image.length,
    };
  });
  // The signature as skopeo wrote it (cosign's format), pushed straight to the upstream.
  await putBlob(s.reg.url, 'v4/real', fixture('signature-config.json'));
  await putBlob(s.reg.url, 'v4/real', fixture('signature-payload-1.json'));
  const sig = fixture('signature-manifest.json');
  assert.equal((await putManifest(s.reg.url, 'v4/real', meta.attachment.tag, sig, MEDIA_TYPES.ociManifest)).status, 201);
  const got = await get(`${s.px.url}/v2/v4/real/manifests/${meta.attachment.tag}`);
  assert.equal(got.status, 200, got.body.toString());
  assert.deepEqual(got.body, sig);
  assert.equal(got.headers.get('docker-content-digest'), meta.attachment.manifestDigest);
  assert.equal(got.headers.get('content-type'), MEDIA_TYPES.ociManifest);
  const head = await get(`${s.px.url}/v2/v4/real/manifests/${meta.attachment.tag}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(sig.length));

  // trustgate's own cosign signature of an image pushed through the proxy, pulled with skopeo.
  const pushed = await signedImage(s, 'v4/real', 'v1');
  const mine = await writeCosignSignature(
    new UpstreamRegistry(up),
    'v4/real',
    s.gun('v4/real'),
    pushed.manifest.digest,
    generateSigner('ecdsa'),
  );
  const mineGot = await get(`${s.px.url}/v2/v4/real/manifests/${mine.tag}`);
  assert.equal(mineGot.status, 200, mineGot.body.toString());
  assert.equal(digestOf(mineGot.body), mine.manifestDigest);
  await skopeoCopy(`docker://${s.host}/v4/real:${mine.tag}`, `oci:${layout('sig-pulled')}:sig`);

  // Served only while the tag holds a signature: re-pointed to an unsigned image, it is denied.
  await rogueImage(s, 'v4/real', meta.attachment.tag);
  assert.equal(denied(await get(`${s.px.url}/v2/v4/real/manifests/${meta.attachment.tag}`)).detail.reason, 'not-signed');
});

test('what counts as an artifact: cosign and skopeo layouts pass, anything a runtime would unpack does not', () => {
  const allowed = new Set(DEFAULT_ARTIFACT_TYPES);
  const d = (mediaType: string) => ({ mediaType, digest: `sha256:${'a'.repeat(64)}`, size: 1 });
  const subject = { subject: d(MEDIA_TYPES.ociManifest) };
  const check = (doc: object) => checkArtifact(doc as Record<string, unknown>, allowed);
  // cosign's tag layout: an image config and only signature (or attestation) layers; docker-typed too.
  assert.deepEqual(
    check({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: d(MEDIA_TYPES.ociConfig),
      layers: [d('application/vnd.dev.cosign.simplesigning.v1+json')],
    }),
    { ok: true, type: 'application/vnd.dev.cosign.simplesigning.v1+json' },
  );
  assert.equal(
    check({
      schemaVersion: 2,
      config: d(MEDIA_TYPES.ociConfig),
      layers: [d('application/vnd.dsse.envelope.v1+json'), d('application/vnd.dsse.envelope.v1+json')],
    }).ok,
    true,
  );
  assert.equal(
    check({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerManifest,
      config: d('application/vnd.docker.container.image.v1+json'),
      layers: [d('text/spdx')],
    }).ok,
    true,
  );
  // OCI 1.1: the artifact type names it; media types compare case-insensitively.
  assert.deepEqual(check({ schemaVersion: 2, artifactType: 'Application/SPDX+JSON', config: d(EMPTY), layers: [d(EMPTY)], ...subject }), {
    ok: true,
    type: SPDX,
    subject: subject.subject.digest,
  });
  assert.equal(
    check({
      schemaVersion: 2,
      config: d('application/vnd.dev.cosign.artifact.sig.v1+json'),
      layers: [d('application/vnd.dev.cosign.simplesigning.v1+json')],
    }).ok,
    true,
  );
  // Not artifacts.
  const no = (doc: object, why: RegExp) => {
    const r = check(doc);
    assert.equal(r.ok, false, JSON.stringify(doc));
    assert.match((r as { why: string }).why, why);
  };
  no(
    {
      schemaVersion: 2,
      config: d(MEDIA_TYPES.ociConfig),
      layers: [d('application/vnd.dev.cosign.simplesigning.v1+json'), d(MEDIA_TYPES.ociLayerGzip)],
    },
    /layer of type/,
  );
  no({ schemaVersion: 2, artifactType: SPDX, config: d(MEDIA_TYPES.ociConfig), layers: [], ...subject }, /runnable image config/);
  no({ schemaVersion: 2, config: d(EMPTY), layers: [d(EMPTY)], ...subject }, /no artifact type/);
  no({ schemaVersion: 2, artifactType: SPDX, config: d('application/vnd.wasm.config.v0+json'), layers: [d(SPDX)] }, /config type/);
  no({ schemaVersion: 2, artifactType: 7, config: d(EMPTY), layers: [d(SPDX)] }, /artifactType/);
  no({ schemaVersion: 2, artifactType: SPDX, config: d(EMPTY), layers: [d(SPDX)], subject: { digest: 5 } }, /subject/);
  no({ schemaVersion: 2, artifactType: SPDX, config: d(EMPTY), layers: [{ digest: 'x' }] }, /layer without a media type/);
  no({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, artifactType: SPDX, manifests: [] }, /index/);
  no({ schemaVersion: 2, artifactType: SPDX, config: d(EMPTY), layers: [d(SPDX)], manifests: [] }, /index/);
  assert.equal(checkArtifact(undefined, allowed).ok, false);
});
