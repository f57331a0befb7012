// Security issue 13, V6 through the management API: a delegation (or signer) may not list one
// public key under two key IDs, raw and as a certificate, or as certificates from different CAs,
// since a threshold would then count one key twice. And no repository is named like a role.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { after, before, test } from 'node:test';
import { publicKeyObject } from '../../src/core/crypto/keys.js';
import { createCertificateForKey } from '../../src/core/crypto/x509.js';
import { Metadata, type RootBody } from '../../src/core/tuf/metadata.js';
import { outsideKey } from './keys-helpers.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let m: Mgmt;
before(async () => {
  m = await startMgmt();
});
after(() => m.stop());

/** A certificate over `k`'s public key, issued by a CA of its own. */
async function certFromCa(k: ReturnType<typeof outsideKey>, ca: string): Promise<string> {
  const caKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  return (
    await createCertificateForKey({ commonName: 'team', issuerCommonName: ca, privateKey: caKey, publicKey: createPublicKey(k.privateKey) })
  ).pem;
}

test('V6: a certificate from another CA over the same key is refused by POST …/delegations', async () => {
  const g = newGun('dupkey');
  expectStatus(await m.call('post', '/repositories', { body: { gun: g, rootKey: 'keystore' } }), 201);
  const k = outsideKey();
  const [certA, certB] = [await certFromCa(k, 'CA one'), await certFromCa(k, 'CA two')];
  expectStatus(
    await m.call('post', `/repositories/${enc(g)}/delegations`, { body: { role: 'targets/team', publicKeys: [certA], paths: [''] } }),
    200,
  );
  const same = /delegation targets\/team: keys [0-9a-f]{64} and [0-9a-f]{64} are the same public key/;
  await unchanged(m, g, async () => {
    // The same key through another CA's certificate, or as a plain key, added to the role...
    for (const pem of [certB, k.publicPem]) {
      const r = await m.call('post', `/repositories/${enc(g)}/delegations`, {
        body: { role: 'targets/team', publicKeys: [pem], threshold: 2 },
      });
      expectError(r, 400, 'INVALID_REQUEST');
      assert.match(r.body.error.message, same);
    }
    // ...or both in one new delegation, or as a signer.
    const r = await m.call('post', `/repositories/${enc(g)}/delegations`, {
      body: { role: 'targets/other', publicKeys: [k.publicPem, certB], threshold: 2, paths: [''] },
    });
    expectError(r, 400, 'INVALID_REQUEST');
    assert.match(r.body.error.message, /delegation targets\/other: keys [0-9a-f]{64} and [0-9a-f]{64} are the same public key/);
    expectError(
      await m.call('post', `/repositories/${enc(g)}/signers`, { body: { name: 'bob', publicKeys: [certB, k.publicPem], threshold: 2 } }),
      400,
      'INVALID_REQUEST',
    );
  });
  // Another key is welcome.
  expectStatus(
    await m.call('post', `/repositories/${enc(g)}/delegations`, {
      body: { role: 'targets/team', publicKeys: [outsideKey().publicPem], threshold: 2 },
    }),
    200,
  );
  const dels = (await m.call('get', `/repositories/${enc(g)}/delegations`)).body.delegations as Array<{
    role: string;
    keyIds: string[];
    threshold: number;
  }>;
  const team = dels.find((d) => d.role === 'targets/team');
  assert.equal(team?.keyIds?.length, 2, JSON.stringify(dels));
});

test('V6: a certificate over a key a root role lists already is refused by POST …/roles/{role}/keys', async () => {
  const g = newGun('dupkey-root');
  expectStatus(await m.call('post', '/repositories', { body: { gun: g, rootKey: 'keystore' } }), 201);
  const root = Metadata.parse<RootBody>('root', (await m.tg.app.trust.current(g, 'root'))!.bytes).body;
  const targetsKey = root.keys[root.roles.targets.keyids[0]!]!;
  const caKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
  const { pem } = await createCertificateForKey({
    commonName: g,
    issuerCommonName: 'some CA',
    privateKey: caKey,
    publicKey: publicKeyObject(targetsKey),
  });
  await unchanged(m, g, async () => {
    const r = await m.call('post', `/repositories/${enc(g)}/roles/targets/keys`, { body: { publicKey: pem, threshold: 2 } });
    expectError(r, 400, 'INVALID_REQUEST');
    assert.match(r.body.error.message, /role targets lists keys [0-9a-f]{64} and [0-9a-f]{64}, which are the same public key/);
  });
});

test('GUN named like a role is refused by POST /repositories', async () => {
  for (const gun of ['root', 'targets/releases', 'Snapshot/app']) {
    const before = (await m.tg.app.keys.list()).length;
    expectError(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 400, 'INVALID_GUN');
    assert.equal((await m.tg.app.keys.list()).length, before, 'no key was made');
  }
});
