// Every management endpoint, end to end on a real trustgate, with every response validated
// against openapi.yaml; plus the checks that openapi.yaml, the router's table and the JSON
// Schemas in api/ agree with each other.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { importPrivateKeyPem, exportPrivateKeyPem } from '../../src/core/crypto/pem.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { canonicalBytes } from '../../src/core/json/canonical.js';
import { routes } from '../../src/management/router.js';
import { outsideKey, signAs } from './keys-helpers.js';
import { checker, enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

let m: Mgmt;
before(async () => (m = await startMgmt()));
after(() => m.stop());

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const tuf = async (gun: string, role: string) => {
  const r = await request(m.tg.url).get(`/v2/${gun}/_trust/tuf/${role}.json`);
  assert.equal(r.status, 200, `GET ${role}.json: ${r.status}`);
  return JSON.parse(r.text) as { signed: Record<string, unknown> & { version: number }; signatures: Array<{ keyid: string }> };
};

/** openapi.yaml also documents other modules' routes (e.g. `signing`); these tags are the management API's. */
const MANAGEMENT_TAGS = new Set(['repositories', 'keys', 'delegations', 'tags', 'pending', 'expiry', 'tokens', 'audit', 'backup', 'proxy']);
const managementOps = () => checker().ops.filter((o) => (o.op.tags as string[] | undefined)?.some((t) => MANAGEMENT_TAGS.has(t)));

test('openapi.yaml documents exactly the routes the router serves, with the same request schemas', () => {
  const table = routes({ service: {} as any, tokens: {} as any, audit: {} as any, log: () => undefined });
  const c = checker();
  const served = table.map((r) => `${r.method} ${r.path}`).sort();
  const documented = managementOps()
    .map((o) => `${o.method} ${o.template}`)
    .sort();
  assert.deepEqual(documented, served);
  for (const r of table) {
    const op = c.ops.find((o) => o.method === r.method && o.template === r.path)!;
    const schema = op.op.requestBody?.content?.['application/json']?.schema?.$ref as string | undefined;
    assert.equal(schema?.replace(/^api\//, ''), r.body, `${r.method} ${r.path}: request schema`);
    if (r.body) assert.ok(c.validator(`api/${r.body}`), `schema ${r.body} compiles`);
    for (const status of Object.keys(op.responses)) {
      const resp = c.deref(op.responses[status]);
      // A file answer (GET /backup) is bytes of its own media type; everything else is JSON.
      if (c.fileAnswer(resp, `${r.method} ${r.path} ${status}`) !== undefined) continue;
      const json = resp.content['application/json'];
      assert.ok(json.schema.$ref, `${r.method} ${r.path} ${status} has a schema`);
      c.validator(json.schema.$ref);
    }
  }
});

test('every example request in api/examples is referenced from openapi.yaml, and the management ones are valid for their schemas', () => {
  const c = checker();
  const used = new Set<string>();
  for (const o of c.ops) {
    const content = o.op.requestBody?.content?.['application/json'];
    for (const ex of Object.values<{ externalValue: string }>(content?.examples ?? {})) used.add(ex.externalValue);
  }
  let checked = 0;
  for (const o of managementOps()) {
    const content = o.op.requestBody?.content?.['application/json'];
    for (const ex of Object.values<{ externalValue: string }>(content?.examples ?? {})) {
      const v = c.validator(content.schema.$ref);
      const body = JSON.parse(readFileSync(new URL(`../../${ex.externalValue}`, import.meta.url), 'utf8')) as unknown;
      assert.ok(v(body), `${ex.externalValue}: ${c.ajv.errorsText(v.errors)}`);
      checked++;
    }
  }
  assert.ok(checked >= 11);
  const files = readdirSync(new URL('../../api/examples/', import.meta.url)).map((f) => `api/examples/${f}`);
  assert.deepEqual(
    files.filter((f) => !used.has(f)),
    [],
    'examples nobody refers to',
  );
});

test('the schemas really constrain: an invented field or a wrong type fails validation', () => {
  const c = checker();
  assert.equal(c.validator('api/keys.json#/$defs/KeyInfo')({ id: 'x' }), false);
  assert.equal(c.validator('api/common.json#/$defs/Error')({ error: { code: 'NOT_A_CODE', message: 'x' } }), false);
  assert.equal(
    c.validator('api/common.json#/$defs/ChangeResult')({ status: 'published', action: 'a', summary: 's', versions: {}, extra: 1 }),
    false,
  );
});

test('a full tour of the API: repositories, tags, signers, delegations, keys, m-of-n, offline root, expiry, tokens, audit', async () => {
  const gun = newGun('tour');
  const g = enc(gun);

  expectStatus(await m.call('get', '/whoami'), 200);

  // Repositories.
  const created = await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } });
  expectStatus(created, 201);
  assert.equal(created.body.rootKey, undefined);
  assert.equal(created.body.repository.rootKey, 'keystore');
  const list = await m.call('get', '/repositories');
  expectStatus(list, 200);
  assert.ok(list.body.repositories.some((r: { gun: string }) => r.gun === gun));
  expectStatus(await m.call('get', `/repositories/${g}`), 200);

  // Tags.
  const tagged = await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: digest('a'), size: 100 } });
  expectStatus(tagged, 200);
  assert.equal(tagged.body.role, 'targets');
  let inspect = await m.call('get', `/repositories/${g}`);
  assert.deepEqual(inspect.body.signedTags, [{ tag: 'v1', digest: digest('a'), size: 100, roles: ['targets'], signers: ['Repo Admin'] }]);
  const tagList = await m.call('get', `/repositories/${g}/tags`);
  expectStatus(tagList, 200);
  assert.deepEqual(
    tagList.body.tags.map((t: { tag: string; released: boolean; signedAtExact: boolean }) => [t.tag, t.released, t.signedAtExact]),
    [['v1', true, true]],
  );
  expectStatus(await m.call('delete', `/repositories/${g}/tags/v1`), 200);
  assert.deepEqual((await m.call('get', `/repositories/${g}`)).body.signedTags, []);

  // Signers (docker trust signer add/remove) and delegations.
  const alice = outsideKey();
  const signer = await m.call('post', `/repositories/${g}/signers`, { body: { name: 'alice', publicKeys: [alice.publicPem] } });
  expectStatus(signer, 200);
  assert.deepEqual(signer.body.keyIds, [alice.id]);
  const signers = await m.call('get', `/repositories/${g}/signers`);
  expectStatus(signers, 200);
  assert.deepEqual(signers.body.signers, [
    { name: 'alice', role: 'targets/alice', keyIds: [alice.id], keys: [{ id: alice.id, held: 'offline' }] },
  ]);
  const dels = await m.call('get', `/repositories/${g}/delegations`);
  expectStatus(dels, 200);
  assert.deepEqual(
    dels.body.delegations.map((d: { role: string; keyIds: string[]; paths: string[]; threshold: number }) => [
      d.role,
      d.keyIds,
      d.paths,
      d.threshold,
    ]),
    [
      ['targets/alice', [alice.id], [''], 1],
      ['targets/releases', [alice.id], [''], 1],
    ],
  );
  const qa = await m.call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/qa', generate: true, paths: ['qa-'] } });
  expectStatus(qa, 200);
  const qaKey = qa.body.keyIds[0] as string;
  assert.equal((await m.tg.app.keys.get(qaKey))?.role, 'targets/qa');
  const qaTag = await m.call('post', `/repositories/${g}/tags`, {
    body: { tag: 'qa-1', digest: digest('b'), size: 5, role: 'targets/qa' },
  });
  expectStatus(qaTag, 200);
  inspect = await m.call('get', `/repositories/${g}`);
  assert.deepEqual(inspect.body.allTags, [{ tag: 'qa-1', digest: digest('b'), size: 5, roles: ['targets/qa'], signers: ['qa'] }]);
  assert.deepEqual(inspect.body.signedTags, [], 'docker shows only tags released in targets or targets/releases');
  expectStatus(await m.call('delete', `/repositories/${g}/delegations/${enc('targets/qa')}`), 200);
  assert.equal(await m.tg.app.keys.get(qaKey), undefined, 'the removed delegation key left the keystore');
  expectStatus(await m.call('delete', `/repositories/${g}/signers/alice`), 200);
  assert.deepEqual((await m.call('get', `/repositories/${g}/delegations`)).body.delegations, []);

  // Keys: list, add (m-of-n, both held), threshold, rotate, export, import, delete.
  const keys = await m.call('get', `/repositories/${g}/keys`);
  expectStatus(keys, 200);
  assert.deepEqual(
    keys.body.keys.map((k: { role: string; held: string }) => `${k.role}:${k.held}`),
    ['root:keystore', 'targets:keystore', 'snapshot:server', 'timestamp:server'],
  );
  const added = await m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { threshold: 2 } });
  expectStatus(added, 200);
  let root = await tuf(gun, 'root');
  assert.deepEqual((root.signed.roles as Record<string, { threshold: number; keyids: string[] }>).targets!.threshold, 2);
  const thr = await m.call('put', `/repositories/${g}/roles/targets/threshold`, { body: { threshold: 1 } });
  expectStatus(thr, 200);
  const targetsIds = (await tuf(gun, 'root')).signed.roles as Record<string, { keyids: string[] }>;
  const rot = await m.call('post', `/repositories/${g}/keys/targets/rotate`, { body: { keyId: targetsIds.targets!.keyids[0] } });
  expectStatus(rot, 200);
  assert.ok(
    (await tuf(gun, 'targets')).signatures.some((s) => s.keyid === rot.body.newKeyId),
    'targets re-signed by the new key',
  );
  const exp = await m.call('post', `/repositories/${g}/keys/${rot.body.newKeyId}/export`, { body: { passphrase: 'export-passphrase' } });
  expectStatus(exp, 200);
  assert.equal(importPrivateKeyPem(exp.body.pem, 'export-passphrase').gun, gun);
  // An unused key: imported (stored only), then deleted.
  const spare = generateSigner('ecdsa');
  const sparePem = exportPrivateKeyPem(spare.privateKey, { passphrase: 'spare-passphrase', role: 'targets', gun });
  const imp = await m.call('post', `/repositories/${g}/keys/import`, {
    body: { pem: sparePem, passphrase: 'spare-passphrase', role: 'targets' },
  });
  expectStatus(imp, 201);
  assert.equal(imp.body.key.inMetadata, false);
  const del = await m.call('delete', `/repositories/${g}/keys/${spare.id}`);
  expectStatus(del, 200);
  assert.equal(del.body.deletedFromKeystore, true);
  assert.equal(await m.tg.app.keys.get(spare.id), undefined);

  // Revoking a listed key: the second targets key leaves the role and the keystore.
  const revoked = await m.call('delete', `/repositories/${g}/keys/${added.body.keyId}`);
  expectStatus(revoked, 200);
  assert.deepEqual(revoked.body.removedFromRoles, ['targets']);
  assert.equal(await m.tg.app.keys.get(added.body.keyId), undefined);
  assert.deepEqual(((await tuf(gun, 'root')).signed.roles as Record<string, { keyids: string[] }>).targets!.keyids, [rot.body.newKeyId]);

  // m-of-n with a key held elsewhere: adding it with threshold 2 waits for its signature over targets.
  const bob = outsideKey();
  const pend = await m.call('post', `/repositories/${g}/roles/targets/keys`, { body: { publicKey: bob.publicPem, threshold: 2 } });
  expectStatus(pend, 202);
  const p = pend.body.pending;
  assert.deepEqual(
    p.parts.map((x: { role: string; missing: number }) => [x.role, x.missing]),
    [
      ['root', 0],
      ['targets', 1],
    ],
  );
  const listed = await m.call('get', `/pending?gun=${g}`);
  expectStatus(listed, 200);
  assert.deepEqual(
    listed.body.pending.map((x: { id: string }) => x.id),
    [p.id],
  );
  expectStatus(await m.call('get', `/pending/${p.id}`), 200);
  const targetsPart = p.parts.find((x: { role: string }) => x.role === 'targets');
  const done = await m.call('post', `/pending/${p.id}/signatures`, {
    body: { signatures: [{ keyid: bob.id, sig: bob.sign(targetsPart.canonical) }] },
  });
  expectStatus(done, 200);
  assert.equal(done.body.status, 'published');
  root = await tuf(gun, 'root');
  assert.ok((root.signed.roles as Record<string, { keyids: string[] }>).targets!.keyids.includes(bob.id));
  // A change now waits for bob; cancelling it drops it.
  const waiting = await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v2', digest: digest('c'), size: 1 } });
  expectStatus(waiting, 202);
  expectStatus(await m.call('delete', `/pending/${waiting.body.pending.id}`), 200);
  expectStatus(await m.call('get', `/pending/${waiting.body.pending.id}`), 404);

  // Offline root: returned once; rotating it waits for the old key's signature; a signed root can be uploaded.
  const off = newGun('tour-offline');
  const o = enc(off);
  const createdOff = await m.call('post', '/repositories', {
    body: { gun: off, rootKey: 'offline', passphrase: 'offline-root-passphrase' },
  });
  expectStatus(createdOff, 201);
  const oldRoot = importPrivateKeyPem(createdOff.body.rootKey.pem, 'offline-root-passphrase');
  assert.equal(oldRoot.role, 'root');
  assert.equal(createdOff.body.repository.rootKey, 'offline');
  const rr = await m.call('post', `/repositories/${o}/keys/root/rotate`, {
    body: { rootKey: 'offline', passphrase: 'new-root-passphrase' },
  });
  expectStatus(rr, 202);
  assert.ok(rr.body.rootKey.pem);
  const rootPart = rr.body.pending.parts[0];
  assert.deepEqual(
    rootPart.requirements.map((r: { label: string; missing: number }) => [r.label, r.missing]),
    [
      ['current root', 1],
      ['new root', 0],
    ],
  );
  const oldRootId = createdOff.body.rootKey.id;
  const signedRoot = await m.call('post', `/pending/${rr.body.pending.id}/signatures`, {
    body: { signatures: [{ keyid: oldRootId, sig: signAs(oldRoot.privateKey, rootPart.canonical), role: 'root' }] },
  });
  expectStatus(signedRoot, 200);
  assert.equal(signedRoot.body.versions.root, 2);
  // The offline holder publishes root v3 signed with the new root key.
  const newRoot = importPrivateKeyPem(rr.body.rootKey.pem, 'new-root-passphrase');
  const cur = await tuf(off, 'root');
  const body = { ...cur.signed, version: cur.signed.version + 1 };
  const sig = signAs(newRoot.privateKey, canonicalBytes(body).toString('base64'));
  const up = await m.call('post', `/repositories/${o}/root`, {
    body: { root: { signed: body, signatures: [{ keyid: rr.body.newKeyId, method: 'ecdsa', sig }] } },
  });
  expectStatus(up, 200);
  assert.equal((await tuf(off, 'root')).signed.version, 3);

  // Expiry and re-signing.
  const expiring = await m.call('get', '/expiring?within=3650d');
  expectStatus(expiring, 200);
  assert.ok(expiring.body.items.some((i: { gun: string; role: string }) => i.gun === gun && i.role === 'targets'));
  const before = (await tuf(off, 'targets')).signed.version;
  const resigned = await m.call('post', `/repositories/${o}/resign`, { body: {} });
  expectStatus(resigned, 200);
  assert.deepEqual(resigned.body.results, [{ role: 'targets', status: 'published', version: before + 1, pendingId: null }]);

  // Tokens.
  const tok = await m.call('post', '/tokens', { body: { name: 'tour-reader', scopes: ['reader'] } });
  expectStatus(tok, 201);
  expectStatus(await m.call('get', '/whoami', { token: tok.body.token }), 200);
  const tokens = await m.call('get', '/tokens');
  expectStatus(tokens, 200);
  assert.ok(tokens.body.tokens.some((t: { id: string }) => t.id === tok.body.info.id));
  expectStatus(await m.call('delete', `/tokens/${tok.body.info.id}`), 200);
  expectStatus(await m.call('get', '/whoami', { token: tok.body.token }), 401);

  // Audit.
  const audit = await m.call('get', `/audit?gun=${g}`);
  expectStatus(audit, 200);
  assert.ok(audit.body.entries.length > 10);
  const verify = await m.call('get', '/audit/verify');
  expectStatus(verify, 200);
  assert.equal(verify.body.ok, true);

  // Proxy refusals (test/management/dashboard.test.ts records some through a real proxy).
  const denials = await m.call('get', '/proxy/denials');
  expectStatus(denials, 200);
  assert.equal(denials.body.enabled, false, 'no registry proxy runs in this app');

  // Backup (test/management/backup.test.ts restores one).
  expectStatus(await m.call('get', '/backup'), 200);

  // Trust reset (test/proxy/pins.test.ts covers what it does to the proxy).
  const reset = await m.call('post', `/repositories/${g}/trust-reset`);
  expectStatus(reset, 200);
  assert.equal(reset.body.gun, gun);
  assert.equal(reset.body.pinned.rootVersion, (await tuf(gun, 'root')).signed.version);

  // Delete, keys too.
  const gone = await m.call('delete', `/repositories/${g}?keys=delete`);
  expectStatus(gone, 200);
  assert.ok(gone.body.deletedKeyIds.length >= 4);
  assert.deepEqual(await m.tg.app.keys.list({ gun }), []);
  expectStatus(await m.call('get', `/repositories/${g}`), 404);
});

test('a signer given as an X.509 certificate: the delegation lists the certificate, and signatures by its key publish', async () => {
  const { createCertificateForKey } = await import('../../src/core/crypto/x509.js');
  const { keyId } = await import('../../src/core/crypto/keys.js');
  const { generateKeyPairSync } = await import('node:crypto');
  const gun = newGun('cert');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const cert = await createCertificateForKey({ commonName: 'dana', privateKey });
  const added = await m.call('post', `/repositories/${g}/signers`, { body: { name: 'dana', publicKeys: [cert.pem] } });
  expectStatus(added, 200);
  assert.deepEqual(added.body.keyIds, [keyId(cert.key)]);
  const targets = await tuf(gun, 'targets');
  const keys = (targets.signed.delegations as { keys: Record<string, { keytype: string }> }).keys;
  assert.equal(keys[keyId(cert.key)]!.keytype, 'ecdsa-x509');
  const p = await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: digest('f'), size: 8, role: 'targets/dana' } });
  expectStatus(p, 202);
  const part = p.body.pending.parts[0];
  const done = await m.call('post', `/pending/${p.body.pending.id}/signatures`, {
    body: { signatures: [{ keyid: keyId(cert.key), sig: signAs(privateKey, part.canonical) }] },
  });
  expectStatus(done, 200);
  assert.equal(done.body.status, 'published');
  const { notaryCli, parseNotaryList } = await import('../helpers/notary-cli.js');
  const cli = await notaryCli({ server: m.tg.url, token: m.admin });
  try {
    assert.deepEqual(
      parseNotaryList((await cli.runOk(['list', gun])).stdout).map((r) => `${r.name} ${r.role}`),
      ['v1 targets/dana'],
    );
  } finally {
    await cli.cleanup();
  }
});

test('every documented operation was exercised with a successful, schema-valid response', () => {
  const c = checker();
  const missing = managementOps()
    .filter((o) => ![...c.seen].some((s) => s.startsWith(`${o.method} ${o.template} 2`)))
    .map((o) => `${o.method} ${o.template}`);
  assert.deepEqual(missing, []);
});

test('tags named like Object.prototype members ("__proto__", "constructor") are added, listed and removed like any other', async () => {
  const gun = newGun('proto');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  expectStatus(await m.call('post', `/repositories/${g}/tags`, { body: { tag: '__proto__', digest: digest('a'), size: 10 } }), 200);
  expectStatus(await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'constructor', digest: digest('b'), size: 20 } }), 200);
  const targets = (await tuf(gun, 'targets')).signed.targets as Record<string, { length: number }>;
  assert.deepEqual(Object.keys(targets), ['__proto__', 'constructor']);
  assert.equal(targets['__proto__']!.length, 10);
  const inspect = await m.call('get', `/repositories/${g}`);
  assert.deepEqual(
    inspect.body.signedTags.map((t: { tag: string; digest: string }) => [t.tag, t.digest]),
    [
      ['__proto__', digest('a')],
      ['constructor', digest('b')],
    ],
  );
  expectError(await m.call('delete', `/repositories/${g}/tags/toString`), 404, 'NOT_FOUND');
  expectStatus(await m.call('delete', `/repositories/${g}/tags/__proto__`), 200);
  assert.deepEqual(Object.keys((await tuf(gun, 'targets')).signed.targets as object), ['constructor']);
});
