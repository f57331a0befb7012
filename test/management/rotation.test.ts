// Key rotation of every kind of role: root (signed by the old and the new key, so a client that
// trusts the old root follows), snapshot and timestamp (what depends on them is re-signed by the
// server), targets and delegations (re-signed with the new key); replaced keys leave the keystore.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { notaryCli, parseNotaryList, type NotaryCli } from '../helpers/notary-cli.js';
import { enc, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

let m: Mgmt;
before(async () => (m = await startMgmt()));
after(() => m.stop());

type Env = {
  signed: {
    version: number;
    roles: Record<string, { keyids: string[] }>;
    delegations: { roles: Array<{ name: string; keyids: string[] }> };
  };
  signatures: Array<{ keyid: string }>;
};
const tuf = async (gun: string, role: string): Promise<Env> => {
  const r = await request(m.tg.url).get(`/v2/${gun}/_trust/tuf/${role}.json`);
  assert.equal(r.status, 200);
  return JSON.parse(r.text) as Env;
};
const sigs = (e: Env) => e.signatures.map((s) => s.keyid).sort();
const digest = (c: string) => `sha256:${c.repeat(64)}`;

test('root rotation: signed by the old and the new root key; a client that trusted the old root follows; the old key is deleted', async () => {
  const gun = newGun('rot-root');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  expectStatus(await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'v1', digest: digest('1'), size: 1 } }), 200);
  const cli: NotaryCli = await notaryCli({ server: m.tg.url, token: m.admin });
  try {
    await cli.runOk(['list', gun]); // trusts root v1 now
    const old = (await tuf(gun, 'root')).signed.roles.root!.keyids[0]!;
    const r = await m.call('post', `/repositories/${enc(gun)}/keys/root/rotate`, { body: {} });
    expectStatus(r, 200);
    const root = await tuf(gun, 'root');
    assert.equal(root.signed.version, 2);
    assert.deepEqual(root.signed.roles.root!.keyids, [r.body.newKeyId]);
    assert.deepEqual(sigs(root), [old, r.body.newKeyId].sort());
    assert.equal(await m.tg.app.keys.get(old), undefined, 'the replaced root key left the keystore');
    assert.equal((await m.tg.app.keys.get(r.body.newKeyId))?.role, 'root');
    expectStatus(await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'v2', digest: digest('2'), size: 2 } }), 200);
    const rows = parseNotaryList((await cli.runOk(['list', gun])).stdout);
    assert.deepEqual(rows.map((x) => x.name).sort(), ['v1', 'v2']);
  } finally {
    await cli.cleanup();
  }
});

test('snapshot and timestamp rotation: the server re-signs snapshot and timestamp with the new keys', async () => {
  const gun = newGun('rot-server');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  for (const role of ['snapshot', 'timestamp']) {
    const old = (await tuf(gun, 'root')).signed.roles[role]!.keyids[0]!;
    const r = await m.call('post', `/repositories/${enc(gun)}/keys/${role}/rotate`, { body: {} });
    expectStatus(r, 200);
    assert.ok(r.body.versions.snapshot && r.body.versions.timestamp);
    assert.deepEqual((await tuf(gun, 'root')).signed.roles[role]!.keyids, [r.body.newKeyId]);
    assert.deepEqual(sigs(await tuf(gun, role)), [r.body.newKeyId]);
    assert.equal(await m.tg.app.keys.get(old), undefined);
    const keys = (await m.call('get', `/repositories/${enc(gun)}/keys`)).body.keys as Array<{ id: string; role: string; held: string }>;
    assert.deepEqual(
      keys.filter((k) => k.role === role).map((k) => [k.id, k.held]),
      [[r.body.newKeyId, 'server']],
    );
  }
  const cli = await notaryCli({ server: m.tg.url, token: m.admin });
  try {
    await cli.runOk(['list', gun]);
  } finally {
    await cli.cleanup();
  }
});

test('delegation rotation: the parent lists the new key and the delegation is re-signed with it', async () => {
  const gun = newGun('rot-del');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const add = await m.call('post', `/repositories/${enc(gun)}/signers`, { body: { name: 'ci', generate: true } });
  expectStatus(add, 200);
  const old = add.body.keyIds[0] as string;
  expectStatus(
    await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'v1', digest: digest('3'), size: 3, role: 'targets/ci' } }),
    200,
  );
  const r = await m.call('post', `/repositories/${enc(gun)}/keys/${enc('targets/ci')}/rotate`, { body: {} });
  expectStatus(r, 200);
  const targets = await tuf(gun, 'targets');
  assert.deepEqual(targets.signed.delegations.roles.find((d) => d.name === 'targets/ci')!.keyids, [r.body.newKeyId]);
  // targets/releases still lists the old key, so it stays in the keystore.
  assert.deepEqual(targets.signed.delegations.roles.find((d) => d.name === 'targets/releases')!.keyids, [old]);
  assert.ok(await m.tg.app.keys.get(old));
  assert.deepEqual(sigs(await tuf(gun, 'targets/ci')), [r.body.newKeyId]);
  const cli = await notaryCli({ server: m.tg.url, token: m.admin });
  try {
    assert.deepEqual(
      parseNotaryList((await cli.runOk(['list', gun])).stdout).map((x) => `${x.name} ${x.role}`),
      ['v1 targets/ci'],
    );
  } finally {
    await cli.cleanup();
  }
});

test('rotating a role whose new root needs an offline signature waits, and the rotated targets file goes with the root', async () => {
  const gun = newGun('rot-offline');
  const created = await m.call('post', '/repositories', { body: { gun, rootKey: 'offline', passphrase: 'rotation-passphrase' } });
  expectStatus(created, 201);
  const r = await m.call('post', `/repositories/${enc(gun)}/keys/targets/rotate`, { body: {} });
  expectStatus(r, 202);
  assert.deepEqual(
    r.body.pending.parts.map((p: { role: string; missing: number }) => [p.role, p.missing]),
    [
      ['root', 1],
      ['targets', 0],
    ],
  );
  assert.equal((await tuf(gun, 'root')).signed.version, 1, 'nothing published yet');
  // With the offline key handed in for the request, the same rotation publishes at once.
  expectStatus(await m.call('delete', `/pending/${r.body.pending.id}`), 200);
  const now = await m.call('post', `/repositories/${enc(gun)}/keys/targets/rotate`, {
    body: { offlineRootKey: { pem: created.body.rootKey.pem, passphrase: 'rotation-passphrase' } },
  });
  expectStatus(now, 200);
  assert.equal(now.body.versions.root, 2);
  assert.deepEqual(sigs(await tuf(gun, 'targets')), [now.body.newKeyId]);
  assert.deepEqual(await m.tg.app.keys.list({ gun, role: 'root' }), []);
});
