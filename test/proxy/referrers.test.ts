// Referrers through the proxy on docker-registry 2.8, which has no referrers API: the proxy
// answers `GET /v2/<name>/referrers/<digest>` itself from the tag schema's fallback index, and
// serves that index (`sha256-<hex>`), only for subjects it would serve. What the index lists is
// still checked when pulled, so a runnable image listed there, or pushed as a "referrer", is
// denied. A second proxy in front of the first meets an upstream that has the referrers API.
// The attacker's side writes straight to the upstream registry. No referrers-speaking client
// (oras, notation) is installed here: the API is read with fetch, following the spec; skopeo
// reads the fallback tag and the referrer manifests.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { BUNDLE_MEDIA_TYPE, verifyBundle } from '../../src/core/crypto/sigstore.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { MAX_INDEX_BYTES, MAX_REFERRERS } from '../../src/proxy/referrers.js';
import { Upstream } from '../../src/registry/client.js';
import { pushReferrer, UpstreamRegistry, type Descriptor } from '../../src/registry/artifacts.js';
import { writeBundleReferrer } from '../../src/registry/signatures.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy, skopeoInspect, type ImageLayout } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { digestOf } from '../helpers/util.js';
import { denied, get, putBlob, putManifest, startStack, type Got, type Stack } from './support.js';

const SPDX = 'application/spdx+json';
const HELM = 'application/vnd.cncf.helm.config.v1+json';
const EMPTY = 'application/vnd.oci.empty.v1+json';
const INDEX = MEDIA_TYPES.ociIndex;

let s: Stack;
let work: string;
let up: Upstream;
let reg: UpstreamRegistry;
before(async () => {
  s = await startStack();
  work = await makeTempDir('proxy-referrers');
  up = new Upstream({ url: s.reg.url });
  reg = new UpstreamRegistry(up);
});
after(async () => {
  up?.close();
  await s?.stop();
  await removeTempDir(work);
});

const layout = (name: string) => path.join(work, `${name}-${randomBytes(4).toString('hex')}`);
const tagOf = (digest: string) => digest.replace(':', '-');
const subjectOf = (img: ImageLayout) => ({ mediaType: img.manifest.mediaType, digest: img.manifest.digest, size: img.manifest.size });

/** An image pushed (and so signed) through the proxy `at`. */
async function signedImage(at: Stack, repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(layout(tag), { tag });
  await skopeoCopy(img.ref, `docker://${at.host}/${repo}:${tag}`, ['--dest-creds', at.creds]);
  return img;
}

/** An unsigned runnable image pushed straight to the upstream. */
async function rogueImage(repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(layout(`rogue-${tag}`), { tag, annotations: { rogue: tag } });
  await skopeoCopy(img.ref, `docker://${s.reg.host}/${repo}:${tag}`);
  return img;
}

/** An OCI artifact of `type` with `subject`, pushed straight to the upstream by digest; its descriptor. */
async function artifact(repo: string, type: string, subject: ImageLayout, annotations: Record<string, string> = {}): Promise<Descriptor> {
  const content = Buffer.from(JSON.stringify({ kind: type, n: randomBytes(4).toString('hex') }));
  const layer = await putBlob(s.reg.url, repo, content);
  const empty = await putBlob(s.reg.url, repo, Buffer.from('{}'));
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: type,
      config: { mediaType: EMPTY, digest: empty, size: 2 },
      layers: [{ mediaType: type, digest: layer, size: content.length }],
      subject: subjectOf(subject),
      ...(Object.keys(annotations).length ? { annotations } : {}),
    }),
  );
  const put = await putManifest(s.reg.url, repo, digestOf(bytes), bytes, MEDIA_TYPES.ociManifest);
  assert.equal(put.status, 201, put.body.toString());
  const d = { mediaType: MEDIA_TYPES.ociManifest, digest: digestOf(bytes), size: bytes.length, artifactType: type };
  return Object.keys(annotations).length ? { ...d, annotations } : d;
}

/** Writes `manifests` as the fallback index of `subject` straight to the upstream. */
async function fallbackIndex(repo: string, subject: string, manifests: object[], extra: object = {}): Promise<Buffer> {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests, ...extra }));
  const put = await putManifest(s.reg.url, repo, tagOf(subject), bytes, INDEX);
  assert.equal(put.status, 201, put.body.toString());
  return bytes;
}

const referrers = (at: Stack, repo: string, digest: string, query = '') =>
  get(`${at.px.url}/v2/${repo}/referrers/${digest}${query}`, { accept: INDEX });

/** The digests (and artifact types) an OCI referrers answer lists, checked for the spec's shape. */
function listed(g: Got): Array<[string, string]> {
  assert.equal(g.status, 200, g.body.toString());
  assert.equal(g.headers.get('content-type'), INDEX);
  const doc = g.json() as { schemaVersion: number; mediaType: string; manifests: Descriptor[] };
  assert.equal(doc.schemaVersion, 2);
  assert.equal(doc.mediaType, INDEX);
  return doc.manifests.map((d) => [d.digest, d.artifactType!]);
}

const signingApi = (path: string, body: object) =>
  fetch(`${s.tg.url}/api/v1/signing/${path}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('a Sigstore bundle written by the signing API, found through the proxy', () => {
  const repo = 'refs/app';
  let image: ImageLayout;
  let bundle: { manifestDigest: string; via: string };

  before(async () => {
    image = await signedImage(s, repo, 'v1');
    const res = await signingApi('sign', { gun: s.gun(repo), tag: 'v1', digest: image.manifest.digest, bundle: true });
    const body = (await res.json()) as { items: Array<{ bundle: { manifestDigest: string; via: string } }> };
    assert.equal(res.status, 201, JSON.stringify(body));
    bundle = body.items[0]!.bundle;
    // docker-registry 2.8 has no referrers API: the bundle went into the fallback index.
    assert.equal(bundle.via, 'tag-schema');
    assert.equal((await get(`${s.reg.url}/v2/${repo}/referrers/${image.manifest.digest}`)).status, 404);
  });

  test('the referrers API lists it, with and without an artifactType filter', async () => {
    const all = await referrers(s, repo, image.manifest.digest);
    assert.deepEqual(listed(all), [[bundle.manifestDigest, BUNDLE_MEDIA_TYPE]]);
    assert.equal(all.headers.get('oci-filters-applied'), null);
    const doc = all.json() as { manifests: Descriptor[] };
    assert.equal(doc.manifests[0]!.mediaType, MEDIA_TYPES.ociManifest);
    assert.equal(doc.manifests[0]!.annotations!['dev.sigstore.bundle.content'], 'dsse-envelope');

    const bundles = await referrers(s, repo, image.manifest.digest, `?artifactType=${encodeURIComponent(BUNDLE_MEDIA_TYPE)}`);
    assert.deepEqual(listed(bundles), [[bundle.manifestDigest, BUNDLE_MEDIA_TYPE]]);
    assert.equal(bundles.headers.get('oci-filters-applied'), 'artifactType');
    const sboms = await referrers(s, repo, image.manifest.digest, `?artifactType=${encodeURIComponent(SPDX)}`);
    assert.deepEqual(listed(sboms), []);
    assert.equal(sboms.headers.get('oci-filters-applied'), 'artifactType');

    // A filter given twice is refused rather than read by one of its values.
    const twice = await referrers(s, repo, image.manifest.digest, `?artifactType=${SPDX}&artifactType=${SPDX}`);
    assert.equal(twice.status, 400);
    assert.equal(twice.json().errors[0].code, 'UNSUPPORTED');
  });

  test('its manifest and bundle blob are pulled through the proxy, and the bundle verifies', async () => {
    const m = await get(`${s.px.url}/v2/${repo}/manifests/${bundle.manifestDigest}`);
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(digestOf(m.body), bundle.manifestDigest);
    const manifest = m.json() as { subject: { digest: string }; layers: Array<{ digest: string; mediaType: string }> };
    assert.equal(manifest.subject.digest, image.manifest.digest);
    assert.equal(manifest.layers[0]!.mediaType, BUNDLE_MEDIA_TYPE);
    const blob = await get(`${s.px.url}/v2/${repo}/blobs/${manifest.layers[0]!.digest}`, { accept: '*/*' });
    assert.equal(blob.status, 200);
    assert.equal(digestOf(blob.body), manifest.layers[0]!.digest);
    const key = await fetch(`${s.tg.url}/api/v1/signing/public-key?gun=${encodeURIComponent(s.gun(repo))}`, {
      headers: { ...s.auth, accept: 'application/json' },
    });
    const { pem, keyId } = (await key.json()) as { pem: string; keyId: string };
    const { statement } = verifyBundle(bundleFromJSON(JSON.parse(blob.body.toString('utf8'))), { hint: keyId, key: pem });
    assert.equal((statement.subject as Array<{ digest: { sha256: string } }>)[0]!.digest.sha256, image.manifest.digest.slice(7));
    // skopeo, a registry client of its own, reads the referrer through the proxy too.
    const raw = await skopeoInspect<{ artifactType: string }>(`docker://${s.host}/${repo}@${bundle.manifestDigest}`, { raw: true });
    assert.equal(raw.artifactType, BUNDLE_MEDIA_TYPE);
  });

  test('the fallback tag is served as the upstream holds it, to fetch and to skopeo', async () => {
    const tag = tagOf(image.manifest.digest);
    const upstream = await get(`${s.reg.url}/v2/${repo}/manifests/${tag}`, { accept: INDEX });
    const got = await get(`${s.px.url}/v2/${repo}/manifests/${tag}`);
    assert.equal(got.status, 200, got.body.toString());
    assert.deepEqual(got.body, upstream.body);
    assert.equal(got.headers.get('content-type'), INDEX);
    assert.equal(got.headers.get('docker-content-digest'), digestOf(upstream.body));
    const head = await get(`${s.px.url}/v2/${repo}/manifests/${tag}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(upstream.body.length));
    const raw = await skopeoInspect<{ manifests: Descriptor[] }>(`docker://${s.host}/${repo}:${tag}`, { raw: true });
    assert.deepEqual(
      raw.manifests.map((d) => d.digest),
      [bundle.manifestDigest],
    );
    // Where no index was written yet, the upstream's 404 (a writer reads the tag before adding to it).
    const other = await signedImage(s, repo, 'v2');
    const none = await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(other.manifest.digest)}`);
    assert.equal(none.status, 404, none.body.toString());
    assert.equal(none.json().errors[0].code, 'MANIFEST_UNKNOWN');
    assert.deepEqual(listed(await referrers(s, repo, other.manifest.digest)), []);
  });
});

describe('an unsigned subject', () => {
  test('its referrers, its fallback tag and its bundle are DENIED', async () => {
    const repo = 'refs/unsigned';
    await signedImage(s, repo, 'v1'); // the repository has trust data; this image is not in it
    const rogue = await rogueImage(repo, 'rogue');
    const b = await writeBundleReferrer(reg, repo, subjectOf(rogue), { repository: s.gun(repo), tag: 'rogue' }, generateSigner('ecdsa'));
    assert.equal(b.via, 'tag-schema');
    for (const query of ['', `?artifactType=${encodeURIComponent(BUNDLE_MEDIA_TYPE)}`]) {
      const e = denied(await referrers(s, repo, rogue.manifest.digest, query));
      assert.equal(e.detail.reason, 'not-signed');
    }
    const e = denied(await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(rogue.manifest.digest)}`));
    assert.match(e.message, /not served as an artifact: its subject .* is not served/);
    assert.equal((await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(rogue.manifest.digest)}`, { method: 'HEAD' })).status, 403);
    denied(await get(`${s.px.url}/v2/${repo}/manifests/${b.manifestDigest}`));
    // Nor where the upstream has no index: the 404 is relayed only for a served subject.
    const bare = await rogueImage(repo, 'bare');
    denied(await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(bare.manifest.digest)}`));
    denied(await referrers(s, repo, bare.manifest.digest));
    // A repository without any trust data: the same.
    const none = await rogueImage('refs/no-trust', 'x');
    assert.equal(denied(await referrers(s, 'refs/no-trust', none.manifest.digest)).detail.reason, 'no-trust-data');
  });
});

describe('what the referrers list holds is checked when pulled', () => {
  test('a runnable image listed in the fallback index, or pushed as a referrer, is denied', async () => {
    const repo = 'refs/adv';
    const image = await signedImage(s, repo, 'v1');
    const rogue = await rogueImage(repo, 'rogue');
    const sbom = await artifact(repo, SPDX, image);
    // The rogue image, claimed to be a bundle, listed beside a real SBOM.
    const claimed = { ...subjectOf(rogue), artifactType: BUNDLE_MEDIA_TYPE };
    const index = await fallbackIndex(repo, image.manifest.digest, [claimed, sbom]);
    const got = await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`);
    assert.equal(got.status, 200, got.body.toString());
    assert.deepEqual(got.body, index);
    assert.equal((await get(`${s.px.url}/v2/${repo}/manifests/${sbom.digest}`)).status, 200);
    const e = denied(await get(`${s.px.url}/v2/${repo}/manifests/${rogue.manifest.digest}`));
    assert.equal(e.detail.reason, 'not-signed');
    assert.match(e.message, /layer of type application\/vnd\.oci\.image\.layer/);
    // skopeo, pulling the index as an image, gets no image out of it.
    await assert.rejects(skopeoCopy(`docker://${s.host}/${repo}:${tagOf(image.manifest.digest)}`, `oci:${layout('pulled')}:x`), /denied/);

    // The rogue image itself given the signed digest as its subject: a "referrer", still denied.
    const asReferrer = Buffer.from(
      JSON.stringify({ ...JSON.parse(rogue.manifest.bytes.toString('utf8')), artifactType: SPDX, subject: subjectOf(image) }),
    );
    assert.equal((await putManifest(s.reg.url, repo, digestOf(asReferrer), asReferrer, MEDIA_TYPES.ociManifest)).status, 201);
    await fallbackIndex(repo, image.manifest.digest, [
      sbom,
      { mediaType: MEDIA_TYPES.ociManifest, digest: digestOf(asReferrer), size: asReferrer.length, artifactType: SPDX },
    ]);
    assert.ok(listed(await referrers(s, repo, image.manifest.digest)).some(([d]) => d === digestOf(asReferrer)));
    assert.match(denied(await get(`${s.px.url}/v2/${repo}/manifests/${digestOf(asReferrer)}`)).message, /layer of type/);
  });

  test('a fallback tag that is not an index of referrer descriptors is checked as any tag, and denied', async () => {
    const repo = 'refs/shape';
    const image = await signedImage(s, repo, 'v1');
    const tag = tagOf(image.manifest.digest);
    const rogue = await rogueImage(repo, 'rogue');
    const sbom = await artifact(repo, SPDX, image);
    const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
      // An image index: entries with a platform, which a runtime picks an image from.
      [
        'a platform',
        () => fallbackIndex(repo, image.manifest.digest, [{ ...sbom, platform: { architecture: 'amd64', os: 'linux' } }]),
        /not a referrer descriptor/,
      ],
      ['no artifact type', () => fallbackIndex(repo, image.manifest.digest, [subjectOf(rogue)]), /not a referrer descriptor/],
      // A runnable image under the tag.
      ['an image', () => rogueImage(repo, tag), /does not hold an OCI index/],
    ];
    for (const [what, write, why] of cases) {
      await write();
      const e = denied(await get(`${s.px.url}/v2/${repo}/manifests/${tag}`));
      assert.equal(e.detail.reason, 'not-signed', what);
      assert.match(e.message, why, what);
      denied(await get(`${s.px.url}/v2/${repo}/manifests/${rogue.manifest.digest}`));
    }
    // The referrers API reads only an OCI index at the tag: an image there lists nothing.
    assert.deepEqual(listed(await referrers(s, repo, image.manifest.digest)), []);
  });

  test('a fallback index pushed through the proxy is not signed, so what it lists gains nothing', async () => {
    const repo = 'refs/pushed';
    const image = await signedImage(s, repo, 'v1');
    const rogue = await rogueImage(repo, 'rogue');
    // Signed on push, this image-index-shaped tag would make the rogue image a child of a signed index.
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: INDEX,
        manifests: [{ ...subjectOf(rogue), platform: { architecture: 'amd64', os: 'linux' } }],
      }),
    );
    const put = await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`, {
      method: 'PUT',
      body: bytes,
      headers: { ...s.auth, 'content-type': INDEX },
    });
    assert.equal(put.status, 201, put.body.toString());
    denied(await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`));
    denied(await get(`${s.px.url}/v2/${repo}/manifests/${rogue.manifest.digest}`));
  });

  test('in enforce mode only referrers of an allowed artifact type are listed', async () => {
    const repo = 'refs/types';
    const image = await signedImage(s, repo, 'v1');
    const sbom = await artifact(repo, SPDX, image, { 'org.example.note': 'sbom' });
    const helm = await artifact(repo, HELM, image);
    const nested = { mediaType: INDEX, digest: sbom.digest, size: sbom.size, artifactType: SPDX };
    await fallbackIndex(repo, image.manifest.digest, [sbom, helm, nested]);
    const got = await referrers(s, repo, image.manifest.digest);
    assert.deepEqual(listed(got), [[sbom.digest, SPDX]]);
    assert.deepEqual((got.json() as { manifests: Descriptor[] }).manifests[0]!.annotations, { 'org.example.note': 'sbom' });
    denied(await get(`${s.px.url}/v2/${repo}/manifests/${helm.digest}`));
  });
});

describe('signature and attestation artifacts of a signed digest', () => {
  test("a cosign .att tag of a signed digest is served with its envelope blob; an unsigned digest's is not", async () => {
    const repo = 'refs/att';
    const image = await signedImage(s, repo, 'v1');
    const rogue = await rogueImage(repo, 'rogue');
    /** cosign's attestation layout: an image config naming one DSSE envelope layer, under `sha256-<hex>.att`. */
    const attest = async (subject: string): Promise<{ tag: string; envelope: string }> => {
      const envelope = Buffer.from(
        JSON.stringify({ payloadType: 'application/vnd.in-toto+json', payload: '', signatures: [], n: subject }),
      );
      const layer = await putBlob(s.reg.url, repo, envelope);
      const config = Buffer.from(JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [layer] } }));
      const configDigest = await putBlob(s.reg.url, repo, config);
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MEDIA_TYPES.ociManifest,
          config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: config.length },
          layers: [
            {
              mediaType: 'application/vnd.dsse.envelope.v1+json',
              digest: layer,
              size: envelope.length,
              annotations: { predicateType: 'https://slsa.dev/provenance/v1' },
            },
          ],
        }),
      );
      const tag = `${tagOf(subject)}.att`;
      assert.equal((await putManifest(s.reg.url, repo, tag, manifest, MEDIA_TYPES.ociManifest)).status, 201);
      return { tag, envelope: layer };
    };
    const att = await attest(image.manifest.digest);
    const got = await get(`${s.px.url}/v2/${repo}/manifests/${att.tag}`);
    assert.equal(got.status, 200, got.body.toString());
    assert.equal((await get(`${s.px.url}/v2/${repo}/manifests/${digestOf(got.body)}`)).status, 403); // no subject: by its tag only
    const blob = await get(`${s.px.url}/v2/${repo}/blobs/${att.envelope}`, { accept: '*/*' });
    assert.equal(blob.status, 200);
    assert.equal(digestOf(blob.body), att.envelope);
    const raw = await skopeoInspect<{ layers: Array<{ mediaType: string }> }>(`docker://${s.host}/${repo}:${att.tag}`, { raw: true });
    assert.equal(raw.layers[0]!.mediaType, 'application/vnd.dsse.envelope.v1+json');
    const rogueAtt = await attest(rogue.manifest.digest);
    assert.match(denied(await get(`${s.px.url}/v2/${repo}/manifests/${rogueAtt.tag}`)).message, /is not served/);
  });
});

describe('audit and off modes', () => {
  test('audit lists the referrers of an unverified digest (a counted violation), off lists them unchecked', async () => {
    const file = path.join(work, 'policy-modes.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'default:',
        '  signOnPush: targets',
        'repositories:',
        '  - pattern: "audit/**"',
        '    mode: audit',
        '  - pattern: "off/**"',
        '    mode: "off"',
        '',
      ].join('\n'),
    );
    const t = await startStack({ reg: s.reg, env: { TRUSTGATE_POLICY: file } });
    try {
      for (const repo of ['audit/app', 'off/app']) {
        const rogue = await rogueImage(repo, 'rogue');
        const helm = await artifact(repo, HELM, rogue);
        const sbom = await artifact(repo, SPDX, rogue);
        await fallbackIndex(repo, rogue.manifest.digest, [helm, sbom]);
        assert.deepEqual(listed(await referrers(t, repo, rogue.manifest.digest)), [
          [helm.digest, HELM],
          [sbom.digest, SPDX],
        ]);
        const filtered = await referrers(t, repo, rogue.manifest.digest, `?artifactType=${encodeURIComponent(SPDX)}`);
        assert.deepEqual(listed(filtered), [[sbom.digest, SPDX]]);
        assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
        assert.equal((await get(`${t.px.url}/v2/${repo}/manifests/${tagOf(rogue.manifest.digest)}`)).status, 200);
      }
      // Two listings and the fallback tag's pull, each a violation.
      const metrics = await t.tg.app.metrics.registry.metrics();
      assert.match(metrics, /trustgate_proxy_audit_violations_total\{repository="audit\/app",reason="no-trust-data"\} 3\n/);
    } finally {
      await t.stop();
    }
  });
});

describe('bounded work', () => {
  test(`at most ${MAX_REFERRERS} referrers are listed, and a larger fallback index is not served as the tag`, async () => {
    const repo = 'refs/many';
    const image = await signedImage(s, repo, 'v1');
    const first = await artifact(repo, SPDX, image);
    // docker-registry stores an index only when it has every manifest listed: one manifest per entry.
    const manifest = (await get(`${s.reg.url}/v2/${repo}/manifests/${first.digest}`)).json() as Record<string, unknown>;
    const entries: Descriptor[] = [first];
    for (let i = 1; i <= MAX_REFERRERS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, MAX_REFERRERS + 1 - i) }, async (_x, j) => {
          const m = Buffer.from(JSON.stringify({ ...manifest, annotations: { n: String(i + j) } }));
          const put = await putManifest(s.reg.url, repo, digestOf(m), m, MEDIA_TYPES.ociManifest);
          assert.equal(put.status, 201);
          return { mediaType: MEDIA_TYPES.ociManifest, digest: digestOf(m), size: m.length, artifactType: SPDX };
        }),
      );
      entries.push(...batch);
    }
    assert.equal(entries.length, MAX_REFERRERS + 1);
    await fallbackIndex(repo, image.manifest.digest, entries);
    const list = listed(await referrers(s, repo, image.manifest.digest));
    assert.equal(list.length, MAX_REFERRERS);
    assert.deepEqual(
      list.map(([d]) => d),
      entries.slice(0, MAX_REFERRERS).map((e) => e.digest),
    );
    assert.match(
      denied(await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`)).message,
      new RegExp(`more than ${MAX_REFERRERS} manifests`),
    );
  });

  test(`a fallback index over ${MAX_INDEX_BYTES} bytes is not read`, async () => {
    const repo = 'refs/big';
    const image = await signedImage(s, repo, 'v1');
    const sbom = await artifact(repo, SPDX, image);
    await fallbackIndex(repo, image.manifest.digest, [{ ...sbom, annotations: { pad: 'x'.repeat(MAX_INDEX_BYTES) } }]);
    const got = await referrers(s, repo, image.manifest.digest);
    assert.equal(got.status, 503, got.body.toString());
    assert.match(got.json().errors[0].message, new RegExp(`larger than ${MAX_INDEX_BYTES} bytes`));
    assert.equal((await get(`${s.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`)).status, 503);
  });
});

test('a proxy whose upstream has the referrers API lists what that API answers', async () => {
  // Proxy A (over docker-registry) serves the referrers API and lists only SPDX SBOMs; proxy B,
  // with A as its upstream, lists from A's API: the bundle in the fallback index does not show.
  const file = path.join(work, 'policy-a.yaml');
  writeFileSync(file, ['version: 1', 'default:', '  signOnPush: targets', `  artifactTypes: ["${SPDX}"]`, ''].join('\n'));
  const a = await startStack({ reg: s.reg, env: { TRUSTGATE_POLICY: file } });
  let b: Stack | undefined;
  try {
    b = await startStack({ reg: s.reg, env: { TRUSTGATE_UPSTREAM: a.px.url, TRUSTGATE_UPSTREAM_TOKEN: a.token } });
    const repo = 'refs/chain';
    const image = await signedImage(b, repo, 'v1');
    const sbom = await artifact(repo, SPDX, image);
    const bundle = await writeBundleReferrer(reg, repo, subjectOf(image), { repository: b.gun(repo), tag: 'v1' }, generateSigner('ecdsa'));
    await pushReferrer(reg, repo, image.manifest.digest, (await get(`${s.reg.url}/v2/${repo}/manifests/${sbom.digest}`)).body, sbom);

    assert.deepEqual(listed(await referrers(a, repo, image.manifest.digest)), [[sbom.digest, SPDX]]);
    const viaApi = await referrers(b, repo, image.manifest.digest);
    assert.deepEqual(listed(viaApi), [[sbom.digest, SPDX]]);
    assert.deepEqual(listed(await referrers(b, repo, image.manifest.digest, `?artifactType=${encodeURIComponent(BUNDLE_MEDIA_TYPE)}`)), []);
    // The fallback tag, through both proxies, still lists both.
    const tag = await get(`${b.px.url}/v2/${repo}/manifests/${tagOf(image.manifest.digest)}`);
    assert.equal(tag.status, 200, tag.body.toString());
    assert.deepEqual(
      (tag.json() as { manifests: Descriptor[] }).manifests.map((d) => d.digest).sort(),
      [sbom.digest, bundle.manifestDigest].sort(),
    );
  } finally {
    await b?.stop();
    await a.stop();
  }
});
