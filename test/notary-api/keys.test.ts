// GET/POST {timestamp,snapshot}.key (spec §2.7).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { keyId, parseKey, type TufKey } from '../../src/core/crypto/keys.js';
import { fetchServerKey, initRepo, raw, tufPath } from '../helpers/tuf-builder.js';
import { newGun, startServer, type Server } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

async function getKey(gun: string, role: string, method: 'get' | 'post' = 'get'): Promise<{ key: TufKey; text: string }> {
  const res = await raw(s.agent[method](tufPath(gun, `${role}.key`)));
  assert.equal(res.status, 200, res.body.toString());
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(Number(res.headers['content-length']), res.body.length);
  const json = JSON.parse(res.body.toString());
  assert.equal(json.keyval.private, null);
  return { key: parseKey(json), text: res.body.toString() };
}

test('GET timestamp.key / snapshot.key before any root: 200, a public key, the same key on every GET', async () => {
  const gun = newGun('keys-before');
  const ts1 = await getKey(gun, 'timestamp');
  const ts2 = await getKey(gun, 'timestamp');
  assert.equal(ts1.text, ts2.text);
  assert.equal(ts1.key.keytype, 'ecdsa');
  const sn1 = await getKey(gun, 'snapshot');
  assert.equal((await getKey(gun, 'snapshot')).text, sn1.text);
  assert.notEqual(sn1.text, ts1.text, 'snapshot and timestamp keys differ');
  // each GUN gets its own keys
  assert.notEqual((await getKey(newGun('keys-other'), 'timestamp')).text, ts1.text);
  // and the server holds the private halves for this GUN and role
  const held = await s.tg.app.keys.list({ gun });
  assert.deepEqual(
    held.map((k) => [k.role, k.id]).sort(),
    [
      ['snapshot', keyId(sn1.key)],
      ['timestamp', keyId(ts1.key)],
    ].sort(),
  );
});

test('POST makes a new key every time (its body is ignored); without a root GET then hands out the newest', async () => {
  const gun = newGun('keys-post');
  const first = await getKey(gun, 'timestamp');
  const posted = await raw(s.agent.post(tufPath(gun, 'timestamp.key')).set('Content-Type', 'application/json').send('{"keytype":"rsa"}'));
  assert.equal(posted.status, 200);
  const p1 = parseKey(JSON.parse(posted.body.toString()));
  const p2 = (await getKey(gun, 'timestamp', 'post')).key;
  assert.notEqual(keyId(p1), keyId(first.key));
  assert.notEqual(keyId(p1), keyId(p2));
  assert.equal(keyId((await getKey(gun, 'timestamp')).key), keyId(p2));
  assert.equal((await s.tg.app.keys.list({ gun, role: 'timestamp' })).length, 3);
});

test('with a root: GET returns the key the root lists, even after POST made a newer one, until a root lists the new one', async () => {
  const gun = newGun('keys-root');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const listed = repo.timestampKey;
  assert.equal(keyId((await getKey(gun, 'timestamp')).key), keyId(listed));
  const fresh = (await getKey(gun, 'timestamp', 'post')).key;
  assert.equal(keyId((await getKey(gun, 'timestamp')).key), keyId(listed), 'POST alone changes nothing');
  assert.equal(keyId((await getKey(gun, 'snapshot')).key), keyId(repo.serverSnapshotKey!));
  // publishing a root that lists the new key switches over (rotateServerKey POSTs yet another key)
  const res = await repo.rotateServerKey('timestamp');
  assert.equal(res.status, 200, res.body.toString());
  assert.notEqual(keyId(repo.timestampKey), keyId(fresh));
  assert.equal(keyId((await getKey(gun, 'timestamp')).key), keyId(repo.timestampKey));
});

test('GET snapshot.key on a repository whose client holds the snapshot key hands out a server key without touching metadata', async () => {
  const gun = newGun('keys-client-snap');
  await initRepo(s.agent, gun);
  await unchanged(
    s,
    [gun],
    async () => {
      const k = await getKey(gun, 'snapshot');
      assert.equal(k.key.keytype, 'ecdsa');
    },
    { keys: false },
  );
});

test('TRUSTGATE_SERVER_KEY_ALGORITHM=ed25519: ed25519 server keys, and a repository built on them works', async () => {
  const s2 = await startServer({ TRUSTGATE_SERVER_KEY_ALGORITHM: 'ed25519' });
  try {
    const gun = newGun('ed');
    const k = await fetchServerKey(s2.agent, gun, 'timestamp');
    assert.equal(k.keytype, 'ed25519');
    assert.equal(Buffer.from(k.keyval.public, 'base64').length, 32);
    const repo = await initRepo(s2.agent, gun, { serverSnapshot: true });
    const ts = JSON.parse((await raw(s2.agent.get(tufPath(gun, 'timestamp.json')))).body.toString());
    assert.equal(ts.signatures[0].method, 'eddsa');
    assert.equal((await repo.addTarget('x', 'y')).status, 200);
  } finally {
    await s2.stop();
  }
});
