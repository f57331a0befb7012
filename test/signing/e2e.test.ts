// The CI scenario end to end, with real parts only: a docker-registry upstream, trustgate with
// its verifying proxy in front of it, skopeo, and the `trustgate` CLI as a child process.
// An admin sets the repository up once (repo init, a CI signer, a CI token); the CI job builds
// an OCI layout, pushes it with skopeo straight to the upstream, and runs `trustgate sign`.
// Then a pull through the proxy gets the signed image, and an unsigned sibling is denied. A
// second part runs the proxy's cosign policy: a cosign-format signature made by trustgate with a
// key the trust data names lets a pull through; one made with any other key does not.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { writeCosignSignature } from '../../src/registry/signatures.js';
import { UpstreamRegistry } from '../../src/registry/artifacts.js';
import { Upstream } from '../../src/registry/client.js';
import { makeImageLayout, makeIndexLayout, runSkopeo, skopeoCopy, skopeoInspect } from '../helpers/oci.js';
import { runCommand } from '../helpers/services.js';
import { cliCommand } from '../cli/support.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryService } from '../helpers/services.js';
import { cli, type Cli } from '../cli/support.js';
import { startSigningServer, type SigningServer } from './support.js';

let reg: RegistryService;
let s: SigningServer;
let px: StartedProxy;
let proxyHost: string;
let work: string;
let admin: Cli;

before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('signing-e2e');
  const policy = join(work, 'policy.yaml');
  // Pulls need targets/releases (or targets); `cosign/**` also accepts cosign-format signatures.
  writeFileSync(
    policy,
    [
      'version: 1',
      'default:',
      '  mode: enforce',
      'repositories:',
      '  - pattern: "cosign/**"',
      '    require:',
      '      roles: [targets/releases]',
      '    cosign: true',
      '  - pattern: "both/**"',
      '    signatures: both',
      '  - pattern: "cosignonly/**"',
      '    signatures: cosign',
      '  - pattern: "pushboth/**"',
      '    signatures: both',
      '    signOnPush: targets',
      '',
    ].join('\n'),
  );
  s = await startSigningServer({
    upstream: reg.url,
    checkUpstream: true,
    env: { TRUSTGATE_POLICY: policy, TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true' },
  });
  px = await startProxy(s.tg.app, { cosign: s.tg.app.signing.cosignHook! }, { host: '127.0.0.1', port: 0 });
  proxyHost = px.url.replace(/^https?:\/\//, '');
  admin = cli(s.tg.url, s.adminToken);
});
after(async () => {
  await px?.close();
  await s?.stop();
  await reg?.stop();
  await removeTempDir(work);
});

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe('CI: build, push, sign, pull through the proxy', () => {
  test('the signed image pulls through the proxy; an unsigned sibling tag and an unsigned sibling repository are denied', async () => {
    const gun = `${proxyHost}/ci/app`;
    // Once, by an admin: trust for the repository, a CI signer (key held by trustgate), a CI token for it.
    ok(await admin.run(['repo', 'init', gun]), 'repo init');
    ok(await admin.run(['signer', 'add', gun, 'ci', '--generate']), 'signer add');
    const keys = JSON.parse(ok(await admin.run(['key', 'list', gun, '--json']), 'key list')).keys as Array<{ id: string; role: string }>;
    const ciKey = keys.find((k) => k.role === 'targets/ci')!.id;
    const ciToken = ok(
      await admin.run(['token', 'create', '--name', 'ci', '--scope', `signer:${gun}`, '--key-id', ciKey]),
      'token create',
    ).trim();
    const ci = cli(s.tg.url, ciToken);

    // The CI job: build an OCI layout, push it to the upstream with skopeo, sign it.
    const img = await makeImageLayout(join(work, 'build-1'), { tag: 'v1.2.3', layers: 2 });
    await skopeoCopy(img.ref, `docker://${reg.host}/ci/app:v1.2.3`);
    const digest = ok(
      await runSkopeo(['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${reg.host}/ci/app:v1.2.3`]),
      'skopeo inspect',
    ).trim();
    assert.equal(digest, img.manifest.digest);
    const signed = await ci.run(['sign', `${gun}@${digest}`, '--tag', 'v1.2.3', '--role', 'targets/releases']);
    ok(signed, 'trustgate sign');
    assert.match(signed.stdout, new RegExp(`${gun.replace(/[.]/g, '\\.')}:v1\\.2\\.3 -> ${digest} \\(${img.manifest.size} bytes\\)`));
    ok(await ci.run(['verify', `${gun}:v1.2.3`]), 'trustgate verify');

    // A pull through the proxy gets exactly the signed image.
    const out = join(work, 'pulled');
    await skopeoCopy(`docker://${proxyHost}/ci/app:v1.2.3`, `oci:${out}:v1.2.3`);
    const pulled = await skopeoInspect<{ Digest: string }>(`oci:${out}:v1.2.3`);
    assert.equal(pulled.Digest, digest);

    // An unsigned sibling: pushed to the upstream, never signed, denied by the proxy (and by verify: exit 3).
    const sib = await makeImageLayout(join(work, 'build-2'), { tag: 'v1.2.4' });
    await skopeoCopy(sib.ref, `docker://${reg.host}/ci/app:v1.2.4`);
    const deniedTag = await runSkopeo([
      'copy',
      '--src-tls-verify=false',
      `docker://${proxyHost}/ci/app:v1.2.4`,
      `oci:${join(work, 'nope')}:x`,
    ]);
    assert.notEqual(deniedTag.code, 0);
    assert.match(deniedTag.stderr, /denied|DENIED/);
    assert.equal((await ci.run(['verify', `${gun}:v1.2.4`])).code, 3);
    const deniedDigest = await fetch(`${px.url}/v2/ci/app/manifests/${sib.manifest.digest}`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(deniedDigest.status, 403);
    // A sibling repository without trust data.
    await skopeoCopy(sib.ref, `docker://${reg.host}/ci/other:v1`);
    const other = await runSkopeo(['copy', '--src-tls-verify=false', `docker://${proxyHost}/ci/other:v1`, `oci:${join(work, 'nope2')}:x`]);
    assert.notEqual(other.code, 0);

    // The CI token cannot sign what it has no key for (targets), nor another repository: exit 3.
    assert.equal((await ci.run(['sign', `${gun}@${sib.manifest.digest}`, '--tag', 'v1.2.4'])).code, 3);
    assert.equal((await ci.run(['sign', `${proxyHost}/ci/other@${sib.manifest.digest}`, '--tag', 'v1'])).code, 3);
    // After revoking, the proxy denies the tag again.
    ok(await admin.run(['revoke', `${gun}:v1.2.3`]), 'revoke');
    const afterRevoke = await fetch(`${px.url}/v2/ci/app/manifests/v1.2.3`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(afterRevoke.status, 403);
  });
});

describe('the CI step in docs/signing.md', () => {
  test('runs as written: skopeo pushes, trustgate signs and verifies, the proxy serves it', async () => {
    const gun = `${proxyHost}/docs/app`;
    ok(await admin.run(['repo', 'init', gun]), 'repo init');
    ok(await admin.run(['signer', 'add', gun, 'ci', '--generate']), 'signer add');
    const keys = JSON.parse(ok(await admin.run(['key', 'list', gun, '--json']), 'key list')).keys as Array<{ id: string; role: string }>;
    const ciToken = ok(
      await admin.run([
        'token',
        'create',
        '--name',
        'docs-ci',
        '--scope',
        `signer:${gun}`,
        '--key-id',
        keys.find((k) => k.role === 'targets/ci')!.id,
      ]),
      'token',
    ).trim();

    const doc = readFileSync(new URL('../../docs/signing.md', import.meta.url), 'utf8');
    const block = /<!-- ci-example:start -->\s*```sh\n([\s\S]*?)```\s*<!-- ci-example:end -->/.exec(doc);
    assert.ok(block, 'docs/signing.md has the CI example between its markers');
    const dir = join(work, 'docs-ci');
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(dir, 'sign.sh'), block[1]!);
    // PATH shims: `trustgate` is this checkout's CLI; `skopeo` gets the test's private policy and
    // a plain-HTTP registry (what a CI image's /etc/containers would say).
    const { cmd, args } = cliCommand();
    writeFileSync(join(bin, 'trustgate'), `#!/bin/sh\nexec ${[cmd, ...args].map((a) => `'${a}'`).join(' ')} "$@"\n`);
    const policy = join(dir, 'policy.json');
    writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    writeFileSync(
      join(bin, 'skopeo'),
      `#!/bin/sh\nsub="$1"; shift\nexec /usr/bin/skopeo --policy '${policy}' "$sub" --dest-tls-verify=false "$@"\n`,
    );
    chmodSync(join(bin, 'trustgate'), 0o755);
    chmodSync(join(bin, 'skopeo'), 0o755);
    const img = await makeImageLayout(join(dir, 'build', 'oci'), { tag: 'latest' });

    const r = await runCommand('bash', [join(dir, 'sign.sh')], {
      cwd: dir,
      timeoutMs: 120_000,
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        TRUSTGATE_URL: s.tg.url,
        TRUSTGATE_TOKEN: ciToken,
        REGISTRY: reg.host,
        TRUST_NAME: proxyHost,
        IMAGE: 'docs/app',
        TAG: 'build-42',
        LAYOUT: 'build/oci:latest',
      },
    });
    assert.equal(r.code, 0, `the documented CI step failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /docs\/app:build-42 is signed: sha256:/);
    assert.equal(readFileSync(join(dir, 'digest.txt'), 'utf8').trim(), img.manifest.digest);
    const pull = await fetch(`${px.url}/v2/docs/app/manifests/build-42`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(pull.status, 200);
    assert.equal(pull.headers.get('docker-content-digest'), img.manifest.digest);
    // Without a token the same step fails, and nothing is signed.
    const bad = await runCommand('bash', [join(dir, 'sign.sh')], {
      cwd: dir,
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        TRUSTGATE_URL: s.tg.url,
        TRUSTGATE_TOKEN: 'tgt_' + 'x'.repeat(43),
        REGISTRY: reg.host,
        TRUST_NAME: proxyHost,
        IMAGE: 'docs/app',
        TAG: 'build-43',
      },
    });
    assert.equal(bad.code, 3);
  });
});

describe("the proxy's cosign policy", () => {
  test('a trustgate cosign signature by a key the trust data names is accepted; a foreign key is not', async () => {
    const gun = `${proxyHost}/cosign/app`;
    ok(await admin.run(['repo', 'init', gun]), 'repo init');
    const a = await makeImageLayout(join(work, 'cos-a'), { tag: 'v1' });
    const b = await makeImageLayout(join(work, 'cos-b'), { tag: 'v2' });
    await skopeoCopy(a.ref, `docker://${reg.host}/cosign/app:v1`);
    await skopeoCopy(b.ref, `docker://${reg.host}/cosign/app:v2`);
    // Signed in `targets` (not the targets/releases the policy requires) plus a cosign signature.
    ok(await admin.run(['sign', `${gun}@${a.manifest.digest}`, '--tag', 'v1', '--cosign']), 'sign --cosign');
    const pullA = await fetch(`${px.url}/v2/cosign/app/manifests/v1`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(pullA.status, 200, await pullA.clone().text());
    assert.equal(pullA.headers.get('docker-content-digest'), a.manifest.digest);

    // Without the cosign signature the same TUF signing is not enough under this policy.
    const c = await makeImageLayout(join(work, 'cos-c'), { tag: 'v3' });
    await skopeoCopy(c.ref, `docker://${reg.host}/cosign/app:v3`);
    ok(await admin.run(['sign', `${gun}@${c.manifest.digest}`, '--tag', 'v3']), 'sign without --cosign');
    const pullC = await fetch(`${px.url}/v2/cosign/app/manifests/v3`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(pullC.status, 403);

    // v2 gets a cosign-format signature too, but made with a key trustgate's trust data does not name.
    const foreign = generateSigner('ecdsa');
    const up = new Upstream({ url: reg.url });
    try {
      await writeCosignSignature(new UpstreamRegistry(up), 'cosign/app', gun, b.manifest.digest, foreign);
    } finally {
      up.close();
    }
    const pullB = await fetch(`${px.url}/v2/cosign/app/manifests/v2`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(pullB.status, 403);
    const err = (await pullB.json()) as { errors: Array<{ detail: { reason: string } }> };
    assert.equal(err.errors[0]!.detail.reason, 'not-signed');
  });
});

describe('signatures: both and signatures: cosign', () => {
  const accept = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
  test('`both` needs TUF and a cosign signature over the same digest; either alone is denied', async () => {
    const gun = `${proxyHost}/both/app`;
    ok(await admin.run(['repo', 'init', gun]), 'repo init');
    const imgs = await Promise.all(['b1', 'b2', 'b3'].map((t) => makeImageLayout(join(work, `both-${t}`), { tag: t })));
    for (const [i, img] of imgs.entries()) await skopeoCopy(img.ref, `docker://${reg.host}/both/app:b${i + 1}`);
    ok(await admin.run(['sign', `${gun}@${imgs[0]!.manifest.digest}`, '--tag', 'b1', '--cosign']), 'sign b1 with cosign');
    ok(await admin.run(['sign', `${gun}@${imgs[1]!.manifest.digest}`, '--tag', 'b2']), 'sign b2 TUF only');
    // b3: a cosign signature by a key the trust data names, but no TUF target for the tag.
    ok(await admin.run(['sign', `${gun}@${imgs[2]!.manifest.digest}`, '--tag', 'other', '--cosign']), 'sign b3 digest under another tag');
    const b1 = await fetch(`${px.url}/v2/both/app/manifests/b1`, { headers: accept });
    assert.equal(b1.status, 200, await b1.clone().text());
    assert.equal(b1.headers.get('docker-content-digest'), imgs[0]!.manifest.digest);
    const b2 = await fetch(`${px.url}/v2/both/app/manifests/b2`, { headers: accept });
    assert.equal(b2.status, 403, 'TUF alone is not enough under `both`');
    const b3 = await fetch(`${px.url}/v2/both/app/manifests/b3`, { headers: accept });
    assert.equal(b3.status, 403, 'cosign alone is not enough under `both`');
  });

  test('`cosign` admits a cosign-signed image without looking at TUF targets, and refuses one without', async () => {
    const gun = `${proxyHost}/cosignonly/app`;
    ok(await admin.run(['repo', 'init', gun]), 'repo init');
    const a = await makeImageLayout(join(work, 'co-a'), { tag: 'c1' });
    const b = await makeImageLayout(join(work, 'co-b'), { tag: 'c2' });
    await skopeoCopy(a.ref, `docker://${reg.host}/cosignonly/app:c1`);
    await skopeoCopy(b.ref, `docker://${reg.host}/cosignonly/app:c2`);
    ok(await admin.run(['sign', `${gun}@${a.manifest.digest}`, '--tag', 'signed-elsewhere', '--cosign']), 'cosign-sign a');
    ok(await admin.run(['sign', `${gun}@${b.manifest.digest}`, '--tag', 'c2']), 'TUF-sign b only');
    const c1 = await fetch(`${px.url}/v2/cosignonly/app/manifests/c1`, { headers: accept });
    assert.equal(c1.status, 200, await c1.clone().text());
    assert.equal(c1.headers.get('docker-content-digest'), a.manifest.digest);
    const c2 = await fetch(`${px.url}/v2/cosignonly/app/manifests/c2`, { headers: accept });
    assert.equal(c2.status, 403, 'a TUF signature does not count under `cosign`');
  });
});

describe('writes through the change pipeline', () => {
  test('sign-on-push under `signatures: both` writes the cosign signature too, so the pushed image pulls', async () => {
    const img = await makeImageLayout(join(work, 'pushboth'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${proxyHost}/pushboth/app:v1`, ['--dest-creds', `admin:${s.adminToken}`]);
    const out = join(work, 'pushboth-pulled');
    await skopeoCopy(`docker://${proxyHost}/pushboth/app:v1`, `oci:${out}:v1`);
    assert.equal((await skopeoInspect<{ Digest: string }>(`oci:${out}:v1`)).Digest, img.manifest.digest);
    const sig = await fetch(`${reg.url}/v2/pushboth/app/manifests/${img.manifest.digest.replace(':', '-')}.sig`, {
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(sig.status, 200, 'the cosign signature is in the upstream');
  });

  test('sign-on-push under `signatures: both` with no ECDSA key of the role is refused before the upstream write', async () => {
    ok(await admin.run(['repo', 'init', `${proxyHost}/pushboth/rsa`, '--algorithm', 'rsa']), 'repo init (RSA)');
    const img = await makeImageLayout(join(work, 'pushboth-rsa'), { tag: 'v1' });
    const r = await runSkopeo([
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `admin:${s.adminToken}`,
      img.ref,
      `docker://${proxyHost}/pushboth/rsa:v1`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ECDSA/);
    assert.equal((await fetch(`${reg.url}/v2/pushboth/rsa/manifests/v1`, { method: 'HEAD' })).status, 404);
  });

  test('promote --to-repo copies the image into the target repository before signing it there', async () => {
    const from = `${proxyHost}/promo/src`;
    const to = `${proxyHost}/promo/dst`;
    ok(await admin.run(['repo', 'init', from]), 'repo init source');
    ok(await admin.run(['repo', 'init', to]), 'repo init target');
    const img = await makeImageLayout(join(work, 'promo'), { tag: 'rc1', layers: 2 });
    await skopeoCopy(img.ref, `docker://${reg.host}/promo/src:rc1`);
    ok(await admin.run(['sign', `${from}@${img.manifest.digest}`, '--tag', 'rc1']), 'sign source');
    assert.equal((await fetch(`${reg.url}/v2/promo/dst/manifests/${img.manifest.digest}`, { method: 'HEAD' })).status, 404);
    ok(await admin.run(['promote', `${from}:rc1`, '--to-role', 'targets', '--to-tag', '1.0', '--to-repo', to]), 'promote --to-repo');
    const out = join(work, 'promo-pulled');
    await skopeoCopy(`docker://${proxyHost}/promo/dst:1.0`, `oci:${out}:1.0`);
    assert.equal((await skopeoInspect<{ Digest: string }>(`oci:${out}:1.0`)).Digest, img.manifest.digest);
  });

  test('promote --to-repo of an index copies its child manifests too', async () => {
    const from = `${proxyHost}/promo/multi`;
    const to = `${proxyHost}/promo/multi-dst`;
    ok(await admin.run(['repo', 'init', from]), 'repo init source');
    ok(await admin.run(['repo', 'init', to]), 'repo init target');
    const idx = await makeIndexLayout(join(work, 'promo-index'), undefined, { tag: 'm1' });
    await skopeoCopy(idx.ref, `docker://${reg.host}/promo/multi:m1`);
    ok(await admin.run(['sign', `${from}@${idx.index.digest}`, '--tag', 'm1']), 'sign source index');
    ok(await admin.run(['promote', `${from}:m1`, '--to-role', 'targets', '--to-repo', to]), 'promote --to-repo');
    for (const m of idx.images) {
      const r = await fetch(`${reg.url}/v2/promo/multi-dst/manifests/${m.manifest.digest}`, {
        method: 'HEAD',
        headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(r.status, 200, `child ${m.manifest.digest} was copied`);
    }
    const pull = await fetch(`${px.url}/v2/promo/multi-dst/manifests/m1`, {
      headers: { Accept: 'application/vnd.oci.image.index.v1+json' },
    });
    assert.equal(pull.status, 200, await pull.clone().text());
    assert.equal(pull.headers.get('docker-content-digest'), idx.index.digest);
  });
});
