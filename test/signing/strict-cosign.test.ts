// Every cosign-format signature trustgate writes, read back from a real docker-registry and checked
// by the independent strict verifier (test/helpers/strict-cosign.ts, containers/image's rules):
// the signing API (`cosign: true`), the `trustgate sign --cosign` CLI, and sign-on-push through the
// proxy under `signatures: both`. The payload is cosign's, byte for byte: `docker-reference` is the
// bare GUN, so containers/image accepts it under matchRepository (as containers-policy.json(5)
// says of cosign's signatures) and refuses it under its default, matchRepoDigestOrExact.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { readAttachment, readManifest, strictVerify } from '../helpers/strict-cosign.js';
import { cli } from '../cli/support.js';
import { bearer, initRepo, startSigningServer, type SigningServer } from './support.js';

let reg: RegistryService;
let s: SigningServer;
let px: StartedProxy;
let host: string;
let work: string;

before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('strict-cosign');
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, 'version: 1\nrepositories:\n  - pattern: "push/**"\n    signatures: both\n    signOnPush: targets\n');
  s = await startSigningServer({ upstream: reg.url, env: { TRUSTGATE_POLICY: policy, TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true' } });
  px = await startProxy(s.tg.app, { cosign: s.tg.app.signing.cosignHook! }, { host: '127.0.0.1', port: 0 });
  host = px.url.replace(/^https?:\/\//, '');
});
after(async () => {
  await px?.close();
  await s?.stop();
  await reg?.stop();
  await removeTempDir(work);
});

let n = 0;
async function image(repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(join(work, `img-${++n}`), { tag, annotations: { n: String(n) } });
  await skopeoCopy(img.ref, `docker://${reg.host}/${repo}:${tag}`);
  return img;
}

async function publicKey(gun: string): Promise<string> {
  const res = await s.agent.get('/api/v1/signing/public-key').query({ gun }).set(bearer(s.adminToken)).set('Accept', 'application/json');
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body as { pem: string }).pem;
}

/** Reads the `.sig` of `digest` from the registry and runs the strict verifier over its one signature. */
async function strictlyVerified(repo: string, gun: string, digest: string, tag: string): Promise<void> {
  const layers = await readAttachment(reg.url, repo, digest);
  assert.equal(layers.length, 1);
  const { payload, signature } = layers[0]!;
  assert.equal(
    payload.toString(),
    `{"critical":{"identity":{"docker-reference":"${gun}"},"image":{"docker-manifest-digest":"${digest}"},` +
      '"type":"cosign container image signature"},"optional":null}',
  );
  const input = { publicKey: await publicKey(gun), payload, signature, manifest: await readManifest(reg.url, repo, digest) };
  for (const intended of [`${gun}:${tag}`, `${gun}@${digest}`]) {
    const claims = strictVerify({ ...input, intended, identity: { type: 'matchRepository' } });
    assert.deepEqual(claims, { digest, dockerReference: gun });
    // containers/image's default wants a tag or digest in the signature: cosign's bare repository is refused.
    assert.throws(() => strictVerify({ ...input, intended }), /not accepted/);
  }
  assert.throws(() => strictVerify({ ...input, intended: `${gun}-other:${tag}`, identity: { type: 'matchRepository' } }), /not accepted/);
}

test('the signing API writes a signature the strict verifier accepts', async () => {
  const repo = 'api/app';
  const gun = `registry.example.com/${repo}`;
  const img = await image(repo, 'v1');
  await initRepo(s, gun);
  const res = await s.agent
    .post('/api/v1/signing/sign')
    .set(bearer(s.adminToken))
    .send({ gun, tag: 'v1', digest: img.manifest.digest, cosign: true });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  await strictlyVerified(repo, gun, img.manifest.digest, 'v1');
});

test('`trustgate sign --cosign` writes a signature the strict verifier accepts', async () => {
  const repo = 'cli/app';
  const gun = `registry.example.com/${repo}`;
  const img = await image(repo, 'v2');
  await initRepo(s, gun);
  const r = await cli(s.tg.url, s.adminToken).run(['sign', `${gun}@${img.manifest.digest}`, '--tag', 'v2', '--cosign']);
  assert.equal(r.code, 0, r.stderr);
  await strictlyVerified(repo, gun, img.manifest.digest, 'v2');
});

test('sign-on-push through the proxy writes a signature the strict verifier accepts', async () => {
  const repo = 'push/app';
  const gun = `${host}/${repo}`;
  const img = await makeImageLayout(join(work, 'pushed'), { tag: 'v3' });
  await skopeoCopy(img.ref, `docker://${host}/${repo}:v3`, ['--dest-creds', `admin:${s.adminToken}`]);
  await strictlyVerified(repo, gun, img.manifest.digest, 'v3');
  // And the proxy itself admits it (TUF and cosign over the same digest).
  const pulled = await fetch(`${px.url}/v2/${repo}/manifests/v3`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(pulled.status, 200, await pulled.text());
});
