// The proxy's own credentials towards an upstream that uses the registry token flow: a real
// docker-registry with `auth: token`, whose token service is trustgate's built-in issuer. The
// proxy answers the registry's Bearer challenge with a token fetched with its Basic credentials.
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { hashPassword } from '../../src/auth/jwt-issuer.js';
import { makeImageLayout, MEDIA_TYPES, runSkopeo, skopeoCopy } from '../helpers/oci.js';
import { freePort, waitForHttp } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, startProcess, type ManagedProcess, type RegistryService } from '../helpers/services.js';
import { makeTestCerts, type TestCerts } from '../helpers/tls.js';
import { startTrustgate, tokenAuthEnv, type RunningTrustgate } from '../helpers/trustgate.js';
import { denied, get, startStack } from './support.js';
import { digestOf } from '../helpers/util.js';

const SERVICE = 'upstream-registry';
const ISSUER = 'trustgate-upstream-issuer';
const PASSWORD = 'proxy-pw-Hq27!';

let certs: TestCerts;
let dir: string;
let issuer: RunningTrustgate;
let registry: ManagedProcess;
let reg: RegistryService;

before(async () => {
  certs = await makeTestCerts();
  dir = await makeTempDir('upstream-auth');
  await fsp.writeFile(path.join(dir, 'users'), `proxy:${await hashPassword(PASSWORD)}:repository:**:pull,push registry:catalog:*\n`, {
    mode: 0o600,
  });
  // The token service: a trustgate with the built-in registry token issuer.
  const issuerPort = await freePort();
  issuer = await startTrustgate({
    port: issuerPort,
    env: tokenAuthEnv({
      certs,
      users: path.join(dir, 'users'),
      realm: `http://127.0.0.1:${issuerPort}/api/v1/token`,
      service: SERVICE,
      issuer: ISSUER,
    }),
  });
  const realm = `${issuer.url}/api/v1/token`;
  // The upstream: docker-registry requiring tokens from that service.
  const port = await freePort();
  const storage = path.join(dir, 'storage');
  await fsp.mkdir(storage);
  const config = path.join(dir, 'registry.yml');
  await fsp.writeFile(
    config,
    [
      'version: 0.1',
      'log: {level: info, accesslog: {disabled: true}}',
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(storage)}}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}`,
      `http: {addr: ${JSON.stringify(`127.0.0.1:${port}`)}, secret: upstream-auth-secret}`,
      `auth: {token: {realm: ${JSON.stringify(realm)}, service: ${SERVICE}, issuer: ${ISSUER}, rootcertbundle: ${JSON.stringify(certs.caCert)}}}`,
      'health: {storagedriver: {enabled: false}}',
      '',
    ].join('\n'),
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
  registry = startProcess('docker-registry', ['serve', config], { env, logFile: path.join(dir, 'registry.log') });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/v2/`, 20_000, { check: () => registry.assertAlive(), okStatus: (s) => s === 401 });
  reg = { url, host: `127.0.0.1:${port}`, port, dir, logFile: registry.logFile, stop: () => registry.stop() };
});
after(async () => {
  await registry?.stop();
  await issuer?.stop();
  await certs?.cleanup();
  await removeTempDir(dir);
});

test('the proxy answers the upstream Bearer challenge with its own credentials', async () => {
  const direct = await get(`${reg.url}/v2/team/app/tags/list`);
  assert.equal(direct.status, 401, 'the upstream demands a token');
  assert.match(direct.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
  const s = await startStack({ reg, env: { TRUSTGATE_UPSTREAM_USERNAME: 'proxy', TRUSTGATE_UPSTREAM_PASSWORD: PASSWORD } });
  try {
    const img = await makeImageLayout(path.join(dir, 'img'), { tag: 'v1', layerBytes: 100_000 });
    await skopeoCopy(img.ref, `docker://${s.host}/team/app:v1`, ['--dest-creds', s.creds]);
    const m = await get(`${s.px.url}/v2/team/app/manifests/v1`);
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(digestOf(m.body), img.manifest.digest);
    const blob = await get(`${s.px.url}/v2/team/app/blobs/${img.layers[0]!.digest}`);
    assert.equal(digestOf(blob.body), img.layers[0]!.digest);
    const tags = await get(`${s.px.url}/v2/team/app/tags/list`);
    assert.deepEqual(tags.json().tags, ['v1']);
    const catalog = await get(`${s.px.url}/v2/_catalog`, { headers: s.auth });
    assert.deepEqual(catalog.json().repositories, ['team/app']);
    denied(await get(`${s.px.url}/v2/team/app/manifests/v2`));
  } finally {
    await s.stop();
  }
});

test('V14: upstream credentials are never used for an anonymous client', async () => {
  const s = await startStack({
    reg,
    env: { TRUSTGATE_UPSTREAM_USERNAME: 'proxy', TRUSTGATE_UPSTREAM_PASSWORD: PASSWORD, TRUSTGATE_PROXY_ANONYMOUS_PULL: 'false' },
  });
  try {
    const img = await makeImageLayout(path.join(dir, 'anon'), { tag: 'v1', layerBytes: 10_000 });
    const r = await runSkopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', img.ref, `docker://${s.host}/anon/app:v1`]);
    assert.notEqual(r.code, 0, 'an anonymous push is refused');
    for (const [method, url] of [
      ['POST', `${s.px.url}/v2/anon/app/blobs/uploads/`],
      ['PUT', `${s.px.url}/v2/anon/app/manifests/v1`],
      ['DELETE', `${s.px.url}/v2/team/app/manifests/v1`],
    ] as const) {
      const w = await get(url, {
        method,
        ...(method === 'PUT' ? { body: img.manifest.bytes, headers: { 'content-type': MEDIA_TYPES.ociManifest } } : {}),
      });
      assert.equal(w.status, 401, `${method} ${url}: ${w.body.toString()}`);
    }
    // Asked with the proxy's own credentials (through the proxy, as an admin), the upstream has nothing.
    const tags = await get(`${s.px.url}/v2/anon/app/tags/list`, { headers: s.auth });
    assert.equal(tags.status, 404, tags.body.toString());
    assert.equal(tags.json().errors[0].code, 'NAME_UNKNOWN');
    const blob = await get(`${s.px.url}/v2/anon/app/blobs/${img.layers[0]!.digest}`, { method: 'HEAD', headers: s.auth });
    assert.equal(blob.status, 404);
    assert.equal(await s.tg.app.trust.current(s.gun('anon/app'), 'root'), undefined);
  } finally {
    await s.stop();
  }
});

test('wrong upstream credentials fail closed with a clear error', async () => {
  const s = await startStack({ reg, env: { TRUSTGATE_UPSTREAM_USERNAME: 'proxy', TRUSTGATE_UPSTREAM_PASSWORD: 'wrong' } });
  try {
    const r = await get(`${s.px.url}/v2/team/app/tags/list`);
    assert.equal(r.status, 503, r.body.toString());
    const e = r.json().errors[0];
    assert.equal(e.code, 'UNAVAILABLE');
    assert.match(e.message, /token service .* answered 401|refused trustgate's credentials/);
  } finally {
    await s.stop();
  }
});
