// Proves the test harness works against the REAL external components
// (docker-registry, skopeo, notary/notary-server, PostgreSQL, Redis, SoftHSM2).
// If these fail, every other interop test is meaningless, so they run first-ish
// and keep assertions about the harness itself, not about trustgate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { freePort, waitForPort } from '../helpers/ports.js';
import {
  initSoftHsm,
  makeTempDir,
  removeTempDir,
  runCommandOk,
  startNotaryServer,
  startPostgres,
  startRedis,
  startRegistry,
} from '../helpers/services.js';
import { MEDIA_TYPES, makeImageLayout, makeIndexLayout, sha256Digest, skopeoCopy, skopeoInspect, tarHeader } from '../helpers/oci.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { makeTestCerts } from '../helpers/tls.js';

test('ports: freePort gives a bindable port and waitForPort times out on a closed one', async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  await assert.rejects(waitForPort(port, 300), /not accepting/);
});

test('oci: tar header checksum is valid ustar', () => {
  const h = tarHeader('hello.txt', 5);
  assert.equal(h.length, 512);
  const stored = parseInt(h.subarray(148, 154).toString('latin1'), 8);
  const copy = Buffer.from(h);
  copy.fill(0x20, 148, 156);
  assert.equal(
    stored,
    copy.reduce((a, b) => a + b, 0),
  );
  assert.equal(h.subarray(257, 263).toString('latin1'), 'ustar\0');
});

test('registry: skopeo pushes a hand-built OCI image and pulls it back byte-identical', async () => {
  const reg = await startRegistry();
  const work = await makeTempDir('harness-oci');
  try {
    const img = await makeImageLayout(path.join(work, 'src'), { tag: 'v1', layers: 2 });
    await skopeoCopy(img.ref, `docker://${reg.host}/ns/app:v1`);

    const res = await fetch(`${reg.url}/v2/ns/app/manifests/v1`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), MEDIA_TYPES.ociManifest);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(sha256Digest(body), img.manifest.digest);
    assert.equal(body.length, img.manifest.size);
    assert.equal(res.headers.get('docker-content-digest'), img.manifest.digest);

    // Blobs are served verbatim too.
    const layer = img.layers[0]!;
    const blob = Buffer.from(await (await fetch(`${reg.url}/v2/ns/app/blobs/${layer.digest}`)).arrayBuffer());
    assert.equal(sha256Digest(blob), layer.digest);

    const inspected = await skopeoInspect<{ Digest: string; Architecture: string }>(`docker://${reg.host}/ns/app:v1`);
    assert.equal(inspected.Digest, img.manifest.digest);
    assert.equal(inspected.Architecture, 'amd64');

    const back = path.join(work, 'back');
    await skopeoCopy(`docker://${reg.host}/ns/app:v1`, `oci:${back}:v1`);
    const idx = JSON.parse(await fsp.readFile(path.join(back, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(idx.manifests[0]?.digest, img.manifest.digest);
    const pulled = await fsp.readFile(path.join(back, 'blobs', 'sha256', img.manifest.digest.slice(7)));
    assert.deepEqual(pulled, img.manifest.bytes);

    // Deletes are enabled (the proxy tests rely on this).
    const del = await fetch(`${reg.url}/v2/ns/app/manifests/${img.manifest.digest}`, { method: 'DELETE' });
    assert.equal(del.status, 202);
  } finally {
    await reg.stop();
    await removeTempDir(work);
  }
});

test('registry: multi-arch index push with --all keeps the index digest', async () => {
  const reg = await startRegistry();
  const work = await makeTempDir('harness-index');
  try {
    const lay = await makeIndexLayout(path.join(work, 'src'), undefined, { tag: 'multi' });
    assert.equal(lay.images.length, 2);
    await skopeoCopy(lay.ref, `docker://${reg.host}/ns/multi:multi`);

    const res = await fetch(`${reg.url}/v2/ns/multi/manifests/multi`, {
      headers: { Accept: `${MEDIA_TYPES.ociIndex}, ${MEDIA_TYPES.ociManifest}` },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), MEDIA_TYPES.ociIndex);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(sha256Digest(body), lay.index.digest);

    for (const im of lay.images) {
      const r = await fetch(`${reg.url}/v2/ns/multi/manifests/${im.manifest.digest}`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
      assert.equal(r.status, 200, `platform ${im.platform.architecture}`);
      assert.equal(sha256Digest(Buffer.from(await r.arrayBuffer())), im.manifest.digest);
    }
    const raw = await skopeoInspect<{ manifests: { platform: { architecture: string } }[] }>(`docker://${reg.host}/ns/multi:multi`, {
      raw: true,
    });
    assert.deepEqual(
      raw.manifests.map((m) => m.platform.architecture),
      ['amd64', 'arm64'],
    );
  } finally {
    await reg.stop();
    await removeTempDir(work);
  }
});

test('registry: big uncompressed layer is streamed to disk and pushed', async () => {
  const reg = await startRegistry();
  const work = await makeTempDir('harness-big');
  try {
    const img = await makeImageLayout(path.join(work, 'src'), { tag: 'big', layerBytes: 32 * 1024 * 1024 });
    const layer = img.layers[0]!;
    assert.equal(layer.mediaType, MEDIA_TYPES.ociLayerTar);
    assert.equal(layer.diffId, layer.digest);
    // Recompute the digest from disk to prove the streamed hash is right.
    const h = createHash('sha256');
    for await (const chunk of (await fsp.open(layer.path)).createReadStream()) h.update(chunk as Buffer);
    assert.equal(`sha256:${h.digest('hex')}`, layer.digest);
    assert.equal((await fsp.stat(layer.path)).size, layer.size);

    await skopeoCopy(img.ref, `docker://${reg.host}/ns/big:big`);
    const head = await fetch(`${reg.url}/v2/ns/big/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), layer.size);
  } finally {
    await reg.stop();
    await removeTempDir(work);
  }
});

test('notary: reference CLI init/addhash/publish against reference notary-server; fresh client lists it', async () => {
  const server = await startNotaryServer();
  const alice = await notaryCli({ server: server.url });
  const bob = await notaryCli({ server: server.url });
  try {
    const gun = '127.0.0.1:5000/ns/app';
    const hex = createHash('sha256').update('hello').digest('hex');
    await alice.runOk(['init', gun, '-p']);
    await alice.runOk(['addhash', gun, 'v1', '1234', '--sha256', hex, '-p']);

    const listed = await bob.runOk(['list', gun]);
    assert.deepEqual(parseNotaryList(listed.stdout), [{ name: 'v1', digest: hex, size: 1234, role: 'targets' }]);

    // Missing trust data is a clean non-zero exit, not a hang.
    const missing = await bob.run(['list', 'example.com/none']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr + missing.stdout, /does not have trust data/);
  } finally {
    await alice.cleanup();
    await bob.cleanup();
    await server.stop();
  }
});

test('notary: https notary-server with the test CA', async () => {
  const certs = await makeTestCerts();
  const server = await startNotaryServer({ tls: { cert: certs.cert, key: certs.key, caCert: certs.caCert } });
  const cli = await notaryCli({ server: server.url, tlsCaCert: certs.caCert });
  try {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const gun = 'localhost/tls/app';
    await cli.runOk(['init', gun, '-p']);
    await cli.runOk(['addhash', gun, 'v2', '10', '--sha256', 'ab'.repeat(32), '-p']);
    const out = await cli.runOk(['list', gun]);
    assert.equal(parseNotaryList(out.stdout)[0]?.name, 'v2');

    // Without the CA the Go client refuses the server.
    const untrusting = await notaryCli({ server: server.url });
    try {
      const r = await untrusting.run(['list', gun]);
      assert.notEqual(r.code, 0);
    } finally {
      await untrusting.cleanup();
    }
  } finally {
    await cli.cleanup();
    await server.stop();
    await certs.cleanup();
  }
});

test('postgres: throwaway cluster answers select 1', async () => {
  const db = await startPostgres();
  const client = new pg.Client({ connectionString: db.url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    const r = await client.query<{ one: number; db: string }>('select 1 as one, current_database() as db');
    assert.equal(r.rows[0]?.one, 1);
    assert.equal(r.rows[0]?.db, 'trustgate');
  } finally {
    await client.end().catch(() => {});
    await db.stop();
  }
});

test('redis: raw RESP PING gets +PONG', async () => {
  const redis = await startRedis();
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: redis.port });
      let buf = '';
      sock.setTimeout(5000, () => sock.destroy(new Error('redis PING timed out')));
      sock.once('error', reject);
      sock.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        if (buf.includes('\r\n')) {
          sock.end();
          resolve(buf);
        }
      });
      sock.write('*1\r\n$4\r\nPING\r\n');
    });
    assert.equal(reply, '+PONG\r\n');
  } finally {
    await redis.stop();
  }
});

test('softhsm: token is initialized in a private token dir', async () => {
  const hsm = await initSoftHsm();
  try {
    await fsp.access(hsm.module);
    assert.match(hsm.module, /libsofthsm2\.so$/);
    const r = await runCommandOk('softhsm2-util', ['--show-slots'], { env: hsm.env, timeoutMs: 30_000 });
    assert.match(r.stdout, /Label:\s+trustgate\s*$/m);
    assert.ok(hsm.slot, 'slot id parsed from softhsm2-util output');
    assert.match(r.stdout, new RegExp(`Slot ${hsm.slot}\\b`));
  } finally {
    await hsm.cleanup();
  }
});
