// Threshold (m-of-n) signing through the signing API: a sign request whose keys fall short of the
// role's threshold records a partial signature as a pending change (the management API's), says
// how many more are needed and from which keys, publishes nothing, and is completed by the
// other key holders through POST /api/v1/pending/{id}/signatures.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import {
  addDelegation,
  bearer,
  fakeDigest,
  initRepo,
  newGun,
  startSigningServer,
  targetsOf,
  versions,
  type SigningServer,
} from './support.js';

let s: SigningServer;
before(async () => {
  s = await startSigningServer();
});
after(() => s.stop());

const verify = (image: string) => s.agent.post('/api/v1/signing/verify').set(bearer(s.adminToken)).send({ image });

test('2-of-2 held by two CI tokens: the first records a partial signature, the second completes it', async () => {
  const gun = newGun('m-of-n');
  await initRepo(s, gun);
  const second = await s.tg.app.keys.generate(gun, 'targets/releases', 'ecdsa');
  const first = await addDelegation(s, gun, 'targets/releases', { extraKeys: [second.public], threshold: 2 });
  const alice = s.token([`signer:${gun}`], [first]);
  const bob = s.token([`signer:${gun}`], [second.id]);
  const before = await versions(s, gun);
  const d = fakeDigest('release 1.0');

  const res = await s.agent
    .post('/api/v1/signing/sign')
    .set(bearer(alice))
    .send({ gun, tag: '1.0', digest: d, size: 10, role: 'targets/releases' });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  assert.equal(res.body.status, 'pending');
  const p = res.body.pending[0];
  assert.deepEqual(p.roles, [{ role: 'targets/releases', needed: 1, keyIds: [second.id], signatures: 1 }]);
  assert.match(res.body.message, /targets\/releases .* needs 1 more signature/);
  assert.deepEqual(await versions(s, gun), before, 'nothing is published while signatures are missing');
  assert.equal((await verify(`${gun}:1.0`)).body.verdict, 'denied');

  // The pending change is the management API's: visible there with what it still needs.
  const view = await s.agent.get(`/api/v1/pending/${p.id}`).set(bearer(bob));
  assert.equal(view.status, 200, JSON.stringify(view.body));
  assert.equal(view.body.missing, 1);

  const done = await s.agent.post(`/api/v1/pending/${p.id}/signatures`).set(bearer(bob)).send({ keyId: second.id });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.status, 'published');
  const after = await versions(s, gun);
  assert.equal(after['targets/releases'], (before['targets/releases'] ?? 0) + 1);
  const v = await verify(`${gun}:1.0`);
  assert.equal(v.body.verdict, 'signed');
  assert.deepEqual([...v.body.roles[0].keyIds].sort(), [first, second.id].sort());
});

test('a key held elsewhere: the server signs its share, the offline holder uploads a signature over the canonical bytes', async () => {
  const gun = newGun('m-of-n-offline');
  await initRepo(s, gun);
  const offline = generateSigner('ecdsa');
  await addDelegation(s, gun, 'targets/ci', { extraKeys: [offline.key], threshold: 2 });
  const before = await versions(s, gun);
  const res = await s.agent
    .post('/api/v1/signing/batch')
    .set(bearer(s.adminToken))
    .send({
      gun,
      role: 'targets/ci',
      items: [
        { tag: 'a', digest: fakeDigest('a'), size: 1 },
        { tag: 'b', digest: fakeDigest('b'), size: 2 },
      ],
    });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id = res.body.pending[0].id as string;
  assert.deepEqual(res.body.pending[0].roles[0].keyIds, [offline.id]);
  assert.deepEqual(await versions(s, gun), before);

  const view = await s.agent.get(`/api/v1/pending/${id}`).set(bearer(s.adminToken));
  const part = view.body.parts.find((x: { role: string }) => x.role === 'targets/ci');
  const sig = (await offline.sign(Buffer.from(part.canonical, 'base64'))).toString('base64');
  // A signature over other bytes is refused and changes nothing.
  const wrong = await s.agent
    .post(`/api/v1/pending/${id}/signatures`)
    .set(bearer(s.adminToken))
    .send({ signatures: [{ keyid: offline.id, sig: (await offline.sign(Buffer.from('other'))).toString('base64') }] });
  assert.equal(wrong.status, 400);
  assert.deepEqual(await versions(s, gun), before);

  const done = await s.agent
    .post(`/api/v1/pending/${id}/signatures`)
    .set(bearer(s.adminToken))
    .send({ signatures: [{ keyid: offline.id, sig }] });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  const body = await targetsOf(s, gun, 'targets/ci');
  assert.deepEqual(Object.keys(body!.targets).sort(), ['a', 'b']);
  assert.equal((await versions(s, gun))['targets/ci'], 1);
});

test('revoking from an m-of-n role is pending too, and the tag stays signed until it completes', async () => {
  const gun = newGun('m-of-n-revoke');
  await initRepo(s, gun);
  const offline = generateSigner('ecdsa');
  await addDelegation(s, gun, 'targets/releases', { extraKeys: [offline.key], threshold: 2 });
  // Sign with both (server share, then the offline share), then revoke.
  const r1 = await s.agent
    .post('/api/v1/signing/sign')
    .set(bearer(s.adminToken))
    .send({ gun, tag: 'v1', digest: fakeDigest('v1'), size: 1, role: 'targets/releases' });
  const id1 = r1.body.pending[0].id as string;
  const part1 = (await s.agent.get(`/api/v1/pending/${id1}`).set(bearer(s.adminToken))).body.parts[0];
  await s.agent
    .post(`/api/v1/pending/${id1}/signatures`)
    .set(bearer(s.adminToken))
    .send({ signatures: [{ keyid: offline.id, sig: (await offline.sign(Buffer.from(part1.canonical, 'base64'))).toString('base64') }] });
  assert.equal((await verify(`${gun}:v1`)).body.verdict, 'signed');
  const rev = await s.agent.post('/api/v1/signing/revoke').set(bearer(s.adminToken)).send({ gun, tag: 'v1', role: 'targets/releases' });
  assert.equal(rev.status, 202, JSON.stringify(rev.body));
  assert.equal(rev.body.pending.roles[0].needed, 1);
  assert.equal((await verify(`${gun}:v1`)).body.verdict, 'signed');
});
