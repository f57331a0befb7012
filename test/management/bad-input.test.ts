// Bad input gets a clear 4xx `{"error":{"code","message"}}` and changes nothing: every stored
// metadata version, the keystore listing and the pending changes are compared before and after.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { exportPrivateKeyPem } from '../../src/core/crypto/pem.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { outsideKey } from './keys-helpers.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let m: Mgmt;
let gun: string;
let g: string;
let offline: string;
let targetsKey: string;

before(async () => {
  m = await startMgmt();
  gun = newGun('bad');
  g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  expectStatus(await m.call('post', `/repositories/${g}/signers`, { body: { name: 'alice', publicKeys: [outsideKey().publicPem] } }), 200);
  expectStatus(
    await m.call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/scoped', generate: true, paths: ['rel-'] } }),
    200,
  );
  targetsKey = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
  offline = newGun('bad-offline');
  expectStatus(
    await m.call('post', '/repositories', { body: { gun: offline, rootKey: 'offline', passphrase: 'offline-passphrase' } }),
    201,
  );
});
after(() => m.stop());

const refused = async (status: number, code: string, fn: () => ReturnType<Mgmt['call']>) => {
  await unchanged(m, gun, async () => {
    const r = await fn();
    expectError(r, status, code);
    assert.ok(r.body.error.message.length > 0);
  });
};

test('unknown algorithms are refused, for new repositories and for rotation', async () => {
  await refused(400, 'UNKNOWN_ALGORITHM', () =>
    m.call('post', '/repositories', { body: { gun: `${gun}-x`, rootKey: 'keystore', algorithm: 'dsa' } }),
  );
  await refused(400, 'UNSUPPORTED_KEY', () =>
    m.call('post', '/repositories', { body: { gun: `${gun}-y`, rootKey: 'keystore', algorithm: 'ed25519' } }),
  );
  await refused(400, 'UNKNOWN_ALGORITHM', () =>
    m.call('post', `/repositories/${g}/keys/targets/rotate`, { body: { algorithm: 'rsa1024' } }),
  );
  await refused(400, 'UNSUPPORTED_KEY', () => m.call('post', `/repositories/${g}/keys/root/rotate`, { body: { algorithm: 'ed25519' } }));
  assert.deepEqual(await m.tg.app.store.latestVersions(`${gun}-x`), new Map());
});

test('weak keys: RSA under 2048 bits as a private key, a signer key or a role key', async () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const pem = exportPrivateKeyPem(privateKey, { passphrase: 'weak-key-passphrase', role: 'targets', gun });
  await refused(400, 'WEAK_KEY', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem, passphrase: 'weak-key-passphrase', role: 'targets' } }),
  );
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await refused(400, 'WEAK_KEY', () => m.call('post', `/repositories/${g}/signers`, { body: { name: 'bob', publicKeys: [pub] } }));
  await refused(400, 'WEAK_KEY', () => m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { publicKey: pub } }));
  const ec = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  await refused(400, 'UNSUPPORTED_KEY', () =>
    m.call('post', `/repositories/${g}/signers`, {
      body: { name: 'bob', publicKeys: [ec.publicKey.export({ type: 'spki', format: 'pem' }).toString()] },
    }),
  );
});

test('malformed PEM, wrong passphrase, missing passphrase', async () => {
  const s = generateSigner('ecdsa');
  const pem = exportPrivateKeyPem(s.privateKey, { passphrase: 'right-passphrase', role: 'targets', gun });
  await refused(400, 'MALFORMED_PEM', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem: 'not a pem', passphrase: 'x', role: 'targets' } }),
  );
  await refused(400, 'MALFORMED_PEM', () =>
    m.call('post', `/repositories/${g}/keys/import`, {
      body: { pem: pem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\n!!!!\n'), passphrase: 'right-passphrase', role: 'targets' },
    }),
  );
  await refused(400, 'WRONG_PASSPHRASE', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem, passphrase: 'wrong-passphrase', role: 'targets' } }),
  );
  await refused(400, 'PASSPHRASE_REQUIRED', () => m.call('post', `/repositories/${g}/keys/import`, { body: { pem, role: 'targets' } }));
  await refused(400, 'MALFORMED_PEM', () =>
    m.call('post', `/repositories/${g}/signers`, {
      body: { name: 'bob', publicKeys: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'] },
    }),
  );
  await refused(400, 'UNSUPPORTED_KEY', () => m.call('post', `/repositories/${g}/signers`, { body: { name: 'bob', publicKeys: [pem] } }));
  await refused(400, 'PASSPHRASE_REQUIRED', () => m.call('post', '/repositories', { body: { gun: `${gun}-z`, rootKey: 'offline' } }));
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/keys/${targetsKey}/export`, { body: { passphrase: 'short' } }),
  );
});

test('importing a key for the wrong role or repository', async () => {
  const s = generateSigner('ecdsa');
  const snap = exportPrivateKeyPem(s.privateKey, { passphrase: 'role-passphrase', role: 'snapshot', gun });
  await refused(400, 'ROLE_MISMATCH', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem: snap, passphrase: 'role-passphrase', role: 'targets' } }),
  );
  const other = exportPrivateKeyPem(s.privateKey, {
    passphrase: 'role-passphrase',
    role: 'targets',
    gun: 'registry.example.com/other/app',
  });
  await refused(400, 'GUN_MISMATCH', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem: other, passphrase: 'role-passphrase', role: 'targets' } }),
  );
  const ok = exportPrivateKeyPem(s.privateKey, { passphrase: 'role-passphrase', role: 'targets', gun });
  await refused(404, 'ROLE_NOT_FOUND', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem: ok, passphrase: 'role-passphrase', role: 'targets/nobody' } }),
  );
  await refused(400, 'KEY_NOT_IN_ROLE', () =>
    m.call('post', `/repositories/${g}/keys/import`, {
      body: {
        pem: exportPrivateKeyPem(s.privateKey, { passphrase: 'role-passphrase', role: 'root' }),
        passphrase: 'role-passphrase',
        role: 'root',
      },
    }),
  );
  // The same key twice: the second import is a conflict.
  const held = await m.tg.app.keys.exportPrivate(targetsKey);
  const again = exportPrivateKeyPem(held, { passphrase: 'role-passphrase', role: 'targets', gun });
  await refused(409, 'KEY_EXISTS', () =>
    m.call('post', `/repositories/${g}/keys/import`, { body: { pem: again, passphrase: 'role-passphrase', role: 'targets' } }),
  );
});

test('import: replaceKeyId without activate is refused (the key was stored and the key to replace kept, as if the rotation had been asked for nothing)', async () => {
  const pem = exportPrivateKeyPem(generateSigner('ecdsa').privateKey, { passphrase: 'role-passphrase', role: 'targets', gun });
  for (const extra of [{}, { activate: false }]) {
    await refused(400, 'INVALID_REQUEST', () =>
      m.call('post', `/repositories/${g}/keys/import`, {
        body: { pem, passphrase: 'role-passphrase', role: 'targets', replaceKeyId: targetsKey, ...extra },
      }),
    );
  }
});

test('adding a role key: publicKey and algorithm together are refused (the algorithm was ignored for the given key)', async () => {
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { publicKey: outsideKey().publicPem, algorithm: 'rsa' } }),
  );
});

test('rotating a role that does not exist, or one that is not a role', async () => {
  await refused(404, 'ROLE_NOT_FOUND', () => m.call('post', `/repositories/${g}/keys/${enc('targets/nobody')}/rotate`, { body: {} }));
  await refused(400, 'INVALID_ROLE', () => m.call('post', `/repositories/${g}/keys/admin/rotate`, { body: {} }));
  await refused(400, 'INVALID_ROLE', () => m.call('post', `/repositories/${g}/keys/${enc('targets/../root')}/rotate`, { body: {} }));
  await refused(400, 'KEY_NOT_IN_ROLE', () =>
    m.call('post', `/repositories/${g}/keys/targets/rotate`, { body: { keyId: '0'.repeat(64) } }),
  );
  await refused(404, 'NOT_FOUND', () => m.call('post', `/repositories/${enc(`${gun}-missing`)}/keys/targets/rotate`, { body: {} }));
});

test('a threshold larger than the number of keys', async () => {
  await refused(400, 'THRESHOLD_TOO_HIGH', () => m.call('put', `/repositories/${g}/roles/targets/threshold`, { body: { threshold: 2 } }));
  await refused(400, 'THRESHOLD_TOO_HIGH', () =>
    m.call('put', `/repositories/${g}/roles/${enc('targets/releases')}/threshold`, { body: { threshold: 3 } }),
  );
  await refused(400, 'THRESHOLD_TOO_HIGH', () => m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { threshold: 3 } }));
  await refused(400, 'THRESHOLD_TOO_HIGH', () =>
    m.call('post', `/repositories/${g}/signers`, { body: { name: 'carol', publicKeys: [outsideKey().publicPem], threshold: 2 } }),
  );
  await refused(400, 'THRESHOLD_TOO_HIGH', () =>
    m.call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/ci', generate: true, threshold: 2 } }),
  );
});

test('revoking a key a role cannot do without; deleting an unknown key', async () => {
  await refused(409, 'KEY_IN_USE', () => m.call('delete', `/repositories/${g}/keys/${targetsKey}`));
  await refused(404, 'KEY_NOT_FOUND', () => m.call('delete', `/repositories/${g}/keys/${'1'.repeat(64)}`));
  await refused(404, 'KEY_NOT_FOUND', () =>
    m.call('post', `/repositories/${g}/keys/${'1'.repeat(64)}/export`, { body: { passphrase: 'long-enough' } }),
  );
});

test('malformed requests: bad JSON, unknown fields, wrong types, bad GUNs, bad tags', async () => {
  await refused(400, 'INVALID_JSON', () => m.call('post', `/repositories/${g}/tags`, { raw: '{"tag": "v1", ' }));
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, size: 1, extra: true } }),
  );
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: 'sha256:abc', size: 1 } }),
  );
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, size: -1 } }),
  );
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'x', digest: `sha256:${'a'.repeat(64)}`, size: 1, role: 'targets/scoped' } }),
  );
  await refused(400, 'INVALID_GUN', () => m.call('post', '/repositories', { body: { gun: 'a/../b', rootKey: 'keystore' } }));
  await refused(400, 'INVALID_GUN', () => m.call('post', '/repositories', { body: { gun: 'a//b', rootKey: 'keystore' } }));
  await refused(400, 'INVALID_REQUEST', () => m.call('post', '/repositories', { body: { gun, rootKey: 'hsm' } }));
  await refused(409, 'CONFLICT', () => m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }));
  await refused(400, 'INVALID_REQUEST', () => m.call('get', '/expiring?within=soon'));
  await refused(404, 'NOT_FOUND', () => m.call('delete', `/repositories/${g}/tags/never-signed`));
});

test('a query parameter given twice is refused, never silently dropped (DELETE ?keys=delete&keys=delete deleted the repository but kept its keys)', async () => {
  const other = newGun('dup-query');
  expectStatus(await m.call('post', '/repositories', { body: { gun: other, rootKey: 'keystore' } }), 201);
  await unchanged(m, other, async () => {
    expectError(await m.call('delete', `/repositories/${enc(other)}?keys=delete&keys=delete`), 400, 'INVALID_REQUEST');
  });
  await refused(400, 'INVALID_REQUEST', () => m.call('get', '/expiring?within=1s&within=2w'));
  await refused(400, 'INVALID_REQUEST', () => m.call('get', '/audit?limit=1&limit=2'));
  await refused(400, 'INVALID_REQUEST', () => m.call('delete', `/repositories/${g}/tags/v1?role=targets&role=${enc('targets/scoped')}`));
});

test('the longest documented within (999999999w) answers 200: its cutoff lies past the largest date (was a RangeError, 500)', async () => {
  for (const within of ['999999999w', '999999999d']) {
    const r = await m.call('get', `/expiring?within=${within}`);
    expectStatus(r, 200);
    assert.ok(
      r.body.items.some((i: { gun: string }) => i.gun === gun),
      'every role expires before the cutoff',
    );
  }
});

test('a body the JSON parser cannot read (corrupt gzip, unknown encoding or charset) is a 400, never a 500', async () => {
  const body = JSON.stringify({ tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, size: 1 });
  for (const headers of [
    { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
    { 'Content-Type': 'application/json', 'Content-Encoding': 'x-unknown' },
    { 'Content-Type': 'application/json; charset=latin1' },
  ]) {
    await unchanged(m, gun, async () => {
      const res = await request(m.tg.url)
        .post(`/api/v1/repositories/${g}/tags`)
        .set('Authorization', `Bearer ${m.admin}`)
        .set(headers)
        .send(body);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.error.code, 'INVALID_REQUEST', `${JSON.stringify(headers)}: ${res.text}`);
    });
  }
});

test('a path segment that is not valid percent-encoding is a 400, never a 500 (express raised a URIError)', async () => {
  await refused(400, 'INVALID_REQUEST', () => m.call('get', '/repositories/%ZZ'));
  await refused(400, 'INVALID_REQUEST', () => m.call('delete', `/repositories/${g}/tags/%E0%A4%A`));
  await refused(400, 'INVALID_REQUEST', () => m.call('get', '/pending/%C0'));
});

test('tags follow the input rules of the signing API (one implementation): sha256: digests, sizes above 0, OCI tags, targets roles', async () => {
  const sha = `sha256:${'a'.repeat(64)}`;
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: 'a'.repeat(64), size: 1 } }),
  );
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: `sha256:${'A'.repeat(64)}`, size: 1 } }),
  );
  await refused(400, 'INVALID_REQUEST', () => m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: sha, size: 0 } }));
  await refused(400, 'INVALID_REQUEST', () => m.call('post', `/repositories/${g}/tags`, { body: { tag: 'a/b', digest: sha, size: 1 } }));
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: '.hidden', digest: sha, size: 1 } }),
  );
  await refused(400, 'INVALID_REQUEST', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: sha, size: 1, role: 'snapshot' } }),
  );
  await refused(404, 'ROLE_NOT_FOUND', () =>
    m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: sha, size: 1, role: 'targets/nope' } }),
  );
  await refused(400, 'INVALID_REQUEST', () => m.call('delete', `/repositories/${g}/tags/${enc('.hidden')}`));
  await refused(400, 'INVALID_ROLE', () => m.call('delete', `/repositories/${g}/tags/v1?role=root`));
  await refused(404, 'ROLE_NOT_FOUND', () => m.call('delete', `/repositories/${g}/tags/v1?role=${enc('targets/nope')}`));
  await refused(404, 'NOT_FOUND', () =>
    m.call('post', `/repositories/${enc(`${gun}-none`)}/tags`, { body: { tag: 'v1', digest: sha, size: 1 } }),
  );
});

test('a root upload that is not signed by the current root is refused through the publish checks', async () => {
  const cur = JSON.parse((await request(m.tg.url).get(`/v2/${offline}/_trust/tuf/root.json`)).text) as { signed: { version: number } };
  const body = { ...cur.signed, version: cur.signed.version + 1 };
  const stranger = outsideKey();
  const root = {
    signed: body,
    signatures: [{ keyid: stranger.id, method: 'ecdsa', sig: stranger.sign(canonicalBytes(body).toString('base64')) }],
  };
  await unchanged(m, offline, async () =>
    expectError(await m.call('post', `/repositories/${enc(offline)}/root`, { body: { root } }), 400, 'INVALID_METADATA'),
  );
  await unchanged(m, offline, async () =>
    expectError(
      await m.call('post', `/repositories/${enc(offline)}/root`, { body: { root: { signed: { ...body, version: 99 }, signatures: [] } } }),
      400,
      'INVALID_METADATA',
    ),
  );
});

test('a pending change refuses bad signatures and signatures by keys it does not need, unchanged', async () => {
  const p = await m.call('post', `/repositories/${enc(offline)}/keys/targets/rotate`, { body: {} });
  expectStatus(p, 202);
  const id = p.body.pending.id as string;
  const stranger = outsideKey();
  const root = p.body.pending.parts.find((x: { role: string }) => x.role === 'root');
  const rootId = root.requirements[0].keyids[0] as string;
  const before = await m.tg.app.management.pending.get(id);
  expectError(
    await m.call('post', `/pending/${id}/signatures`, {
      body: { signatures: [{ keyid: stranger.id, sig: stranger.sign(root.canonical) }] },
    }),
    400,
    'KEY_NOT_IN_ROLE',
  );
  expectError(
    await m.call('post', `/pending/${id}/signatures`, { body: { signatures: [{ keyid: rootId, sig: stranger.sign(root.canonical) }] } }),
    400,
    'INVALID_SIGNATURE',
  );
  expectError(await m.call('post', `/pending/${id}/signatures`, { body: {} }), 400, 'INVALID_REQUEST');
  // Not base64 at all: said so, rather than "does not verify" after decoding what could be decoded.
  const notB64 = await m.call('post', `/pending/${id}/signatures`, { body: { signatures: [{ keyid: rootId, sig: 'not base64!' }] } });
  expectError(notB64, 400, 'INVALID_REQUEST');
  assert.match(JSON.stringify(notB64.body), /sig/);
  expectError(await m.call('post', `/pending/${id}/signatures`, { body: { keyId: '2'.repeat(64) } }), 404, 'KEY_NOT_FOUND');
  assert.deepEqual(await m.tg.app.management.pending.get(id), before);
  expectError(await m.call('post', `/pending/${'0'.repeat(24)}/signatures`, { body: { keyId: targetsKey } }), 404, 'NOT_FOUND');
  // Cancelling drops the key made for the rotation.
  const newKey = p.body.newKeyId as string;
  assert.ok(await m.tg.app.keys.get(newKey));
  expectStatus(await m.call('delete', `/pending/${id}`), 200);
  assert.equal(await m.tg.app.keys.get(newKey), undefined);
});
