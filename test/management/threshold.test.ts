// m-of-n: pending changes collect signatures from different key holders (server-held keys bound
// to different tokens, and signatures uploaded by people the server never sees), publish when the
// threshold is met (targets and delegations), expire after the configured time, survive a restart,
// and lose cleanly to a change that published first.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { outsideKey } from './keys-helpers.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

let m: Mgmt;
let dir: string;
const TTL = 3600;
before(async () => {
  dir = await makeTempDir('mgmt-threshold');
  m = await startMgmt({ dir, env: { TRUSTGATE_PENDING_TTL_SECONDS: String(TTL) } });
});
after(async () => {
  await m.stop();
  await removeTempDir(dir);
});

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const hexOf = (d: string) => d.slice('sha256:'.length);

async function notaryList(gun: string) {
  const cli = await notaryCli({ server: m.tg.url, token: m.admin });
  try {
    return parseNotaryList((await cli.runOk(['list', gun])).stdout);
  } finally {
    await cli.cleanup();
  }
}

async function signerToken(gun: string, name: string, keyIds: string[] = []): Promise<string> {
  const r = await m.call('post', '/tokens', { body: { name, scopes: [`signer:${gun}`], ...(keyIds.length ? { keyIds } : {}) } });
  expectStatus(r, 201);
  return r.body.token as string;
}

test('2-of-2 on targets with server-held keys bound to two different signer tokens', async () => {
  const gun = newGun('held');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const keyA = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
  const add = await m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { threshold: 2 } });
  expectStatus(add, 200);
  const keyB = add.body.keyId as string;
  const alice = await signerToken(gun, 'alice', [keyA]);
  const bob = await signerToken(gun, 'bob', [keyB]);

  const proposed = await m.call('post', `/repositories/${g}/tags`, { token: alice, body: { tag: 'v1', digest: digest('a'), size: 42 } });
  expectStatus(proposed, 202);
  const p = proposed.body.pending;
  assert.deepEqual(p.parts[0].requirements[0].signedBy, [keyA]);
  assert.equal(p.missing, 1);
  assert.deepEqual((await m.call('get', `/repositories/${g}`)).body.signedTags, [], 'nothing published yet');
  // Alice cannot finish it with Bob's key.
  expectError(await m.call('post', `/pending/${p.id}/signatures`, { token: alice, body: { keyId: keyB } }), 403, 'FORBIDDEN');
  // Bob sees it and signs with his key: published.
  const seen = await m.call('get', `/pending?gun=${g}`, { token: bob });
  assert.deepEqual(
    seen.body.pending.map((x: { id: string }) => x.id),
    [p.id],
  );
  const done = await m.call('post', `/pending/${p.id}/signatures`, { token: bob, body: { keyId: keyB } });
  expectStatus(done, 200);
  assert.equal(done.body.status, 'published');
  assert.deepEqual(await notaryList(gun), [{ name: 'v1', digest: hexOf(digest('a')), size: 42, role: 'targets' }]);
  const audit = (await m.call('get', `/audit?gun=${g}&action=pending.sign`)).body.entries as Array<{
    actor: { name: string };
    outcome: string;
  }>;
  assert.deepEqual(
    audit.map((e) => `${e.actor.name} ${e.outcome}`),
    ['alice denied', 'bob success'],
  );
});

test('2-of-2 on a delegation with keys held elsewhere: uploaded signatures (DER and raw) publish it', async () => {
  const gun = newGun('uploaded');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const [k1, k2] = [outsideKey(), outsideKey()];
  expectStatus(
    await m.call('post', `/repositories/${g}/delegations`, {
      body: { role: 'targets/team', publicKeys: [k1.publicPem, k2.publicPem], threshold: 2, paths: [''] },
    }),
    200,
  );
  const proposed = await m.call('post', `/repositories/${g}/tags`, {
    body: { tag: 'rel', digest: digest('b'), size: 7, role: 'targets/team' },
  });
  expectStatus(proposed, 202);
  const part = proposed.body.pending.parts[0];
  assert.equal(part.role, 'targets/team');
  assert.equal(part.missing, 2);
  const id = proposed.body.pending.id as string;
  const one = await m.call('post', `/pending/${id}/signatures`, {
    body: { signatures: [{ keyid: k1.id, sig: k1.sign(part.canonical, true) }] },
  });
  expectStatus(one, 200);
  assert.equal(one.body.status, 'pending');
  assert.equal(one.body.pending.missing, 1);
  // The same key again does not count twice.
  const again = await m.call('post', `/pending/${id}/signatures`, {
    body: { signatures: [{ keyid: k1.id, sig: k1.sign(part.canonical) }] },
  });
  assert.equal(again.body.pending.missing, 1);
  const two = await m.call('post', `/pending/${id}/signatures`, {
    body: { signatures: [{ keyid: k2.id, sig: k2.sign(part.canonical), method: 'ecdsa' }] },
  });
  expectStatus(two, 200);
  assert.equal(two.body.status, 'published');
  assert.deepEqual(await notaryList(gun), [{ name: 'rel', digest: hexOf(digest('b')), size: 7, role: 'targets/team' }]);
});

test('a pending change that another change overtook is closed as stale at once, and signing it is a 404', async () => {
  const gun = newGun('race');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const keyA = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
  const carol = await signerToken(gun, 'carol');
  const first = await m.call('post', `/repositories/${g}/tags`, { token: carol, body: { tag: 'one', digest: digest('1'), size: 1 } });
  const second = await m.call('post', `/repositories/${g}/tags`, { token: carol, body: { tag: 'two', digest: digest('2'), size: 2 } });
  expectStatus(first, 202);
  expectStatus(second, 202);
  assert.equal(first.body.pending.parts[0].version, second.body.pending.parts[0].version);
  expectStatus(await m.call('post', `/pending/${second.body.pending.id}/signatures`, { body: { keyId: keyA } }), 200);
  const lost = await m.call('post', `/pending/${first.body.pending.id}/signatures`, { body: { keyId: keyA } });
  expectError(lost, 404, 'NOT_FOUND');
  assert.match(lost.body.error.message, /closed as stale: see the audit log/);
  const audit = await m.call('get', `/audit?gun=${g}&action=pending.stale`);
  assert.deepEqual(
    audit.body.entries.map((e: { detail: { pendingId: string } }) => e.detail.pendingId),
    [first.body.pending.id],
  );
  assert.deepEqual(
    (await m.call('get', `/repositories/${g}`)).body.signedTags.map((t: { tag: string }) => t.tag),
    ['two'],
  );
});

test('pending changes survive a restart and expire after TRUSTGATE_PENDING_TTL_SECONDS, dropping the keys made for them', async () => {
  const gun = newGun('ttl');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'offline', passphrase: 'ttl-root-passphrase' } }), 201);
  const kept = await m.call('post', `/repositories/${g}/keys/targets/rotate`, { body: {} });
  expectStatus(kept, 202);
  const short = await m.call('post', `/repositories/${g}/keys/timestamp/rotate`, { body: {} });
  expectStatus(short, 202);
  assert.equal(Date.parse(kept.body.pending.expiresAt) - Date.parse(kept.body.pending.createdAt), TTL * 1000);
  assert.ok(await m.tg.app.keys.get(kept.body.newKeyId));

  // Restart on the same data directory: still there.
  await m.stop();
  m = await startMgmt({ dir, env: { TRUSTGATE_PENDING_TTL_SECONDS: String(TTL) } });
  const listed = await m.call('get', `/pending?gun=${g}`);
  assert.deepEqual(listed.body.pending.map((p: { id: string }) => p.id).sort(), [kept.body.pending.id, short.body.pending.id].sort());

  m.advance((TTL + 1) * 1000);
  expectError(await m.call('get', `/pending/${kept.body.pending.id}`), 404, 'NOT_FOUND');
  assert.deepEqual((await m.call('get', `/pending?gun=${g}`)).body.pending, []);
  assert.equal(await m.tg.app.keys.get(kept.body.newKeyId), undefined, 'the key made for the expired rotation is gone');
  assert.equal(await m.tg.app.keys.get(short.body.newKeyId), undefined);
  const expired = (await m.call('get', `/audit?gun=${g}&action=pending.expire`)).body.entries;
  assert.equal(expired.length, 2);
  m.advance(-(TTL + 1) * 1000);
});
