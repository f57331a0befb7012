// Interop: the REAL notary CLI (/usr/bin/notary, 0.7.x) against a running trustgate, and the
// same flow against the reference notary-server for parity. No mocks: every assertion is about
// what the real client prints / exits with, or about the metadata trustgate serves over HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { notaryCli, parseNotaryList, type NotaryCli } from '../helpers/notary-cli.js';
import { makeTempDir, removeTempDir, runCommandOk, startNotaryServer } from '../helpers/services.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

const sha256Hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const sha512B64 = (b: Buffer) => createHash('sha512').update(b).digest('base64');

/** A realistic OCI image manifest: what a docker tag's target would point at. */
function fakeManifest(label: string): { bytes: Buffer; hex: string; size: number } {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256Hex(`config-${label}`)}`, size: 1469 },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha256Hex(`layer-${label}`)}`, size: 3623807 },
      ],
    }),
  );
  return { bytes, hex: sha256Hex(bytes), size: bytes.length };
}

interface Envelope<T = Record<string, unknown>> {
  signed: T & { _type: string; version: number; expires: string };
  signatures: { keyid: string; method: string; sig: string }[];
}
interface KeyJson {
  keytype: string;
  keyval: { public: string; private: null | string };
}
interface RoleKeys {
  keyids: string[];
  threshold: number;
}
interface RootSigned {
  keys: Record<string, KeyJson>;
  roles: Record<'root' | 'targets' | 'snapshot' | 'timestamp', RoleKeys>;
}
interface FileMeta {
  hashes: { sha256?: string; sha512?: string };
  length: number;
}
interface TargetsSigned {
  targets: Record<string, FileMeta>;
  delegations: { keys: Record<string, KeyJson>; roles: (RoleKeys & { name: string; paths?: string[] })[] };
}
interface SnapshotSigned {
  meta: Record<string, FileMeta>;
}

/** GET a file under /v2/<gun>/_trust/tuf/ and keep the exact bytes. */
async function getTuf(
  base: string,
  gun: string,
  file: string,
  token?: string,
): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const headers = token ? { Authorization: `Bearer ${token}` } : undefined;
  const res = await fetch(`${base}/v2/${gun}/_trust/tuf/${file}`, { signal: AbortSignal.timeout(10_000), ...(headers ? { headers } : {}) });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

async function getJson<T>(base: string, gun: string, file: string): Promise<{ env: Envelope<T>; bytes: Buffer }> {
  const r = await getTuf(base, gun, file);
  assert.equal(r.status, 200, `GET ${file}: ${r.status} ${r.bytes.toString()}`);
  return { env: JSON.parse(r.bytes.toString('utf8')) as Envelope<T>, bytes: r.bytes };
}

/** TUF key id of a key as it appears in metadata (spec §5.6); written out by hand, independent of src/. */
function tufKeyId(keytype: string, publicB64: string): string {
  return sha256Hex(`{"keytype":"${keytype}","keyval":{"private":null,"public":"${publicB64}"}}`);
}

/** Checks the timestamp → snapshot → role hash chain that clients verify, for every role in snapshot meta. */
async function assertHashChain(base: string, gun: string): Promise<Envelope<SnapshotSigned>> {
  const ts = await getJson<{ meta: { snapshot: FileMeta } }>(base, gun, 'timestamp.json');
  const snap = await getJson<SnapshotSigned>(base, gun, 'snapshot.json');
  const tsMeta = ts.env.signed.meta.snapshot;
  assert.equal(tsMeta.length, snap.bytes.length, 'timestamp length of snapshot');
  assert.equal(Buffer.from(tsMeta.hashes.sha256!, 'base64').toString('hex'), sha256Hex(snap.bytes), 'timestamp sha256 of snapshot');
  assert.equal(tsMeta.hashes.sha512, sha512B64(snap.bytes), 'timestamp sha512 of snapshot');
  for (const [role, fm] of Object.entries(snap.env.signed.meta)) {
    const hex = Buffer.from(fm.hashes.sha256!, 'base64').toString('hex');
    // The checksum URL the client uses must return exactly the bytes the snapshot describes.
    const byHash = await getTuf(base, gun, `${role}.${hex}.json`);
    assert.equal(byHash.status, 200, `GET ${role}.${hex}.json`);
    assert.equal(sha256Hex(byHash.bytes), hex);
    assert.equal(byHash.bytes.length, fm.length, `length of ${role}`);
    // And the "current" URL must resolve through the same chain.
    const cur = await getTuf(base, gun, `${role}.json`);
    assert.equal(cur.status, 200);
    assert.deepEqual(cur.bytes, byHash.bytes, `${role}.json is the file named by snapshot`);
  }
  return snap.env;
}

/** EC P-256 key + self-signed cert made with openssl (spec §8.2 step 6). */
async function makeDelegationCert(dir: string, name: string): Promise<{ key: string; cert: string; keyId: string; canonicalId: string }> {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  await runCommandOk('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], { timeoutMs: 30_000 });
  await runCommandOk('openssl', ['req', '-new', '-x509', '-key', key, '-out', cert, '-days', '3650', '-sha256', '-subj', `/CN=${name}`], {
    timeoutMs: 30_000,
  });
  // In metadata notary puts the PEM text of the cert in keyval.public (keytype ecdsa-x509) and
  // hashes that; the CLI prints the canonical id, the id of the bare public key (spec §5.6).
  const pem = await fsp.readFile(cert);
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return { key, cert, keyId: tufKeyId('ecdsa-x509', pem.toString('base64')), canonicalId: tufKeyId('ecdsa', spki.toString('base64')) };
}

/** Runs fn with a trustgate and any number of notary clients (each its own trust dir / HOME), then cleans up. */
async function withTrustgate(clients: number, fn: (tg: RunningTrustgate, cli: NotaryCli[]) => Promise<void>): Promise<void> {
  const tg = await startTrustgate();
  const clis: NotaryCli[] = [];
  try {
    for (let i = 0; i < clients; i++) clis.push(await notaryCli({ server: tg.url, token: tg.adminToken }));
    await fn(tg, clis);
  } finally {
    for (const c of clis) await c.cleanup();
    await tg.stop();
  }
}

const noTargets = (stdout: string) => /No targets present in this repository/.test(stdout);

test('notary: init, addhash, list from a fresh trust dir, lookup, remove', async () => {
  await withTrustgate(3, async (tg, [alice, bob, carol]) => {
    const gun = 'registry.example.com/ns/app';
    const m = fakeManifest('v1');

    const init = await alice!.runOk(['init', gun, '-p']);
    assert.match(init.stdout, /Successfully published changes for repository registry\.example\.com\/ns\/app/);
    // Spec §6: init publishes root v1, targets v2, snapshot v2; the server adds timestamp v1.
    const root = await getJson<RootSigned>(tg.url, gun, 'root.json');
    assert.equal(root.env.signed._type, 'Root');
    assert.equal(root.env.signed.version, 1);
    assert.equal((await getJson(tg.url, gun, 'targets.json')).env.signed.version, 2);
    assert.equal((await getJson(tg.url, gun, 'snapshot.json')).env.signed.version, 2);
    assert.equal((await getJson(tg.url, gun, 'timestamp.json')).env.signed.version, 1);
    // Root keys are x509 certs; the key id hashes the PEM text.
    const rootKeyId = root.env.signed.roles.root.keyids[0]!;
    const rootKey = root.env.signed.keys[rootKeyId]!;
    assert.equal(rootKey.keytype, 'ecdsa-x509');
    assert.equal(tufKeyId(rootKey.keytype, rootKey.keyval.public), rootKeyId);

    const empty = await bob!.runOk(['list', gun]);
    assert.ok(noTargets(empty.stdout), empty.stdout);

    const add = await alice!.runOk(['addhash', gun, 'v1', String(m.size), '--sha256', m.hex, '-p']);
    assert.match(add.stdout, /Successfully published changes/);

    // bob listed before (it has the old metadata cached); carol has never seen the repo.
    for (const reader of [bob!, carol!]) {
      const listed = await reader.runOk(['list', gun]);
      assert.deepEqual(parseNotaryList(listed.stdout), [{ name: 'v1', digest: m.hex, size: m.size, role: 'targets' }]);
    }
    const targets = await getJson<TargetsSigned>(tg.url, gun, 'targets.json');
    assert.equal(targets.env.signed.version, 3);
    assert.equal(Buffer.from(targets.env.signed.targets.v1!.hashes.sha256!, 'base64').toString('hex'), m.hex);
    assert.equal(targets.env.signed.targets.v1!.length, m.size);
    await assertHashChain(tg.url, gun);

    const lookup = await carol!.runOk(['lookup', gun, 'v1']);
    assert.equal(lookup.stdout.trim(), `v1 sha256:${m.hex} ${m.size}`);
    const missing = await carol!.run(['lookup', gun, 'nope']);
    assert.notEqual(missing.code, 0);

    const rm = await alice!.runOk(['remove', gun, 'v1', '-p']);
    assert.match(rm.stdout, /Removal of v1 from registry\.example\.com\/ns\/app staged/);
    for (const reader of [bob!, carol!]) {
      const after = await reader.runOk(['list', gun]);
      assert.deepEqual(parseNotaryList(after.stdout), []);
      assert.ok(noTargets(after.stdout), after.stdout);
    }
    const gone = await carol!.run(['lookup', gun, 'v1']);
    assert.notEqual(gone.code, 0);
    const t4 = await getJson<TargetsSigned>(tg.url, gun, 'targets.json');
    assert.equal(t4.env.signed.version, 4);
    assert.deepEqual(t4.env.signed.targets, {});

    // A GUN nobody initialised: a clean failure, not a hang or a crash.
    const none = await carol!.run(['list', 'registry.example.com/ns/none']);
    assert.equal(none.code, 1);
    assert.match(none.stdout + none.stderr, /does not have trust data for registry\.example\.com\/ns\/none/);
  });
});

test('notary: key rotations (server snapshot, timestamp, targets, root) keep old clients working', async () => {
  await withTrustgate(4, async (tg, [alice, bob, carol, dave]) => {
    const gun = 'registry.example.com/ns/rotate';
    const [m1, m2, m3] = [fakeManifest('r1'), fakeManifest('r2'), fakeManifest('r3')];
    const row = (name: string, m: { hex: string; size: number }) => ({ name, digest: m.hex, size: m.size, role: 'targets' });
    const rootOf = async () => (await getJson<RootSigned>(tg.url, gun, 'root.json')).env;

    await alice!.runOk(['init', gun, '-p']);
    // carol caches root v1 and then does not look again until after every rotation.
    assert.ok(noTargets((await carol!.runOk(['list', gun])).stdout));
    await alice!.runOk(['addhash', gun, 'r1', String(m1.size), '--sha256', m1.hex, '-p']);
    const root1 = await rootOf();
    assert.equal(root1.signed.version, 1);

    // 1. Snapshot key to the server: POST snapshot.key, then a new root that lists that key.
    const snapRot = await alice!.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    assert.match(snapRot.stdout, /Successfully rotated snapshot key/);
    const root2 = await rootOf();
    assert.equal(root2.signed.version, 2);
    const snapKeyId = root2.signed.roles.snapshot.keyids[0]!;
    assert.notEqual(snapKeyId, root1.signed.roles.snapshot.keyids[0]);
    const served = JSON.parse((await getTuf(tg.url, gun, 'snapshot.key', tg.adminToken)).bytes.toString()) as KeyJson;
    assert.equal(tufKeyId(served.keytype, served.keyval.public), snapKeyId, 'GET snapshot.key = the key root v2 names');
    const snapAfter = await getJson<SnapshotSigned>(tg.url, gun, 'snapshot.json');
    assert.deepEqual(
      snapAfter.env.signatures.map((s) => s.keyid),
      [snapKeyId],
      'the server signed the new snapshot',
    );
    const daysLeft = (iso: string) => (Date.parse(iso) - Date.now()) / 86_400_000;
    assert.ok(Math.abs(daysLeft(snapAfter.env.signed.expires) - 1095) < 1, snapAfter.env.signed.expires);
    assert.ok(Math.abs(daysLeft((await getJson(tg.url, gun, 'timestamp.json')).env.signed.expires) - 14) < 1);

    // Publishing now works without a client snapshot key, and a brand-new client can read it.
    await alice!.runOk(['addhash', gun, 'r2', String(m2.size), '--sha256', m2.hex, '-p']);
    assert.deepEqual(parseNotaryList((await dave!.runOk(['list', gun])).stdout), [row('r1', m1), row('r2', m2)]);
    await assertHashChain(tg.url, gun);

    // 2. Timestamp key: a new server key and a root that names it; timestamps are then signed with it.
    await alice!.runOk(['key', 'rotate', gun, 'timestamp', '-r']);
    const root3 = await rootOf();
    assert.equal(root3.signed.version, 3);
    const tsKeyId = root3.signed.roles.timestamp.keyids[0]!;
    assert.notEqual(tsKeyId, root2.signed.roles.timestamp.keyids[0]);
    assert.deepEqual(
      (await getJson(tg.url, gun, 'timestamp.json')).env.signatures.map((s) => s.keyid),
      [tsKeyId],
    );
    assert.deepEqual(parseNotaryList((await bob!.runOk(['list', gun])).stdout), [row('r1', m1), row('r2', m2)]);

    // 3. Targets key (client side): targets is re-signed with the new key.
    await alice!.runOk(['key', 'rotate', gun, 'targets']);
    const root4 = await rootOf();
    assert.equal(root4.signed.version, 4);
    const targetsKeyId = root4.signed.roles.targets.keyids[0]!;
    assert.notEqual(targetsKeyId, root3.signed.roles.targets.keyids[0]);
    assert.deepEqual(
      (await getJson(tg.url, gun, 'targets.json')).env.signatures.map((s) => s.keyid),
      [targetsKeyId],
    );
    // bob cached root v3 just above.
    assert.deepEqual(parseNotaryList((await bob!.runOk(['list', gun])).stdout), [row('r1', m1), row('r2', m2)]);

    // 4. Root key: the new root is signed by the old and the new root key.
    const rootRot = await alice!.runOk(['key', 'rotate', gun, 'root'], { input: 'yes\n' });
    assert.match(rootRot.stdout, /Successfully rotated root key/);
    const root5 = await rootOf();
    assert.equal(root5.signed.version, 5);
    const newRootId = root5.signed.roles.root.keyids[0]!;
    const oldRootId = root4.signed.roles.root.keyids[0]!;
    assert.notEqual(newRootId, oldRootId);
    assert.deepEqual(root5.signatures.map((s) => s.keyid).sort(), [newRootId, oldRootId].sort());

    await alice!.runOk(['addhash', gun, 'r3', String(m3.size), '--sha256', m3.hex, '-p']);
    const want = [row('r1', m1), row('r2', m2), row('r3', m3)];
    // bob trusts root v4 (old root key); carol still trusts root v1 and must walk 2..5.root.json.
    assert.deepEqual(parseNotaryList((await bob!.runOk(['list', gun])).stdout), want);
    assert.deepEqual(parseNotaryList((await carol!.runOk(['list', gun])).stdout), want);
    assert.deepEqual(parseNotaryList((await dave!.runOk(['list', gun])).stdout), want);

    // Every root version stays addressable, each one different, each with its own version.
    const byVersion: Envelope<RootSigned>[] = [];
    for (let v = 1; v <= 5; v++) {
      const r = await getJson<RootSigned>(tg.url, gun, `${v}.root.json`);
      assert.equal(r.env.signed.version, v);
      byVersion.push(r.env);
    }
    assert.notDeepEqual(byVersion[0]!.signed, byVersion[1]!.signed, '1.root.json and 2.root.json differ');
    assert.deepEqual(byVersion[0], root1);
    assert.deepEqual(byVersion[4], root5);
    assert.equal(new Set(byVersion.map((r) => JSON.stringify(r))).size, 5);
    assert.equal((await getTuf(tg.url, gun, '6.root.json')).status, 404);
  });
});

test('notary: root rotation right after init: 1.root.json and 2.root.json, old-root client follows', async () => {
  await withTrustgate(2, async (tg, [alice, bob]) => {
    const gun = 'registry.example.com/ns/rootonly';
    const m = fakeManifest('ro');
    await alice!.runOk(['init', gun, '-p']);
    await alice!.runOk(['addhash', gun, 'before', String(m.size), '--sha256', m.hex, '-p']);
    assert.equal(parseNotaryList((await bob!.runOk(['list', gun])).stdout).length, 1);

    await alice!.runOk(['key', 'rotate', gun, 'root'], { input: 'yes\n' });
    const r1 = await getJson<RootSigned>(tg.url, gun, '1.root.json');
    const r2 = await getJson<RootSigned>(tg.url, gun, '2.root.json');
    assert.equal(r1.env.signed.version, 1);
    assert.equal(r2.env.signed.version, 2);
    assert.notDeepEqual(r1.env.signed.roles.root.keyids, r2.env.signed.roles.root.keyids);
    assert.equal(r2.env.signatures.length, 2);
    assert.deepEqual((await getJson(tg.url, gun, 'root.json')).bytes, r2.bytes);
    // The other roles' keys did not change.
    for (const role of ['targets', 'snapshot', 'timestamp'] as const) {
      assert.deepEqual(r1.env.signed.roles[role], r2.env.signed.roles[role]);
    }

    await alice!.runOk(['addhash', gun, 'after', String(m.size), '--sha256', m.hex, '-p']);
    const listed = parseNotaryList((await bob!.runOk(['list', gun])).stdout);
    assert.deepEqual(
      listed.map((t) => t.name),
      ['after', 'before'],
    );
  });
});

test('notary: delegation targets/releases: import key, add, publish as delegate, list, remove', async () => {
  const work = await makeTempDir('notary-deleg');
  try {
    await withTrustgate(3, async (tg, [admin, delegate, reader]) => {
      const gun = 'registry.example.com/ns/deleg';
      const rel = await makeDelegationCert(work, 'releases');
      const adminTag = fakeManifest('admin');
      const relTag = fakeManifest('rel1');
      const file = path.join(work, 'artifact.bin');
      await fsp.writeFile(file, 'release artifact contents\n');
      const fileBytes = await fsp.readFile(file);

      await admin!.runOk(['init', gun, '-p']);
      await admin!.runOk(['addhash', gun, 'admin-tag', String(adminTag.size), '--sha256', adminTag.hex, '-p']);

      const added = await admin!.runOk(['delegation', 'add', gun, 'targets/releases', rel.cert, '--all-paths', '-p']);
      assert.match(added.stdout, new RegExp(`Addition of delegation role targets/releases with keys \\[${rel.canonicalId}\\]`));
      assert.match(added.stdout, /Successfully published changes/);
      const t = await getJson<TargetsSigned>(tg.url, gun, 'targets.json');
      assert.deepEqual(t.env.signed.delegations.roles, [{ keyids: [rel.keyId], name: 'targets/releases', paths: [''], threshold: 1 }]);
      assert.equal(t.env.signed.delegations.keys[rel.keyId]!.keytype, 'ecdsa-x509');

      const imported = await delegate!.runOk(['key', 'import', rel.key, '--role', 'targets/releases', '--gun', gun]);
      assert.equal(imported.code, 0);
      const keys = await delegate!.runOk(['key', 'list']);
      assert.match(keys.stdout, /targets\/releases\s+[0-9a-f]{64}/);

      // The snapshot key is still the admin's: the delegate cannot publish, and the client decodes
      // the server's ErrBadHierarchy detail into notary's own message (same as notary-server).
      const noSnap = await delegate!.run([
        'addhash',
        gun,
        'rel-0',
        String(relTag.size),
        '--sha256',
        relTag.hex,
        '--roles',
        'targets/releases',
        '-p',
      ]);
      assert.equal(noSnap.code, 1);
      assert.match(
        noSnap.stdout + noSnap.stderr,
        /Metadata hierarchy is incomplete: no snapshot was included in update and server does not hold current snapshot key for repository/,
      );
      await delegate!.runOk(['reset', gun, '--all']);
      // So, as Docker does, hand the snapshot to the server.
      await admin!.runOk(['key', 'rotate', gun, 'snapshot', '-r']);

      const a1 = await delegate!.runOk([
        'addhash',
        gun,
        'rel-1',
        String(relTag.size),
        '--sha256',
        relTag.hex,
        '--roles',
        'targets/releases',
        '-p',
      ]);
      assert.match(a1.stdout, /Successfully published changes/);
      await delegate!.runOk(['add', gun, 'rel-2', file, '--roles', 'targets/releases', '-p']);

      // The role file went up under its full name (multipart filename with a slash, spec §2.6).
      const relFile = await getJson<TargetsSigned>(tg.url, gun, 'targets/releases.json');
      assert.equal(relFile.env.signed._type, 'Targets');
      assert.deepEqual(Object.keys(relFile.env.signed.targets).sort(), ['rel-1', 'rel-2']);
      assert.deepEqual(
        relFile.env.signatures.map((s) => s.keyid),
        [rel.keyId],
      );
      const snap = await assertHashChain(tg.url, gun);
      assert.deepEqual(Object.keys(snap.signed.meta).sort(), ['root', 'targets', 'targets/releases']);

      const wantAll = [
        { name: 'admin-tag', digest: adminTag.hex, size: adminTag.size, role: 'targets' },
        { name: 'rel-1', digest: relTag.hex, size: relTag.size, role: 'targets/releases' },
        { name: 'rel-2', digest: sha256Hex(fileBytes), size: fileBytes.length, role: 'targets/releases' },
      ];
      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun])).stdout), wantAll);
      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun, '--roles', 'targets/releases'])).stdout), wantAll.slice(1));

      const dl = await reader!.runOk(['delegation', 'list', gun]);
      assert.match(dl.stdout, new RegExp(`targets/releases\\s+"" <all paths>\\s+${rel.canonicalId}\\s+1`));

      // Keep the delegate's file to replay after the delegation is gone.
      const oldRelBytes = relFile.bytes;

      const removed = await admin!.runOk(['delegation', 'remove', gun, 'targets/releases', '-p'], { input: 'yes\n' });
      assert.match(removed.stdout, /Forced removal \(including all keys and paths\) of delegation role targets\/releases/);
      assert.match(removed.stdout, /Successfully published changes/);

      const after = await reader!.runOk(['list', gun]);
      assert.deepEqual(parseNotaryList(after.stdout), wantAll.slice(0, 1));
      const dl2 = await reader!.runOk(['delegation', 'list', gun]);
      assert.match(dl2.stdout, /No delegations present in this repository/);
      const t2 = await getJson<TargetsSigned>(tg.url, gun, 'targets.json');
      // Go's notary client writes a nil slice here: `"roles":null`; trustgate stores its bytes as they are.
      assert.deepEqual(t2.env.signed.delegations.keys, {});
      assert.deepEqual(t2.env.signed.delegations.roles ?? [], []);

      // The delegate can no longer publish (the client already refuses) ...
      const late = await delegate!.run([
        'addhash',
        gun,
        'rel-3',
        String(relTag.size),
        '--sha256',
        relTag.hex,
        '--roles',
        'targets/releases',
        '-p',
      ]);
      assert.notEqual(late.code, 0);
      assert.match(late.stdout + late.stderr, /delegation does not exist/);
      // ... and the server refuses a replayed delegation file whose parent no longer lists it.
      const form = new FormData();
      form.append('files', new Blob([new Uint8Array(oldRelBytes)]), 'targets/releases');
      const res = await fetch(`${tg.url}/v2/${gun}/_trust/tuf/`, {
        method: 'POST',
        body: form,
        headers: { Authorization: `Bearer ${tg.adminToken}` },
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(res.status, 400);
      const body = (await res.json()) as { errors: { code: string; detail: { Name: string; Error: { Msg: string } } }[] };
      assert.equal(body.errors[0]!.code, 'INVALID_UPDATE');
      assert.equal(body.errors[0]!.detail.Name, 'ErrBadTargets');
      assert.match(body.errors[0]!.detail.Error.Msg, /targets\/releases\. delegation does not exist/);
      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun])).stdout), wantAll.slice(0, 1));
    });
  } finally {
    await removeTempDir(work);
  }
});

test('notary: delegation key rotation, then `witness` re-signs the delegation with the new key', async () => {
  const work = await makeTempDir('notary-witness');
  try {
    await withTrustgate(4, async (tg, [admin, oldDelegate, newDelegate, reader]) => {
      const gun = 'registry.example.com/ns/witness';
      const k1 = await makeDelegationCert(work, 'releases-old');
      const k2 = await makeDelegationCert(work, 'releases-new');
      const m = fakeManifest('witness');
      const want = [{ name: 'w1', digest: m.hex, size: m.size, role: 'targets/releases' }];

      await admin!.runOk(['init', gun, '-p']);
      await admin!.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
      await admin!.runOk(['delegation', 'add', gun, 'targets/releases', k1.cert, '--all-paths', '-p']);
      await oldDelegate!.runOk(['key', 'import', k1.key, '--role', 'targets/releases', '--gun', gun]);
      await oldDelegate!.runOk(['addhash', gun, 'w1', String(m.size), '--sha256', m.hex, '--roles', 'targets/releases', '-p']);
      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun])).stdout), want);

      // Swap the delegation's key: targets/releases is still signed by k1 only, so clients drop it.
      await admin!.runOk(['delegation', 'add', gun, 'targets/releases', k2.cert, '-p']);
      await admin!.runOk(['delegation', 'remove', gun, 'targets/releases', k1.canonicalId, '-p']);
      const t = await getJson<TargetsSigned>(tg.url, gun, 'targets.json');
      assert.deepEqual(
        t.env.signed.delegations.roles.map((r) => r.keyids),
        [[k2.keyId]],
      );
      const broken = await reader!.runOk(['list', gun]);
      assert.deepEqual(parseNotaryList(broken.stdout), []);
      assert.match(broken.stderr, /valid signatures did not meet threshold for targets\/releases/);

      // The holder of k2 witnesses the role: same targets, next version, signed by k2.
      const before = await getJson<TargetsSigned>(tg.url, gun, 'targets/releases.json');
      await newDelegate!.runOk(['key', 'import', k2.key, '--role', 'targets/releases', '--gun', gun]);
      const w = await newDelegate!.runOk(['witness', gun, 'targets/releases', '-p']);
      assert.match(w.stdout, /Successfully published changes/);
      const after = await getJson<TargetsSigned>(tg.url, gun, 'targets/releases.json');
      assert.equal(after.env.signed.version, before.env.signed.version + 1);
      assert.deepEqual(after.env.signed.targets, before.env.signed.targets);
      assert.deepEqual(
        after.env.signatures.map((s) => s.keyid),
        [k2.keyId],
      );
      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun])).stdout), want);
      await assertHashChain(tg.url, gun);
    });
  } finally {
    await removeTempDir(work);
  }
});

test('notary: removing the last key of a delegation (`delegation remove <gun> <role> <keyid>`) publishes', async () => {
  const work = await makeTempDir('notary-lastkey');
  const flow = async (server: string, token?: string) => {
    const [admin, reader] = [await notaryCli({ server, token }), await notaryCli({ server })];
    try {
      const gun = 'registry.example.com/ns/lastkey';
      const k = await makeDelegationCert(work, 'releases');
      await admin.runOk(['init', gun, '-p']);
      await admin.runOk(['delegation', 'add', gun, 'targets/releases', k.cert, '--all-paths', '-p']);
      const r = await admin.run(['delegation', 'remove', gun, 'targets/releases', k.canonicalId, '-p']);
      assert.equal(r.code, 0, `${server}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /Successfully published changes/);
      const t = await getJson<TargetsSigned>(server, gun, 'targets.json');
      assert.equal(t.env.signed.delegations.roles.length, 1);
      assert.deepEqual(t.env.signed.delegations.roles[0]!.keyids ?? [], []);
      const dl = await reader.runOk(['delegation', 'list', gun]);
      assert.match(dl.stdout, /targets\/releases\s+"" <all paths>\s+1/);
    } finally {
      await admin.cleanup();
      await reader.cleanup();
    }
  };
  const ref = await startNotaryServer();
  const tg = await startTrustgate();
  try {
    await flow(ref.url); // the reference server accepts it ...
    await flow(tg.url, tg.adminToken); // ... and so must trustgate
  } finally {
    await tg.stop();
    await ref.stop();
    await removeTempDir(work);
  }
});

test('notary: nested delegation created by a delegate, with path restrictions', async () => {
  const work = await makeTempDir('notary-nested');
  try {
    await withTrustgate(3, async (tg, [admin, delegate, reader]) => {
      const gun = 'registry.example.com/ns/nested';
      const rel = await makeDelegationCert(work, 'releases');
      const qa = await makeDelegationCert(work, 'qa');
      const m = fakeManifest('nested');

      await admin!.runOk(['init', gun, '-p']);
      await admin!.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
      await admin!.runOk(['delegation', 'add', gun, 'targets/releases', rel.cert, '--paths', 'rel/', '-p']);

      // The releases delegate (who holds no targets key) delegates rel/qa/ to qa: the server must
      // check targets/releases against the STORED targets and targets/releases/qa against it.
      await delegate!.runOk(['key', 'import', rel.key, '--role', 'targets/releases', '--gun', gun]);
      await delegate!.runOk(['key', 'import', qa.key, '--role', 'targets/releases/qa', '--gun', gun]);
      await delegate!.runOk(['delegation', 'add', gun, 'targets/releases/qa', qa.cert, '--paths', 'rel/qa/', '-p']);
      await delegate!.runOk(['addhash', gun, 'rel/qa/1', String(m.size), '--sha256', m.hex, '--roles', 'targets/releases/qa', '-p']);
      await delegate!.runOk(['addhash', gun, 'rel/2', String(m.size), '--sha256', m.hex, '--roles', 'targets/releases', '-p']);
      // Outside the delegation's paths: the client refuses to stage it.
      const outside = await delegate!.run([
        'addhash',
        gun,
        'other',
        String(m.size),
        '--sha256',
        m.hex,
        '--roles',
        'targets/releases',
        '-p',
      ]);
      assert.notEqual(outside.code, 0);

      assert.deepEqual(parseNotaryList((await reader!.runOk(['list', gun])).stdout), [
        { name: 'rel/2', digest: m.hex, size: m.size, role: 'targets/releases' },
        { name: 'rel/qa/1', digest: m.hex, size: m.size, role: 'targets/releases/qa' },
      ]);
      const dl = await reader!.runOk(['delegation', 'list', gun]);
      assert.match(dl.stdout, new RegExp(`targets/releases\\s+rel/\\s+${rel.canonicalId}\\s+1`));
      assert.match(dl.stdout, new RegExp(`targets/releases/qa\\s+rel/qa/\\s+${qa.canonicalId}\\s+1`));
      const snap = await assertHashChain(tg.url, gun);
      assert.deepEqual(Object.keys(snap.signed.meta).sort(), ['root', 'targets', 'targets/releases', 'targets/releases/qa']);
    });
  } finally {
    await removeTempDir(work);
  }
});

test('notary: delete --remote removes the trust data; fresh clients see none; re-init works', async () => {
  await withTrustgate(3, async (tg, [alice, bob, carol]) => {
    const gun = 'registry.example.com/ns/delete';
    const m = fakeManifest('del');
    await alice!.runOk(['init', gun, '-p']);
    await alice!.runOk(['addhash', gun, 'v1', String(m.size), '--sha256', m.hex, '-p']);
    assert.equal(parseNotaryList((await bob!.runOk(['list', gun])).stdout).length, 1);

    const del = await alice!.runOk(['delete', gun, '--remote']);
    assert.match(del.stdout, /Successfully deleted local and remote trust data for repository registry\.example\.com\/ns\/delete/);
    for (const f of ['root.json', 'targets.json', 'snapshot.json', 'timestamp.json', '1.root.json']) {
      const r = await getTuf(tg.url, gun, f);
      assert.equal(r.status, 404, f);
      assert.equal(JSON.parse(r.bytes.toString()).errors[0].code, 'METADATA_NOT_FOUND');
    }
    const fresh = await carol!.run(['list', gun]);
    assert.equal(fresh.code, 1, fresh.stdout + fresh.stderr);
    assert.match(fresh.stdout + fresh.stderr, /does not have trust data for registry\.example\.com\/ns\/delete/);

    // The changefeed records the deletion.
    const cf = (await (await fetch(`${tg.url}/v2/${gun}/_trust/changefeed?records=-1&change_id=-1`)).json()) as {
      records: { Category: string; Version: number; SHA256: string }[];
    };
    assert.deepEqual(
      cf.records.map((r) => [r.Category, r.Version, r.SHA256]),
      [['deletion', 0, '']],
    );

    // The GUN can be initialised again from scratch (alice's local data was deleted too).
    await alice!.runOk(['init', gun, '-p']);
    await alice!.runOk(['addhash', gun, 'v2', String(m.size), '--sha256', m.hex, '-p']);
    assert.deepEqual(parseNotaryList((await carol!.runOk(['list', gun])).stdout), [
      { name: 'v2', digest: m.hex, size: m.size, role: 'targets' },
    ]);
    assert.equal((await getJson(tg.url, gun, 'root.json')).env.signed.version, 1);
  });
});

test('notary: expired timestamp and server snapshot are re-signed on GET and real clients accept them', async () => {
  // Move trustgate's clock instead of waiting 14 days / 3 years; the notary client keeps real time,
  // so everything the server re-signs must still chain correctly from what the client cached.
  const DAY = 86_400_000;
  const tg = await startTrustgate();
  const [alice, bob, carol] = [
    await notaryCli({ server: tg.url, token: tg.adminToken }),
    await notaryCli({ server: tg.url, token: tg.adminToken }),
    await notaryCli({ server: tg.url, token: tg.adminToken }),
  ];
  try {
    const gun = 'registry.example.com/ns/clock';
    const m = fakeManifest('clock');
    const want = [{ name: 'v1', digest: m.hex, size: m.size, role: 'targets' }];
    await alice.runOk(['init', gun, '-p']);
    await alice.runOk(['addhash', gun, 'v1', String(m.size), '--sha256', m.hex, '-p']);
    assert.deepEqual(parseNotaryList((await bob.runOk(['list', gun])).stdout), want);
    const ts1 = await getJson(tg.url, gun, 'timestamp.json');
    const snap1 = await getJson(tg.url, gun, 'snapshot.json');

    // 15 days on: the timestamp expired; the (client-held) snapshot did not.
    tg.advance(15 * DAY);
    const ts2 = await getJson<{ meta: { snapshot: FileMeta } }>(tg.url, gun, 'timestamp.json');
    assert.equal(ts2.env.signed.version, ts1.env.signed.version + 1);
    const tsLeft = (Date.parse(ts2.env.signed.expires) - tg.now()) / DAY;
    assert.ok(Math.abs(tsLeft - 14) < 0.1, ts2.env.signed.expires);
    assert.deepEqual((await getJson(tg.url, gun, 'snapshot.json')).bytes, snap1.bytes);
    assert.deepEqual((await getJson(tg.url, gun, 'timestamp.json')).bytes, ts2.bytes, 'no second re-sign while fresh');
    await assertHashChain(tg.url, gun);
    const cf = (await (await fetch(`${tg.url}/v2/${gun}/_trust/changefeed?records=-1&change_id=-1`)).json()) as {
      records: { Version: number; SHA256: string }[];
    };
    assert.deepEqual(
      cf.records.map((r) => [r.Version, r.SHA256]),
      [[ts2.env.signed.version, sha256Hex(ts2.bytes)]],
    );
    assert.deepEqual(parseNotaryList((await bob.runOk(['list', gun])).stdout), want);
    assert.deepEqual(parseNotaryList((await carol.runOk(['list', gun])).stdout), want);

    // Hand the snapshot to the server, then let 3 years pass: the server re-signs the snapshot too.
    await alice.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    assert.deepEqual(parseNotaryList((await bob.runOk(['list', gun])).stdout), want);
    const snap2 = await getJson<SnapshotSigned>(tg.url, gun, 'snapshot.json');
    tg.advance(3 * 365 * DAY + DAY);
    const snap3 = await getJson<SnapshotSigned>(tg.url, gun, 'snapshot.json');
    assert.equal(snap3.env.signed.version, snap2.env.signed.version + 1);
    assert.deepEqual(snap3.env.signed.meta.root, snap2.env.signed.meta.root);
    assert.deepEqual(snap3.env.signed.meta.targets, snap2.env.signed.meta.targets);
    assert.deepEqual(
      snap3.env.signatures.map((s) => s.keyid),
      snap2.env.signatures.map((s) => s.keyid),
    );
    await assertHashChain(tg.url, gun);
    assert.deepEqual(parseNotaryList((await bob.runOk(['list', gun])).stdout), want);
    const dave = await notaryCli({ server: tg.url, token: tg.adminToken });
    try {
      assert.deepEqual(parseNotaryList((await dave.runOk(['list', gun])).stdout), want);
    } finally {
      await dave.cleanup();
    }
  } finally {
    for (const c of [alice, bob, carol]) await c.cleanup();
    await tg.stop();
  }
});

/** The same client flow against any server; returns what a user would compare. */
async function parityFlow(server: string, work: string, token?: string) {
  const gun = 'registry.example.com/ns/parity';
  const [admin, delegate, reader] = [await notaryCli({ server, token }), await notaryCli({ server, token }), await notaryCli({ server })];
  try {
    const m1 = fakeManifest('p1');
    const m2 = fakeManifest('p2');
    const rel = await makeDelegationCert(work, 'releases');
    const out: Record<string, string> = {};
    await admin.runOk(['init', gun, '-p']);
    await admin.runOk(['addhash', gun, 'v1', String(m1.size), '--sha256', m1.hex, '-p']);
    out.listAfterAdd = (await reader.runOk(['list', gun])).stdout;
    await admin.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    await admin.runOk(['addhash', gun, 'v2', String(m2.size), '--sha256', m2.hex, '-p']);
    await admin.runOk(['delegation', 'add', gun, 'targets/releases', rel.cert, '--all-paths', '-p']);
    await delegate.runOk(['key', 'import', rel.key, '--role', 'targets/releases', '--gun', gun]);
    await delegate.runOk(['addhash', gun, 'r1', String(m1.size), '--sha256', m1.hex, '--roles', 'targets/releases', '-p']);
    out.list = (await reader.runOk(['list', gun])).stdout;
    out.lookup = (await reader.runOk(['lookup', gun, 'v2'])).stdout;
    out.delegations = (await reader.runOk(['delegation', 'list', gun])).stdout.replace(rel.canonicalId, '<KEYID>');
    const missing = await reader.run(['list', 'registry.example.com/ns/missing']);
    out.missing = `${missing.code} ${missing.stderr.replace(/127\.0\.0\.1:\d+/g, '<SERVER>').trim()}`;
    // Server-side shape: versions and the roles each snapshot covers.
    const shape: string[] = [];
    for (const role of ['root', 'targets', 'targets/releases', 'snapshot', 'timestamp']) {
      const { env } = await getJson<{ meta?: Record<string, unknown> }>(server, gun, `${role}.json`);
      const keysOf = Object.keys(env.signed.meta ?? {})
        .sort()
        .join(',');
      shape.push(`${role}: ${env.signed._type} v${env.signed.version} sigs=${env.signatures.length} meta=[${keysOf}]`);
    }
    out.shape = shape.join('\n');
    return out;
  } finally {
    for (const c of [admin, delegate, reader]) await c.cleanup();
  }
}

test('notary: parity with the reference notary-server (same CLI flow, same outputs)', async () => {
  const work = await makeTempDir('notary-parity');
  const ref = await startNotaryServer();
  const tg = await startTrustgate();
  try {
    const want = await parityFlow(ref.url, work);
    const got = await parityFlow(tg.url, work, tg.adminToken);
    // Sanity: the reference flow produced what we think it did, so the comparison means something.
    assert.deepEqual(
      parseNotaryList(want.list!).map((t) => `${t.name}@${t.role}`),
      ['r1@targets/releases', 'v1@targets', 'v2@targets'],
    );
    assert.match(want.shape!, /^snapshot: Snapshot v\d+ sigs=1 meta=\[root,targets,targets\/releases\]$/m);
    assert.deepEqual(parseNotaryList(got.listAfterAdd!), parseNotaryList(want.listAfterAdd!));
    assert.equal(got.listAfterAdd, want.listAfterAdd);
    assert.deepEqual(parseNotaryList(got.list!), parseNotaryList(want.list!));
    assert.equal(got.list, want.list);
    assert.equal(got.lookup, want.lookup);
    assert.equal(got.delegations, want.delegations);
    assert.equal(got.missing, want.missing);
    assert.equal(got.shape, want.shape);
  } finally {
    await tg.stop();
    await ref.stop();
    await removeTempDir(work);
  }
});
