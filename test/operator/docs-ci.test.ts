// The operator's path through the docs, verbatim: `npm start` with an upstream (docs/proxy.md),
// the first push through the proxy with the admin token (which initialises trust, and makes
// targets/releases as docker trust does), then docs/signing.md's CI step, unchanged, signing into
// targets/releases with the real CLI against a real registry.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cli, cliCommand } from '../cli/support.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand, startRegistry, type RegistryService } from '../helpers/services.js';
import { startTrustgateProcess, type TrustgateProcess } from '../helpers/trustgate.js';

let reg: RegistryService;
let tg: TrustgateProcess;
let work: string;
let proxy: string;

before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('operator-docs-ci');
  proxy = `127.0.0.1:${await freePort()}`;
  // docs/proxy.md's start, with the README's defaults (no passphrase: a generated secret).
  tg = await startTrustgateProcess(
    {
      TRUSTGATE_DATA_DIR: join(work, 'data'),
      TRUSTGATE_KEYS_DIR: join(work, 'keys'),
      TRUSTGATE_UPSTREAM: reg.url,
      TRUSTGATE_PROXY_LISTEN: proxy,
      TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
    },
    join(work, 'trustgate.log'),
    { logLine: /registry proxy listening/ },
  );
});
after(async () => {
  await tg?.proc.stop();
  await reg?.stop();
  await removeTempDir(work);
});

test("docs/signing.md's CI step runs verbatim after the proxy push of docs/proxy.md", async () => {
  const admin = readFileSync(join(work, 'data', 'admin-token'), 'utf8').trim();
  // The first push through the proxy with the admin token initialises trust for team/app.
  const first = await makeImageLayout(join(work, 'first', 'oci'), { tag: 'latest' });
  await skopeoCopy(first.ref, `docker://${proxy}/team/app:v1`, ['--dest-creds', `admin:${admin}`]);
  const keys = JSON.parse((await cli(tg.url, admin).run(['key', 'list', `${proxy}/team/app`, '--json'])).stdout) as {
    keys: Array<{ role: string }>;
  };
  assert.ok(
    keys.keys.some((k) => k.role === 'targets/releases'),
    'the first push made targets/releases',
  );

  const doc = readFileSync(new URL('../../docs/signing.md', import.meta.url), 'utf8');
  const block = /<!-- ci-example:start -->\s*```sh\n([\s\S]*?)```\s*<!-- ci-example:end -->/.exec(doc);
  assert.ok(block, 'docs/signing.md has the CI example between its markers');
  const dir = join(work, 'ci');
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(dir, 'sign.sh'), block[1]!);
  // PATH shims: `trustgate` is this checkout's CLI; `skopeo` gets a permissive policy and a
  // plain-HTTP registry (what a CI image's /etc/containers would say).
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
  const img = await makeImageLayout(join(dir, 'build', 'oci'), { tag: 'latest', layers: 2 });

  const r = await runCommand('bash', [join(dir, 'sign.sh')], {
    cwd: dir,
    timeoutMs: 120_000,
    env: {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      TRUSTGATE_URL: tg.url,
      TRUSTGATE_TOKEN: admin,
      REGISTRY: reg.host,
      TRUST_NAME: proxy,
      IMAGE: 'team/app',
      TAG: 'build-42',
    },
  });
  assert.equal(r.code, 0, `the documented CI step failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /signed 1 tag\(s\) in targets\/releases of .*team\/app: build-42/);
  assert.match(r.stdout, /team\/app:build-42 is signed: sha256:/);
  // A pull through the proxy gets the signed image.
  const pull = await fetch(`http://${proxy}/v2/team/app/manifests/build-42`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(pull.status, 200, await pull.clone().text());
  assert.equal(pull.headers.get('docker-content-digest'), img.manifest.digest);
});

test('signing into a role that does not exist says which command creates it', async () => {
  const admin = readFileSync(join(work, 'data', 'admin-token'), 'utf8').trim();
  const gun = `${proxy}/team/bare`;
  const c = cli(tg.url, admin);
  assert.equal((await c.run(['repo', 'init', gun])).code, 0);
  const r = await c.run(['sign', `${gun}@sha256:${'a'.repeat(64)}`, '--tag', 'v1', '--size', '10', '--role', 'targets/releases']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ROLE_NOT_FOUND: role targets\/releases does not exist .* trustgate signer add .*team\/bare NAME creates it/);
});
