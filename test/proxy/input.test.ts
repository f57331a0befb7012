// Bad input at the proxy: odd names and oversized bodies get a clear OCI 4xx error, never a
// dropped connection, and nothing of them reaches the upstream or the trust data.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { MAX_GUN_LENGTH } from '../../src/core/tuf/gun.js';
import { startProxy } from '../../src/proxy/index.js';
import { MAX_MANIFEST_BYTES } from '../../src/proxy/manifests.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { get, startStack, type Stack } from './support.js';
import { digestOf } from '../helpers/util.js';

let s: Stack;
before(async () => {
  s = await startStack();
});
after(async () => {
  await s?.stop();
});

/** A manifest the upstream accepts in `repo` (its config blob pushed straight to the upstream). */
async function manifestFor(repo: string): Promise<Buffer> {
  const config = Buffer.from('{}');
  const start = await get(`${s.reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202, start.body.toString());
  const loc = new URL(start.headers.get('location')!, s.reg.url);
  loc.searchParams.set('digest', digestOf(config));
  assert.equal((await get(loc.toString(), { method: 'PUT', body: config })).status, 201);
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: [],
    }),
  );
}

test('a manifest push over the size limit is answered 413 SIZE_INVALID, not a reset connection', async () => {
  const big = Buffer.alloc(MAX_MANIFEST_BYTES + 1024 * 1024, 0x20);
  const r = await get(`${s.px.url}/v2/team/big/manifests/v1`, {
    method: 'PUT',
    body: big,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  });
  assert.equal(r.status, 413, r.body.toString());
  assert.equal(r.json().errors[0].code, 'SIZE_INVALID');
  // Without a Content-Length (chunked), the limit is found while reading.
  const chunks = [big.subarray(0, 1024 * 1024), big.subarray(1024 * 1024)];
  const stream = new ReadableStream({ pull: (c) => (chunks.length ? c.enqueue(new Uint8Array(chunks.shift()!)) : c.close()) });
  const chunked = await fetch(`${s.px.url}/v2/team/big/manifests/v1`, {
    method: 'PUT',
    body: stream,
    duplex: 'half',
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  } as RequestInit);
  assert.equal(chunked.status, 413);
  assert.equal((await chunked.json()).errors[0].code, 'SIZE_INVALID');
  assert.equal((await get(`${s.reg.url}/v2/team/big/manifests/v1`)).status, 404, 'nothing reached the upstream');
});

test('a proxy on an IPv6 address without TRUSTGATE_REGISTRY_NAME refuses to start: `[::1]:port` cannot begin a GUN', async () => {
  // Every GUN would have been `[::1]:<port>/<repo>`, which the trust server refuses: each pull was
  // denied and each push failed to sign, long after a start that looked fine.
  await assert.rejects(
    startProxy(s.tg.app, {}, { host: '::1', port: 0 }),
    (e: Error) => /TRUSTGATE_REGISTRY_NAME/.test(e.message) && e.message.includes('[::1]'),
  );
  // Nothing was left listening: the same app can start a proxy on IPv4 again.
  const again = await startProxy(s.tg.app, {}, { host: '127.0.0.1', port: 0 });
  try {
    assert.equal((await get(`${again.url}/v2/`, { headers: s.auth })).status, 200);
  } finally {
    await again.close();
  }
});

test('a name whose GUN trustgate cannot hold (over 255 bytes with the registry part) is NAME_INVALID, and nothing is stored or signed', async () => {
  // A valid registry name (under 255 characters) that only the registry part pushes over.
  const repo = `team/${'n'.repeat(MAX_GUN_LENGTH - s.gun('team/').length + 1)}`;
  assert.ok(repo.length <= 255 && s.gun(repo).length === MAX_GUN_LENGTH + 1);
  const manifest = await manifestFor(repo);
  const push = await get(`${s.px.url}/v2/${repo}/manifests/v1`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, ...s.auth },
  });
  assert.equal(push.status, 404, push.body.toString());
  assert.equal(push.json().errors[0].code, 'NAME_INVALID');
  assert.equal((await get(`${s.reg.url}/v2/${repo}/manifests/v1`)).status, 404, 'nothing reached the upstream');
  assert.equal(await s.tg.app.trust.current(s.gun(repo), 'root'), undefined, 'no trust data was made for it');
  for (const method of ['GET', 'HEAD']) {
    const pull = await get(`${s.px.url}/v2/${repo}/manifests/v1`, { method });
    assert.equal(pull.status, 404, method);
  }
  const longer = await get(`${s.px.url}/v2/${'a'.repeat(300)}/manifests/v1`);
  assert.equal(longer.status, 404);
  assert.equal(longer.json().errors[0].code, 'NAME_INVALID');
});

test('a manifest fetch the upstream answers with a redirect is not relayed: the client would fetch unchecked bytes', async () => {
  // The real registry behind a front that sends manifest fetches by digest elsewhere, as a
  // compromised or misconfigured upstream could.
  const front = http.createServer((req, res) => {
    if (req.method === 'GET' && /\/manifests\/sha256:/.test(req.url ?? '')) {
      res.writeHead(307, { Location: `${s.reg.url}/v2/elsewhere/manifests/unsigned` });
      return res.end();
    }
    const up = http.request(`${s.reg.url}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const port = (front.address() as AddressInfo).port;
  const t = await startStack({
    reg: { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, port, dir: '', logFile: '', stop: async () => {} },
  });
  const work = await makeTempDir('proxy-redirect');
  try {
    const img = await makeImageLayout(path.join(work, 'img'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${t.host}/team/redirected:v1`, ['--dest-creds', t.creds]);
    for (const method of ['GET', 'HEAD']) {
      const r = await get(`${t.px.url}/v2/team/redirected/manifests/v1`, { method });
      assert.equal(r.headers.get('location'), null, `${method}: no redirect relayed`);
      assert.equal(r.status, 503, method);
    }
    assert.equal((await get(`${t.px.url}/v2/team/redirected/manifests/v1`)).json().errors[0].code, 'UNAVAILABLE');
  } finally {
    await t.stop();
    front.closeAllConnections();
    front.close();
    await removeTempDir(work);
  }
});
