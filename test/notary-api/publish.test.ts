// POST /v2/<gun>/_trust/tuf/ (spec §2.6, §3): successful publishes in the shapes real clients send.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Metadata,
  checkFileMeta,
  type RootBody,
  type SnapshotBody,
  type TargetsBody,
  type TimestampBody,
} from '../../src/core/tuf/metadata.js';
import { initRepo, publish, raw, sign, targetMeta, tufPath } from '../helpers/tuf-builder.js';
import { newGun, startServer, type Server } from './support.js';

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

const get = async (gun: string, file: string) => raw(s.agent.get(tufPath(gun, file)));

/** Checks the timestamp → snapshot → role chain the client walks, and returns the parsed files. */
async function chain(gun: string) {
  const root = await get(gun, 'root.json');
  const ts = await get(gun, 'timestamp.json');
  assert.equal(root.status, 200);
  assert.equal(ts.status, 200);
  const rootMd = Metadata.parse<RootBody>('root', root.body);
  const tsMd = Metadata.parse<TimestampBody>('timestamp', ts.body);
  tsMd.verifyThreshold(rootMd.body.keys, rootMd.body.roles.timestamp, 'ErrValidation');
  const snapSha = Buffer.from(tsMd.body.meta.snapshot.hashes.sha256!, 'base64').toString('hex');
  const snap = await get(gun, `snapshot.${snapSha}.json`);
  assert.equal(snap.status, 200);
  assert.equal(checkFileMeta('snapshot', snap.body, tsMd.body.meta.snapshot, true), undefined);
  const snapMd = Metadata.parse<SnapshotBody>('snapshot', snap.body);
  snapMd.verifyThreshold(rootMd.body.keys, rootMd.body.roles.snapshot, 'ErrValidation');
  assert.equal(checkFileMeta('root', root.body, snapMd.body.meta.root!), undefined);
  return { root: rootMd, ts: tsMd, snap: snapMd, snapBytes: snap.body };
}

test('new repo, client-held snapshot: root v1 + targets + snapshot are stored byte for byte, timestamp v1 generated', async () => {
  const gun = newGun('client-snap');
  const repo = await initRepo(s.agent, gun, { publish: false, targets: { hello: targetMeta('hello') } });
  assert.deepEqual(
    repo.pending.map(([r]) => r),
    ['root', 'targets', 'snapshot'],
  );
  const res = await repo.publish(repo.pending);
  assert.equal(res.status, 200, res.body.toString());
  assert.equal(res.body.length, 0);
  for (const [role, bytes] of repo.pending) {
    const cur = await get(gun, `${role}.json`);
    assert.equal(cur.status, 200);
    assert.ok(cur.body.equals(bytes), `${role}.json is the uploaded bytes`);
    const v1 = await get(gun, `1.${role}.json`);
    assert.ok(v1.body.equals(bytes));
  }
  const { ts, snap } = await chain(gun);
  assert.equal(ts.version, 1);
  assert.equal(snap.version, 1);
});

test('new repo, server-held snapshot (docker first push): root + targets only; server makes snapshot v1 and timestamp v1', async () => {
  const gun = newGun('server-snap');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true, publish: false });
  assert.deepEqual(
    repo.pending.map(([r]) => r),
    ['root', 'targets'],
  );
  const res = await repo.publish(repo.pending);
  assert.equal(res.status, 200, res.body.toString());
  const { ts, snap, root } = await chain(gun);
  assert.equal(ts.version, 1);
  assert.equal(snap.version, 1);
  assert.deepEqual(Object.keys(snap.body.meta).sort(), ['root', 'targets']);
  const targets = await get(gun, 'targets.json');
  assert.equal(checkFileMeta('targets', targets.body, snap.body.meta.targets!), undefined);
  // the snapshot is signed by the key GET snapshot.key handed out
  assert.deepEqual(root.body.roles.snapshot.keyids, [
    Object.keys(root.body.keys).find((id) => root.body.keys[id]!.keyval.public === repo.serverSnapshotKey!.keyval.public),
  ]);
});

test('adding a target: targets v+1 (and client snapshot v+1) chain correctly; old versions stay reachable', async () => {
  for (const serverSnapshot of [false, true]) {
    const gun = newGun(`add-${serverSnapshot}`);
    const repo = await initRepo(s.agent, gun, { serverSnapshot });
    const first = repo.targets.bytes;
    const res = await repo.addTarget('v1', 'content-1');
    assert.equal(res.status, 200, res.body.toString());
    const { ts, snap } = await chain(gun);
    assert.equal(ts.version, 2);
    assert.equal(snap.version, 2);
    const cur = await get(gun, 'targets.json');
    assert.ok(cur.body.equals(repo.targets.bytes));
    assert.equal(Metadata.parse<TargetsBody>('targets', cur.body).version, 2);
    assert.ok((await get(gun, '1.targets.json')).body.equals(first));
  }
});

test('delegations: filenames with slashes are kept (targets/releases, targets/a/b), nested delegation and its targets', async () => {
  const gun = newGun('deleg');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  assert.equal((await repo.addDelegation('targets/releases', { publishRole: true })).status, 200);
  assert.equal((await repo.addTarget('latest', 'manifest', 'targets/releases')).status, 200);
  const releasesV2 = repo.roles.get('targets/releases')!.bytes;
  assert.equal((await repo.addDelegation('targets/releases/qa')).status, 200);
  assert.equal((await repo.addTarget('qa-tag', 'qa-manifest', 'targets/releases/qa')).status, 200);
  const { snap } = await chain(gun);
  assert.deepEqual(Object.keys(snap.body.meta).sort(), ['root', 'targets', 'targets/releases', 'targets/releases/qa']);
  for (const role of ['targets/releases', 'targets/releases/qa']) {
    const cur = await get(gun, `${role}.json`);
    assert.equal(cur.status, 200, role);
    assert.ok(cur.body.equals(repo.roles.get(role)!.bytes), role);
    const sha = Buffer.from(snap.body.meta[role]!.hashes.sha256!, 'base64').toString('hex');
    assert.ok((await get(gun, `${role}.${sha}.json`)).body.equals(cur.body));
  }
  assert.ok((await get(gun, '2.targets/releases.json')).body.equals(releasesV2));
  assert.equal(repo.roles.get('targets/releases')!.body.version, 3);
});

test('root rotation: root v2 signed by old and new keys is accepted; N.root.json serves both', async () => {
  for (const serverSnapshot of [false, true]) {
    const gun = newGun(`rotate-${serverSnapshot}`);
    const repo = await initRepo(s.agent, gun, { serverSnapshot });
    const v1 = repo.root.bytes;
    const res = await repo.rotateRoot();
    assert.equal(res.status, 200, res.body.toString());
    assert.ok((await get(gun, '1.root.json')).body.equals(v1));
    assert.ok((await get(gun, '2.root.json')).body.equals(repo.root.bytes));
    assert.ok((await get(gun, 'root.json')).body.equals(repo.root.bytes));
    const { snap } = await chain(gun);
    assert.equal(checkFileMeta('root', repo.root.bytes, snap.body.meta.root!), undefined);
    // and the repository keeps working after the rotation
    assert.equal((await repo.addTarget('after', 'x')).status, 200);
  }
});

test('rotating the snapshot key to the server: POST snapshot.key, then root v+1; server signs snapshot v+1 with the new key', async () => {
  const gun = newGun('snap-to-server');
  const repo = await initRepo(s.agent, gun);
  const res = await repo.rotateServerKey('snapshot');
  assert.equal(res.status, 200, res.body.toString());
  const { snap, root } = await chain(gun);
  assert.equal(snap.version, 2);
  assert.equal(root.version, 2);
  assert.equal(root.body.keys[root.body.roles.snapshot.keyids[0]!]!.keyval.public, repo.serverSnapshotKey!.keyval.public);
  assert.equal((await repo.addTarget('t', 'x')).status, 200);
  assert.equal((await chain(gun)).snap.version, 3);
});

test('rotating the timestamp key: POST timestamp.key, root v+1; the next timestamp is signed by the new key', async () => {
  const gun = newGun('ts-rotate');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const res = await repo.rotateServerKey('timestamp');
  assert.equal(res.status, 200, res.body.toString());
  const { ts, root } = await chain(gun); // chain() verifies the timestamp against the new root
  assert.equal(root.body.keys[root.body.roles.timestamp.keyids[0]!]!.keyval.public, repo.timestampKey.keyval.public);
  assert.equal(ts.version, 2);
});

test('an empty multipart body with a server-held snapshot key re-signs snapshot and timestamp', async () => {
  const gun = newGun('empty');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  const res = await publish(s.agent, gun, []);
  assert.equal(res.status, 200, res.body.toString());
  const { ts, snap } = await chain(gun);
  assert.equal(ts.version, 2);
  assert.equal(snap.version, 2);
});

test('a timestamp part is ignored (the server makes its own)', async () => {
  const gun = newGun('ts-part');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const forged = await sign({ _type: 'Timestamp', expires: '2099-01-01T00:00:00Z', meta: { snapshot: targetMeta('x') }, version: 99 }, [
    repo.targetsKey,
  ]);
  const files = await repo.files([['targets', repo.next()]]);
  const res = await repo.publish([['timestamp', forged], ...files]);
  assert.equal(res.status, 200, res.body.toString());
  const ts = await get(gun, 'timestamp.json');
  assert.ok(!ts.body.equals(forged));
  assert.equal(Metadata.parse<TimestampBody>('timestamp', ts.body).version, 2);
  assert.equal((await get(gun, '99.timestamp.json')).status, 404);
});

test('the last part for a role wins; a `.json` suffix on the filename is removed', async () => {
  const gun = newGun('last-wins');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const a = await sign(
    repo.next('targets', (b) => (b.targets.a = targetMeta('a'))),
    [repo.targetsKey],
  );
  const b = await sign(
    repo.next('targets', (b) => (b.targets.b = targetMeta('b'))),
    [repo.targetsKey],
  );
  const res = await repo.publish([
    ['targets', a],
    ['targets.json', b],
  ]);
  assert.equal(res.status, 200, res.body.toString());
  assert.ok((await get(gun, 'targets.json')).body.equals(b));
  assert.ok((await get(gun, '2.targets.json')).body.equals(b));
});

test('a client snapshot is stored as sent, and a pretty-printed (validly signed) targets file is hashed as stored', async () => {
  const gun = newGun('pretty');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const compact = await sign(
    repo.next('targets', (b) => (b.targets.p = targetMeta('p'))),
    [repo.targetsKey],
  );
  const pretty = Buffer.from(JSON.stringify(JSON.parse(compact.toString()), null, 2));
  const res = await repo.publish([['targets', pretty]]);
  assert.equal(res.status, 200, res.body.toString());
  const { snap } = await chain(gun);
  const sha = Buffer.from(snap.body.meta.targets!.hashes.sha256!, 'base64').toString('hex');
  const byHash = await get(gun, `targets.${sha}.json`);
  assert.equal(byHash.status, 200);
  assert.ok(byHash.body.equals(pretty));
});

test('versions may skip numbers', async () => {
  const gun = newGun('gap');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const body = repo.next('targets', (b) => (b.version = 10));
  const res = await repo.publish(await repo.files([['targets', body]]));
  assert.equal(res.status, 200, res.body.toString());
  assert.equal((await get(gun, '10.targets.json')).status, 200);
  assert.equal((await get(gun, '5.targets.json')).status, 404);
});

test('client-held snapshot with a delegation: the client snapshot names it and is stored as sent', async () => {
  const gun = newGun('client-deleg');
  const repo = await initRepo(s.agent, gun);
  assert.equal((await repo.addDelegation('targets/qa', { publishRole: true })).status, 200);
  const { snap } = await chain(gun);
  assert.ok(snap.body.meta['targets/qa']);
  assert.equal(snap.version, repo.snapshot!.body.version);
  assert.ok((await get(gun, 'targets/qa.json')).body.equals(repo.roles.get('targets/qa')!.bytes));
});
