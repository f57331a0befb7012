// The verifying proxy against a real docker-registry, driven by skopeo and fetch: pushes through
// the proxy are signed; pulls are served only as signed digests; everything else streams through.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Metadata, type TargetsBody } from '../../src/core/tuf/metadata.js';
import { YEAR_MS } from '../../src/core/tuf/time.js';
import { TrustService } from '../../src/trust/service.js';
import { makeImageLayout, makeIndexLayout, MEDIA_TYPES, runSkopeo, skopeoCopy, skopeoInspect } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { ACCEPT_ALL, denied, get, putBlob, putManifest, startStack, type Stack } from './support.js';
import { digestOf } from '../helpers/util.js';
import { editTargets } from '../helpers/trust-edits.js';

let s: Stack;
let work: string;
before(async () => {
  s = await startStack();
  work = await makeTempDir('proxy-test');
});
after(async () => {
  await s?.stop();
  await removeTempDir(work);
});

const layout = (name: string) => path.join(work, `${name}-${randomBytes(4).toString('hex')}`);
const signedTargets = async (repo: string, role = 'targets') => {
  const f = await s.tg.app.trust.current(s.gun(repo), role);
  return f ? Metadata.parse<TargetsBody>(role, f.bytes).body.targets : {};
};
const hexToB64 = (digest: string) => Buffer.from(digest.slice(7), 'hex').toString('base64');
const metric = async (name: string, labels: string) => {
  const line = (await s.tg.app.metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

/** Uploads a blob through the proxy: POST, then PUT to the Location the proxy gave back. */
async function uploadBlob(repo: string, bytes: Buffer): Promise<string> {
  const start = await get(`${s.px.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: s.auth });
  assert.equal(start.status, 202, start.body.toString());
  const loc = new URL(start.headers.get('location')!);
  assert.equal(loc.host, s.host, 'the upload Location points at the proxy');
  const digest = digestOf(bytes);
  loc.searchParams.set('digest', digest);
  const put = await get(loc.toString(), { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream', ...s.auth } });
  assert.equal(put.status, 201, put.body.toString());
  return digest;
}

test('a push through the proxy is signed, and pulls by tag and by digest get the signed manifest', async () => {
  const img = await makeImageLayout(layout('app'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.host}/team/app:v1`, ['--dest-creds', s.creds]);
  const targets = await signedTargets('team/app');
  assert.deepEqual(targets.v1, { hashes: { sha256: hexToB64(img.manifest.digest) }, length: img.manifest.size });

  const byTag = await get(`${s.px.url}/v2/team/app/manifests/v1`);
  assert.equal(byTag.status, 200, byTag.body.toString());
  assert.equal(byTag.headers.get('docker-content-digest'), img.manifest.digest);
  assert.equal(digestOf(byTag.body), img.manifest.digest);
  assert.equal(byTag.headers.get('content-type'), MEDIA_TYPES.ociManifest);

  const head = await get(`${s.px.url}/v2/team/app/manifests/v1`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('docker-content-digest'), img.manifest.digest);
  assert.equal(head.headers.get('content-length'), String(img.manifest.size));

  const byDigest = await get(`${s.px.url}/v2/team/app/manifests/${img.manifest.digest}`);
  assert.equal(byDigest.status, 200);
  assert.equal(digestOf(byDigest.body), img.manifest.digest);

  // A whole pull through the proxy with skopeo: manifest, config and layers.
  const out = layout('pulled');
  await skopeoCopy(`docker://${s.host}/team/app:v1`, `oci:${out}:v1`);
  const pulled = await skopeoInspect(`oci:${out}:v1`, { raw: true });
  assert.equal(digestOf(Buffer.from(JSON.stringify(pulled))), img.manifest.digest);
});

test('an image pushed straight to the upstream is denied by tag and by digest', async () => {
  const img = await makeImageLayout(layout('direct'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.reg.host}/team/direct:v1`);
  const byTag = denied(await get(`${s.px.url}/v2/team/direct/manifests/v1`));
  assert.equal(byTag.detail.reason, 'no-trust-data');
  // A signed repository with an unsigned tag.
  await skopeoCopy(img.ref, `docker://${s.reg.host}/team/app:unsigned`);
  const e = denied(await get(`${s.px.url}/v2/team/app/manifests/unsigned`));
  assert.equal(e.detail.reason, 'not-signed');
  assert.match(e.message, /no signature for tag unsigned/);
  const d = denied(await get(`${s.px.url}/v2/team/app/manifests/${img.manifest.digest}`));
  assert.equal(d.detail.reason, 'not-signed');
  // skopeo sees the refusal too
  const r = await runSkopeo(['inspect', '--tls-verify=false', '--raw', `docker://${s.host}/team/app:unsigned`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /denied/i);
});

test('when the upstream tag is re-pointed, the proxy still serves the signed digest', async () => {
  const signed = await makeImageLayout(layout('moved-a'), { tag: 'prod' });
  await skopeoCopy(signed.ref, `docker://${s.host}/team/moved:prod`, ['--dest-creds', s.creds]);
  const other = await makeImageLayout(layout('moved-b'), { tag: 'prod' });
  await skopeoCopy(other.ref, `docker://${s.reg.host}/team/moved:prod`);
  const upstream = await get(`${s.reg.url}/v2/team/moved/manifests/prod`);
  assert.equal(upstream.headers.get('docker-content-digest'), other.manifest.digest, 'the upstream tag moved');
  const viaProxy = await get(`${s.px.url}/v2/team/moved/manifests/prod`);
  assert.equal(viaProxy.status, 200);
  assert.equal(viaProxy.headers.get('docker-content-digest'), signed.manifest.digest);
  assert.equal(digestOf(viaProxy.body), signed.manifest.digest);
  denied(await get(`${s.px.url}/v2/team/moved/manifests/${other.manifest.digest}`));
});

test('a re-signed tag is served at once (verdicts are dropped when trust data changes)', async () => {
  const a = await makeImageLayout(layout('resign-a'), { tag: 'v1' });
  await skopeoCopy(a.ref, `docker://${s.host}/team/resign:v1`, ['--dest-creds', s.creds]);
  assert.equal((await get(`${s.px.url}/v2/team/resign/manifests/v1`)).headers.get('docker-content-digest'), a.manifest.digest);
  const b = await makeImageLayout(layout('resign-b'), { tag: 'v1' });
  await skopeoCopy(b.ref, `docker://${s.host}/team/resign:v1`, ['--dest-creds', s.creds]);
  assert.equal((await get(`${s.px.url}/v2/team/resign/manifests/v1`)).headers.get('docker-content-digest'), b.manifest.digest);
  // Removing the tag from the trust data (an edit outside the proxy) denies it at once.
  await editTargets(s.tg.app, s.gun('team/resign'), 'targets', (t) => void delete t.targets.v1);
  assert.equal(denied(await get(`${s.px.url}/v2/team/resign/manifests/v1`)).detail.reason, 'not-signed');
});

test('without the manifest cache every pull is checked against the upstream bytes; changed bytes are denied', async () => {
  const u = await startStack({ reg: s.reg, env: { TRUSTGATE_MANIFEST_CACHE_MB: '0' } });
  try {
    const img = await makeImageLayout(layout('tamper'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${u.host}/team/tamper:v1`, ['--dest-creds', u.creds]);
    for (let i = 0; i < 2; i++) {
      const ok = await get(`${u.px.url}/v2/team/tamper/manifests/v1`);
      assert.equal(ok.status, 200);
      assert.equal(digestOf(ok.body), img.manifest.digest);
    }
    // Change the manifest in the registry's storage, keeping its length and its validity: the last
    // digit of the config's size.
    const hex = img.manifest.digest.slice('sha256:'.length);
    const file = path.join(s.reg.dir, 'storage/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const fs = await import('node:fs/promises');
    const original = await fs.readFile(file);
    const changed = Buffer.from(
      original.toString('utf8').replace(/("size":\d*)(\d)/, (_m, head: string, d: string) => `${head}${(Number(d) + 1) % 10}`),
    );
    assert.notDeepEqual(changed, original);
    assert.equal(changed.length, original.length);
    await fs.writeFile(file, changed);
    try {
      const byTag = denied(await get(`${u.px.url}/v2/team/tamper/manifests/v1`));
      assert.equal(byTag.detail.reason, 'digest-mismatch');
      assert.match(byTag.message, /hashes to sha256:/);
      assert.equal(denied(await get(`${u.px.url}/v2/team/tamper/manifests/${img.manifest.digest}`)).detail.reason, 'digest-mismatch');
    } finally {
      await fs.writeFile(file, original);
    }
    assert.equal((await get(`${u.px.url}/v2/team/tamper/manifests/v1`)).status, 200, 'served again once the bytes are right');
  } finally {
    await u.stop();
  }
});

test('a trust change published by another process on the same database is seen once the verdict TTL has passed', async () => {
  const t = await startStack({ reg: s.reg, env: { TRUSTGATE_VERDICT_TTL_SECONDS: '1' } });
  try {
    const img = await makeImageLayout(layout('elsewhere'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${t.host}/team/elsewhere:v1`, ['--dest-creds', t.creds]);
    assert.equal((await get(`${t.px.url}/v2/team/elsewhere/manifests/v1`)).status, 200);
    // Another trustgate over the same store: its own TrustService, whose change events this
    // proxy does not hear.
    const other = new TrustService(t.tg.app.trust.store, t.tg.app.keys);
    await editTargets({ trust: other, keys: t.tg.app.keys }, t.gun('team/elsewhere'), 'targets', (b) => void delete b.targets.v1);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(denied(await get(`${t.px.url}/v2/team/elsewhere/manifests/v1`)).detail.reason, 'not-signed');
  } finally {
    await t.stop();
  }
});

test('a multi-arch index is signed as a whole; its children are allowed by digest', async () => {
  const idx = await makeIndexLayout(layout('multi'), undefined, { tag: 'v1' });
  await skopeoCopy(idx.ref, `docker://${s.host}/team/multi:v1`, ['--dest-creds', s.creds]);
  const targets = await signedTargets('team/multi');
  assert.deepEqual(Object.keys(targets), ['v1'], 'only the index tag is signed; children went by digest');
  assert.equal(targets.v1!.hashes.sha256, hexToB64(idx.index.digest));
  const index = await get(`${s.px.url}/v2/team/multi/manifests/v1`);
  assert.equal(index.headers.get('docker-content-digest'), idx.index.digest);
  for (const im of idx.images) {
    const child = await get(`${s.px.url}/v2/team/multi/manifests/${im.manifest.digest}`);
    assert.equal(child.status, 200, child.body.toString());
    assert.equal(digestOf(child.body), im.manifest.digest);
  }
  const out = layout('multi-out');
  await skopeoCopy(`docker://${s.host}/team/multi:v1`, `oci:${out}:v1`);
  // An index pushed straight to the upstream: neither it nor its children pass.
  const rogue = await makeIndexLayout(layout('multi-rogue'), undefined, { tag: 'v2' });
  await skopeoCopy(rogue.ref, `docker://${s.reg.host}/team/multi:v2`);
  denied(await get(`${s.px.url}/v2/team/multi/manifests/v2`));
  const child = denied(await get(`${s.px.url}/v2/team/multi/manifests/${rogue.images[0]!.manifest.digest}`));
  assert.match(child.message, /not listed by a signed index/);
});

test('signature artifacts and referrers are not signed on push, and are served when their subject is signed', async () => {
  const img = await makeImageLayout(layout('sig'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.host}/team/sig:v1`, ['--dest-creds', s.creds]);
  const config = Buffer.from('{}');
  const configDigest = await uploadBlob('team/sig', config);
  const artifact = (extra: object) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: configDigest, size: 2 },
        layers: [],
        ...extra,
      }),
    );
  // cosign's tag scheme
  const sigTag = `${img.manifest.digest.replace(':', '-')}.sig`;
  const sig = artifact({ artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json', annotations: { kind: 'signature' } });
  const put = await get(`${s.px.url}/v2/team/sig/manifests/${sigTag}`, {
    method: 'PUT',
    body: sig,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  });
  assert.equal(put.status, 201, put.body.toString());
  assert.deepEqual(Object.keys(await signedTargets('team/sig')), ['v1'], 'the .sig tag was not signed');
  const gotSig = await get(`${s.px.url}/v2/team/sig/manifests/${sigTag}`);
  assert.equal(gotSig.status, 200);
  assert.equal(digestOf(gotSig.body), digestOf(sig));
  // a referrer (OCI subject), pushed by tag: not signed, served by digest because its subject is signed
  const ref = artifact({
    artifactType: 'application/spdx+json',
    subject: { mediaType: MEDIA_TYPES.ociManifest, digest: img.manifest.digest, size: img.manifest.size },
    annotations: { kind: 'sbom' },
  });
  const refPut = await get(`${s.px.url}/v2/team/sig/manifests/sbom`, {
    method: 'PUT',
    body: ref,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  });
  assert.equal(refPut.status, 201, refPut.body.toString());
  assert.deepEqual(Object.keys(await signedTargets('team/sig')), ['v1']);
  assert.equal((await get(`${s.px.url}/v2/team/sig/manifests/${digestOf(ref)}`)).status, 200);
  // the same artifacts about an unsigned digest are denied
  const stray = await makeImageLayout(layout('sig-stray'), { tag: 'x' });
  await skopeoCopy(stray.ref, `docker://${s.reg.host}/team/sig:x`);
  const straySig = `${stray.manifest.digest.replace(':', '-')}.sig`;
  assert.equal((await putManifest(s.reg.url, 'team/sig', straySig, sig, MEDIA_TYPES.ociManifest)).status, 201);
  denied(await get(`${s.px.url}/v2/team/sig/manifests/${straySig}`));
  const strayRef = artifact({
    artifactType: 'application/spdx+json',
    subject: { mediaType: MEDIA_TYPES.ociManifest, digest: stray.manifest.digest, size: stray.manifest.size },
  });
  assert.equal((await putManifest(s.reg.url, 'team/sig', digestOf(strayRef), strayRef, MEDIA_TYPES.ociManifest)).status, 201);
  denied(await get(`${s.px.url}/v2/team/sig/manifests/${digestOf(strayRef)}`));
});

test('uploads: chunked, monolithic and cross-repository mount, with Locations pointing at the proxy; blobs with Range', async () => {
  const data = randomBytes(300_000);
  const digest = digestOf(data);
  const start = await get(`${s.px.url}/v2/team/up/blobs/uploads/`, { method: 'POST', headers: s.auth });
  assert.equal(start.status, 202);
  let loc = start.headers.get('location')!;
  assert.ok(loc.startsWith(`${s.px.url}/v2/team/up/blobs/uploads/`), loc);
  for (const [from, to] of [
    [0, 100_000],
    [100_000, 300_000],
  ] as const) {
    const chunk = await get(loc, {
      method: 'PATCH',
      body: data.subarray(from, to),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${from}-${to - 1}`, ...s.auth },
    });
    assert.equal(chunk.status, 202, chunk.body.toString());
    assert.equal(chunk.headers.get('range'), `0-${to - 1}`);
    loc = chunk.headers.get('location')!;
    assert.ok(loc.startsWith(s.px.url), loc);
  }
  const status = await get(loc);
  assert.equal(status.status, 204);
  const fin = new URL(loc);
  fin.searchParams.set('digest', digest);
  const done = await get(fin.toString(), { method: 'PUT', headers: s.auth });
  assert.equal(done.status, 201, done.body.toString());
  assert.ok(done.headers.get('location')!.startsWith(s.px.url));

  const bodies = async (): Promise<[number, number]> => [
    await metric('trustgate_proxy_blob_bodies_total', 'via="socket"'),
    await metric('trustgate_proxy_blob_bodies_total', 'via="client"'),
  ];
  const [socketBefore, clientBefore] = await bodies();
  const headBlob = await get(`${s.px.url}/v2/team/up/blobs/${digest}`, { method: 'HEAD' });
  assert.equal(headBlob.status, 200);
  assert.equal(headBlob.headers.get('content-length'), String(data.length));
  const range = await get(`${s.px.url}/v2/team/up/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, data.subarray(10, 20));
  const whole = await get(`${s.px.url}/v2/team/up/blobs/${digest}`);
  assert.equal(digestOf(whole.body), digest);

  const mount = await get(`${s.px.url}/v2/team/up2/blobs/uploads/?mount=${digest}&from=team/up`, { method: 'POST', headers: s.auth });
  assert.equal(mount.status, 201, mount.body.toString());
  assert.equal((await get(`${s.reg.url}/v2/team/up2/blobs/${digest}`, { method: 'HEAD' })).status, 200);
  // monolithic: one PUT with the whole body to the Location of the POST
  const mono = randomBytes(1000);
  assert.equal(await uploadBlob('team/up', mono), digestOf(mono));
  assert.equal(digestOf((await get(`${s.reg.url}/v2/team/up/blobs/${digestOf(mono)}`)).body), digestOf(mono));
  // unknown blobs: the registry's own error comes through
  const unknown = await get(`${s.px.url}/v2/team/up/blobs/sha256:${'0'.repeat(64)}`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json().errors[0].code, 'BLOB_UNKNOWN');
  // Blob bodies came straight from the upstream's socket; the 404 went through node's client.
  const [socketAfter, clientAfter] = await bodies();
  assert.equal(socketAfter - socketBefore, 2);
  assert.equal(clientAfter - clientBefore, 1);
});

test('416: relayed range error ends with a correct length', async () => {
  // docker-registry answers these with the blob's Content-Length and a short body (or none), then
  // closes: relayed as they came, the client waits for bytes that never come, or is cut off.
  const data = randomBytes(1000);
  const digest = await putBlob(s.reg.url, 'team/range', data);
  const url = `${s.px.url}/v2/team/range/blobs/${digest}`;
  const fetchWhole = async (headers: Record<string, string>, method = 'GET') => {
    const r = await fetch(url, { method, headers, signal: AbortSignal.timeout(3000) });
    return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
  };
  const range = await fetchWhole({ range: 'bytes=5000-6000' });
  assert.equal(range.status, 416);
  assert.equal(range.headers.get('content-range'), `bytes */${data.length}`);
  assert.match(range.body.toString(), /invalid range/);
  assert.equal(range.headers.get('content-length'), String(range.body.length));
  const precondition = await fetchWhole({ 'if-match': '"sha256:nope"' });
  assert.equal(precondition.status, 412);
  assert.equal(precondition.headers.get('content-length'), String(precondition.body.length));
  // HEAD keeps the size it describes; a good range and the whole blob still stream.
  const head = await fetchWhole({}, 'HEAD');
  assert.equal(head.headers.get('content-length'), String(data.length));
  assert.deepEqual((await fetchWhole({ range: 'bytes=10-19' })).body, data.subarray(10, 20));
  assert.deepEqual((await fetchWhole({})).body, data);
});

test('tag lists and the catalog with paging go through, with Link headers pointing at the proxy', async () => {
  const tags = await get(`${s.px.url}/v2/team/app/tags/list`);
  assert.equal(tags.status, 200);
  assert.ok(tags.json().tags.includes('v1'));
  const seen: string[] = [];
  let next: string | undefined = `${s.px.url}/v2/_catalog?n=2`;
  for (let i = 0; next && i < 20; i++) {
    const page = await get(next, { headers: s.auth });
    assert.equal(page.status, 200);
    seen.push(...page.json().repositories);
    const link = page.headers.get('link');
    next = link ? new URL(/<([^>]+)>/.exec(link)![1]!, s.px.url).toString() : undefined;
    if (next) assert.ok(next.startsWith(s.px.url), next);
  }
  const direct = (await get(`${s.reg.url}/v2/_catalog?n=1000`)).json().repositories;
  assert.deepEqual(seen, direct);
  assert.ok(seen.length > 2);
  const ping = await get(`${s.px.url}/v2/`, { headers: s.auth });
  assert.equal(ping.status, 200);
  assert.equal(ping.headers.get('docker-distribution-api-version'), 'registry/2.0');
  const bad = await get(`${s.px.url}/v2/Team/x/manifests/v1`);
  assert.equal(bad.status, 404);
  assert.equal(bad.json().errors[0].code, 'NAME_INVALID');
});

test('16 concurrent pulls all get the signed manifest and intact blobs', async () => {
  const img = await makeImageLayout(layout('conc'), { tag: 'v1', layers: 2, layerBytes: 200_000 });
  await skopeoCopy(img.ref, `docker://${s.host}/team/conc:v1`, ['--dest-creds', s.creds]);
  await s.px.cache.clear();
  const pulls = Array.from({ length: 16 }, async () => {
    const m = await get(`${s.px.url}/v2/team/conc/manifests/v1`);
    assert.equal(m.status, 200);
    assert.equal(digestOf(m.body), img.manifest.digest);
    for (const l of img.layers) assert.equal(digestOf((await get(`${s.px.url}/v2/team/conc/blobs/${l.digest}`)).body), l.digest);
  });
  await Promise.all(pulls);
  const outs = await Promise.all(Array.from({ length: 4 }, () => skopeoInspect(`docker://${s.host}/team/conc:v1`, { raw: true })));
  for (const o of outs) assert.equal(digestOf(Buffer.from(JSON.stringify(o))), img.manifest.digest);
});

test('signing a push waits for other edits of the same GUN in this process', async () => {
  const img = await makeImageLayout(layout('locked'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.host}/team/locked:v1`, ['--dest-creds', s.creds]);
  let released = 0;
  // The management API (and the signing service) hold this queue while they change a GUN.
  const held = s.tg.app.management.locks.run(s.gun('team/locked'), async () => {
    await new Promise((r) => setTimeout(r, 800));
    released = Date.now();
  });
  const put = await get(`${s.px.url}/v2/team/locked/manifests/v2`, {
    method: 'PUT',
    body: img.manifest.bytes,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  });
  const answered = Date.now();
  await held;
  assert.equal(put.status, 201, put.body.toString());
  assert.ok(released > 0 && answered >= released, 'the push was signed only after the other edit finished');
  assert.ok((await signedTargets('team/locked')).v2);
});

test('a failed signing answers the push with an error and is audited', async () => {
  const entries: Array<{ action: string; outcome: string; detail?: Record<string, unknown> }> = [];
  const fs = await import('node:fs/promises');
  const policy = path.join(work, 'policy-signfail.yaml');
  await fs.writeFile(policy, 'version: 1\ndefault:\n  signOnPush: targets/a/b\n');
  const bad = await startStack({ env: { TRUSTGATE_POLICY: policy }, reg: s.reg, extra: { audit: { append: (e) => entries.push(e) } } });
  try {
    const img = await makeImageLayout(layout('signfail'), { tag: 'v1' });
    await assert.rejects(
      skopeoCopy(img.ref, `docker://${bad.host}/team/signfail:v1`, ['--dest-creds', bad.creds]),
      /signing it into targets\/a\/b failed|500/,
    );
    const res = await get(`${bad.px.url}/v2/team/signfail/manifests/v1`, {
      method: 'PUT',
      body: img.manifest.bytes,
      headers: { 'content-type': MEDIA_TYPES.ociManifest, ...bad.auth },
    });
    assert.equal(res.status, 500);
    const err = res.json().errors[0];
    assert.equal(err.detail.reason, 'signing-failed');
    assert.match(err.message, /stored upstream as sha256:[0-9a-f]{64} but signing it into targets\/a\/b failed/);
    assert.ok(entries.some((e) => e.action === 'proxy.sign' && e.outcome === 'failure'));
  } finally {
    await bad.stop();
  }
});

test('expired trust data is denied with the reason', async () => {
  let offset = 0;
  const t = await startStack({ overrides: { now: () => Date.now() + offset }, reg: s.reg });
  try {
    const img = await makeImageLayout(layout('exp'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${t.host}/team/expiring:v1`, ['--dest-creds', t.creds]);
    assert.equal((await get(`${t.px.url}/v2/team/expiring/manifests/v1`)).status, 200);
    offset = 4 * YEAR_MS; // targets live 3 years; the server re-signs only timestamp and snapshot
    const e = denied(await get(`${t.px.url}/v2/team/expiring/manifests/v1`));
    assert.equal(e.detail.reason, 'expired');
    assert.equal(e.detail.role, 'targets');
    assert.match(e.message, /targets expired at/);
    denied(await get(`${t.px.url}/v2/team/expiring/manifests/${img.manifest.digest}`));
  } finally {
    await t.stop();
  }
});

test('upstream down: pulls and pushes fail closed with a clear error', async () => {
  const { startRegistry } = await import('../helpers/services.js');
  const reg = await startRegistry();
  const t = await startStack({ reg });
  try {
    const img = await makeImageLayout(layout('down'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${t.host}/team/down:v1`, ['--dest-creds', t.creds]);
    await reg.stop();
    for (const url of [
      `${t.px.url}/v2/team/down/manifests/v1`,
      `${t.px.url}/v2/team/down/manifests/${img.manifest.digest}`,
      `${t.px.url}/v2/team/down/blobs/${img.layers[0]!.digest}`,
      `${t.px.url}/v2/`,
    ]) {
      const r = await get(url, { accept: ACCEPT_ALL, headers: t.auth });
      assert.equal(r.status, 503, `${url}: ${r.body.toString()}`);
      const e = r.json().errors[0];
      assert.equal(e.code, 'UNAVAILABLE');
      assert.match(e.message, /upstream registry unavailable/);
    }
    const push = await get(`${t.px.url}/v2/team/down/manifests/v2`, {
      method: 'PUT',
      body: img.manifest.bytes,
      headers: { 'content-type': MEDIA_TYPES.ociManifest, ...t.auth },
    });
    assert.equal(push.status, 503);
    assert.equal(push.json().errors[0].code, 'UNAVAILABLE');
    // an unsigned tag is still denied (trust is checked first), never passed through
    denied(await get(`${t.px.url}/v2/team/down/manifests/other`));
  } finally {
    await t.stop();
  }
});
