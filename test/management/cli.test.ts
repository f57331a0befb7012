// Round trips with the real clients (/usr/bin/notary, the docker CLI's trust commands) over TLS:
// keys exported by the API are taken by `notary key import` / `docker trust key load` and work
// there; keys made by `notary key generate` / `docker trust key generate` are imported through
// the API and the server signs with them so that fresh clients accept the result.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { keyId } from '../../src/core/crypto/keys.js';
import { parsePublicKeyPem } from '../../src/management/material.js';
import { NOTARY_TEST_PASSPHRASE, notaryCli, parseNotaryList, type NotaryCli } from '../helpers/notary-cli.js';
import { makeTempDir, removeTempDir, runCommand, type RunResult } from '../helpers/services.js';
import { makeTestCerts, type TestCerts } from '../helpers/tls.js';
import { enc, expectStatus, startMgmt, type Mgmt } from './support.js';

let m: Mgmt;
let certs: TestCerts;
let work: string;
let hostPort: string;
const clis: NotaryCli[] = [];
let n = 0;

before(async () => {
  certs = await makeTestCerts();
  m = await startMgmt({ tls: { cert: certs.cert, key: certs.key, ca: certs.caCert } });
  work = await makeTempDir('mgmt-cli');
  hostPort = `127.0.0.1:${m.tg.port}`;
});
after(async () => {
  for (const c of clis) await c.cleanup();
  await m.stop();
  await removeTempDir(work);
  await certs.cleanup();
});

const newGun = (name: string) => `${hostPort}/mgmt/${name}-${++n}`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function notary(): Promise<NotaryCli> {
  const c = await notaryCli({ server: m.tg.url, token: m.admin, tlsCaCert: certs.caCert });
  clis.push(c);
  return c;
}

async function tuf<T>(gun: string, role: string): Promise<{ signed: T; signatures: Array<{ keyid: string }> }> {
  const r = await request(m.tg.url)
    .get(`/v2/${gun}/_trust/tuf/${role}.json`)
    .ca(await fsp.readFile(certs.caCert));
  assert.equal(r.status, 200);
  return JSON.parse(r.text) as { signed: T; signatures: Array<{ keyid: string }> };
}

type RootRoles = { roles: Record<string, { keyids: string[] }>; version: number };

/** The docker CLI with its own HOME/DOCKER_CONFIG, trusting the test CA for trustgate, and no engine. */
async function dockerEnv() {
  const home = await fsp.mkdtemp(path.join(work, 'docker-'));
  const config = path.join(home, '.docker');
  await fsp.mkdir(path.join(config, 'tls', hostPort), { recursive: true });
  await fsp.copyFile(certs.caCert, path.join(config, 'tls', hostPort, 'ca.crt'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    DOCKER_CONFIG: config,
    DOCKER_HOST: `unix://${path.join(home, 'no-engine.sock')}`,
    DOCKER_CONTENT_TRUST_SERVER: m.tg.url,
    DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE: NOTARY_TEST_PASSPHRASE,
    DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE: NOTARY_TEST_PASSPHRASE,
    DOCKER_CLI_HINTS: 'false',
  };
  return {
    home,
    config,
    run: (args: string[], input?: string): Promise<RunResult> =>
      runCommand('docker', args, { env, timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) }),
  };
}

const ok = (r: RunResult, what: string) => assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);

test('a targets key exported by the API is taken by `notary key import`, and notary signs with it', async () => {
  const gun = newGun('export');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const targetsId = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
  const exp = await m.call('post', `/repositories/${enc(gun)}/keys/${targetsId}/export`, { body: { passphrase: NOTARY_TEST_PASSPHRASE } });
  expectStatus(exp, 200);
  const file = path.join(work, 'targets-export.pem');
  await fsp.writeFile(file, exp.body.pem, { mode: 0o600 });
  const cli = await notary();
  await cli.runOk(['key', 'import', file]);
  const keys = (await cli.runOk(['key', 'list'])).stdout;
  assert.match(keys, new RegExp(`targets\\s+\\S+\\s+${targetsId}`), keys);
  assert.match(await fsp.readFile(path.join(cli.trustDir, 'private', `${targetsId}.key`), 'utf8'), new RegExp(`gun: ${gun}\n`));
  // notary signs a new target with the imported key; the server accepts it and the API sees it.
  await cli.runOk(['addhash', gun, 'from-notary', '123', '--sha256', sha('m1'), '-p']);
  const inspect = await m.call('get', `/repositories/${enc(gun)}`);
  assert.deepEqual(inspect.body.signedTags, [
    { tag: 'from-notary', digest: `sha256:${sha('m1')}`, size: 123, roles: ['targets'], signers: ['Repo Admin'] },
  ]);
  assert.deepEqual(
    (await tuf(gun, 'targets')).signatures.map((s) => s.keyid),
    [targetsId],
  );
});

test('an offline root key returned at creation is taken by notary, which rotates the root with it', async () => {
  const gun = newGun('offline');
  const created = await m.call('post', '/repositories', { body: { gun, rootKey: 'offline', passphrase: NOTARY_TEST_PASSPHRASE } });
  expectStatus(created, 201);
  const file = path.join(work, 'root-export.pem');
  await fsp.writeFile(file, created.body.rootKey.pem, { mode: 0o600 });
  const cli = await notary();
  await cli.runOk(['key', 'import', file]);
  const keys = (await cli.runOk(['key', 'list'])).stdout;
  assert.match(keys, new RegExp(`root\\s+${created.body.rootKey.canonicalId}`), keys);
  await cli.runOk(['key', 'rotate', gun, 'root'], { input: 'yes\n' });
  const root = (await tuf<RootRoles>(gun, 'root')).signed;
  assert.equal(root.version, 2);
  assert.notDeepEqual(root.roles.root!.keyids, [created.body.rootKey.id]);
  const inspect = await m.call('get', `/repositories/${enc(gun)}`);
  assert.deepEqual(inspect.body.administrativeKeys.root, root.roles.root!.keyids);
  assert.equal(inspect.body.rootKey, 'offline');
});

test('a key made by `notary key generate` is imported through the API, becomes the targets key, and fresh clients accept what the server signs with it', async () => {
  const gun = newGun('generated');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const cli = await notary();
  const out = path.join(work, 'gen');
  await cli.runOk(['key', 'generate', 'ecdsa', '--role', 'targets', '-o', out]);
  const pem = await fsp.readFile(`${out}-key.pem`, 'utf8');
  const pubPem = await fsp.readFile(`${out}.pem`, 'utf8');
  const genId = keyId(parsePublicKeyPem(pubPem, new Date()));
  const imp = await m.call('post', `/repositories/${enc(gun)}/keys/import`, {
    body: { pem, passphrase: NOTARY_TEST_PASSPHRASE, role: 'targets', activate: true },
  });
  expectStatus(imp, 200);
  assert.equal(imp.body.key.id, genId);
  assert.deepEqual((await tuf<RootRoles>(gun, 'root')).signed.roles.targets!.keyids, [genId]);
  expectStatus(
    await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'v1', digest: `sha256:${sha('m2')}`, size: 77 } }),
    200,
  );
  assert.deepEqual(
    (await tuf(gun, 'targets')).signatures.map((s) => s.keyid),
    [genId],
  );
  const fresh = await notary();
  assert.deepEqual(parseNotaryList((await fresh.runOk(['list', gun])).stdout), [
    { name: 'v1', digest: sha('m2'), size: 77, role: 'targets' },
  ]);
});

test('docker trust: a key from `docker trust key generate` becomes a signer through the API; docker trust inspect agrees with the API', async () => {
  const gun = newGun('docker');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const d = await dockerEnv();
  ok(
    await d.run(['trust', 'key', 'generate', 'alice', '--dir', d.home], `${NOTARY_TEST_PASSPHRASE}\n${NOTARY_TEST_PASSPHRASE}\n`),
    'docker trust key generate',
  );
  const pub = await fsp.readFile(path.join(d.home, 'alice.pub'), 'utf8');
  const aliceId = keyId(parsePublicKeyPem(pub, new Date()));
  const added = await m.call('post', `/repositories/${enc(gun)}/signers`, { body: { name: 'alice', publicKeys: [pub] } });
  expectStatus(added, 200);
  assert.deepEqual(added.body.keyIds, [aliceId]);
  // The private key docker keeps (role: alice), imported for targets/alice.
  const priv = await fsp.readFile(path.join(d.config, 'trust', 'private', `${aliceId}.key`), 'utf8');
  assert.match(priv, /role: alice/);
  const imp = await m.call('post', `/repositories/${enc(gun)}/keys/import`, {
    body: { pem: priv, passphrase: NOTARY_TEST_PASSPHRASE, role: 'targets/alice' },
  });
  expectStatus(imp, 201);
  assert.equal(imp.body.key.held, 'keystore');
  // As `docker trust sign` does: the tag goes into every delegation the key can sign, releases included.
  for (const role of ['targets/releases', 'targets/alice']) {
    expectStatus(
      await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'v1', digest: `sha256:${sha('m3')}`, size: 55, role } }),
      200,
    );
  }
  expectStatus(
    await m.call('post', `/repositories/${enc(gun)}/tags`, {
      body: { tag: 'unreleased', digest: `sha256:${sha('m5')}`, size: 5, role: 'targets/alice' },
    }),
    200,
  );

  const r = await d.run(['trust', 'inspect', gun]);
  ok(r, 'docker trust inspect');
  const [docker] = JSON.parse(r.stdout) as Array<{
    SignedTags: Array<{ SignedTag: string; Digest: string; Signers: string[] }>;
    Signers: Array<{ Name: string; Keys: Array<{ ID: string }> }>;
    AdministrativeKeys: Array<{ Name: string; Keys: Array<{ ID: string }> }>;
  }>;
  const api = (await m.call('get', `/repositories/${enc(gun)}`)).body;
  assert.deepEqual(
    docker!.SignedTags.map((t) => [t.SignedTag, `sha256:${t.Digest}`, t.Signers]),
    api.signedTags.map((t: { tag: string; digest: string; signers: string[] }) => [t.tag, t.digest, t.signers]),
  );
  assert.deepEqual(
    api.signedTags.map((t: { tag: string; signers: string[]; roles: string[] }) => [t.tag, t.signers, [...t.roles].sort()]),
    [['v1', ['alice'], ['targets/alice', 'targets/releases']]],
  );
  assert.deepEqual(
    api.allTags.map((t: { tag: string }) => t.tag),
    ['unreleased', 'v1'],
  );
  assert.deepEqual(
    docker!.Signers.map((s) => [s.Name, s.Keys.map((k) => k.ID)]),
    api.signers.map((s: { name: string; keyIds: string[] }) => [s.name, s.keyIds]),
  );
  const admin = Object.fromEntries(docker!.AdministrativeKeys.map((a) => [a.Name, a.Keys.map((k) => k.ID)]));
  assert.deepEqual(admin.Repository, api.administrativeKeys.repository);
  assert.equal(admin.Root!.length, 1);
});

test('a delegation key exported by the API is loaded by `docker trust key load` and by `notary key import`', async () => {
  const gun = newGun('load');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const sig = await m.call('post', `/repositories/${enc(gun)}/signers`, { body: { name: 'ci', generate: true } });
  expectStatus(sig, 200);
  const id = sig.body.keyIds[0] as string;
  const exp = await m.call('post', `/repositories/${enc(gun)}/keys/${id}/export`, { body: { passphrase: NOTARY_TEST_PASSPHRASE } });
  expectStatus(exp, 200);
  assert.match(exp.body.pem, /role: targets\/ci/);
  const file = path.join(work, 'ci.pem');
  await fsp.writeFile(file, exp.body.pem, { mode: 0o600 });
  const d = await dockerEnv();
  ok(await d.run(['trust', 'key', 'load', file, '--name', 'ci']), 'docker trust key load');
  const loaded = await fsp.readdir(path.join(d.config, 'trust', 'private'));
  assert.ok(loaded.includes(`${id}.key`), loaded.join(','));
  const cli = await notary();
  await cli.runOk(['key', 'import', file]);
  assert.match((await cli.runOk(['key', 'list'])).stdout, new RegExp(id));
  // notary signs into targets/ci with it.
  await cli.runOk(['addhash', gun, 'ci-1', '9', '--sha256', sha('m4'), '--roles', 'targets/ci', '-p']);
  const inspect = await m.call('get', `/repositories/${enc(gun)}`);
  assert.deepEqual(
    inspect.body.allTags.map((t: { tag: string; roles: string[] }) => [t.tag, t.roles]),
    [['ci-1', ['targets/ci']]],
  );
});

test('taking over a repository made by `notary init`: its keys are imported, the snapshot key moves to the server, then the API signs', async () => {
  const gun = newGun('takeover');
  const cli = await notary();
  await cli.runOk(['init', gun, '-p']);
  await cli.runOk(['addhash', gun, 'old', '3', '--sha256', sha('m6'), '-p']);
  // The server holds no targets key yet: a change waits for the key holder's signature.
  const waiting = await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'new', digest: `sha256:${sha('m7')}`, size: 4 } });
  expectStatus(waiting, 202);
  expectStatus(await m.call('delete', `/pending/${waiting.body.pending.id}`), 200);
  // Import the root and targets keys notary made (key files under private/, encrypted, with role headers).
  const dir = path.join(cli.trustDir, 'private');
  for (const f of await fsp.readdir(dir)) {
    const pem = await fsp.readFile(path.join(dir, f), 'utf8');
    const role = /role: (\w+)/.exec(pem)![1]!;
    if (role !== 'root' && role !== 'targets') continue;
    const r = await m.call('post', `/repositories/${enc(gun)}/keys/import`, { body: { pem, passphrase: NOTARY_TEST_PASSPHRASE, role } });
    expectStatus(r, 201);
    assert.equal(r.body.key.inMetadata, true, `${role} key matches the published ${role} key`);
  }
  // With a client-held snapshot key the server cannot publish on its own, and says what to do.
  const blocked = await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'new', digest: `sha256:${sha('m7')}`, size: 4 } });
  assert.equal(blocked.status, 409);
  assert.match(blocked.body.error.message, /snapshot key/);
  expectStatus(await m.call('post', `/repositories/${enc(gun)}/keys/snapshot/rotate`, { body: {} }), 200);
  expectStatus(
    await m.call('post', `/repositories/${enc(gun)}/tags`, { body: { tag: 'new', digest: `sha256:${sha('m7')}`, size: 4 } }),
    200,
  );
  const fresh = await notary();
  assert.deepEqual(
    parseNotaryList((await fresh.runOk(['list', gun])).stdout)
      .map((r) => r.name)
      .sort(),
    ['new', 'old'],
  );
  const inspect = await m.call('get', `/repositories/${enc(gun)}`);
  assert.equal(inspect.body.rootKey, 'keystore');
});
