// `npm run ui:screenshots`: the dashboard's pages in Chromium over real data (a registry proxy
// with a docker-registry upstream, repositories made by the notary CLI and the API, a pending
// m-of-n change, refused pulls), saved as docs/ui/*.png; then the Repositories page's load time
// at 1,000 repositories. Needs `npm run build` first, and the test dependencies.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeImageLayout, skopeoCopy } from '../test/helpers/oci.js';
import { notaryCli } from '../test/helpers/notary-cli.js';
import { sha256Hex } from '../test/helpers/util.js';
import { get, startStack } from '../test/proxy/support.js';
import { callOk, launch, repoHash, signIn } from '../test/ui/browser.js';
import { fastTempDir, makeRepositories, repositoriesLoadTime, signManyTags } from '../test/ui/scale.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'docs/ui');
const TOTAL = 1000;

const dir = fastTempDir('ui-shots');
const work = fastTempDir('ui-shots-work');
const s = await startStack({ dir, env: { TRUSTGATE_SIGN_MAX_BATCH: '10000' } });
const browser = await launch();
try {
  const base = s.tg.url;
  const admin = s.token;
  const enc = encodeURIComponent;
  // Signed through the proxy, then one tag revoked and pulled: refusals for the Proxy page.
  const img = await makeImageLayout(path.join(work, 'web'), { tag: 'v1' });
  for (const tag of ['1.0.0', '1.1.0', '1.2.0']) await skopeoCopy(img.ref, `docker://${s.host}/shop/web:${tag}`, ['--dest-creds', s.creds]);
  for (let i = 0; i < 5; i++) await get(`${s.px.url}/v2/shop/web/manifests/1.2.0`);
  await callOk(base, admin, 'DELETE', `/repositories/${enc(s.gun('shop/web'))}/tags/1.0.0`, undefined, 200);
  await skopeoCopy(img.ref, `docker://${s.reg.host}/shop/unsigned:latest`);
  for (const ref of ['shop/web/manifests/1.0.0', 'shop/unsigned/manifests/latest', 'shop/web/manifests/9.9.9'])
    await get(`${s.px.url}/v2/${ref}`);
  await callOk(base, admin, 'POST', `/repositories/${enc(s.gun('shop/web'))}/signers`, { name: 'release-bot', generate: true }, 200);

  // A repository as the notary CLI makes it (its root key offline).
  const cli = await notaryCli({ server: base, token: admin });
  const notaryGun = 'registry.example.com/platform/base-image';
  await cli.runOk(['init', notaryGun, '-p']);
  for (const v of ['bookworm', 'bookworm-slim', 'trixie'])
    await cli.runOk(['addhash', notaryGun, v, '29123', '--sha256', sha256Hex(v), '-p']);
  await cli.cleanup();

  // A 2-of-2 targets change waiting for its second key holder.
  const payments = 'registry.example.com/payments/api';
  await callOk(base, admin, 'POST', '/repositories', { gun: payments, rootKey: 'keystore' }, 201);
  await signManyTags(base, admin, payments, 40);
  const keyA = (await s.tg.app.keys.list({ gun: payments, role: 'targets' }))[0]!.id;
  const keyB = (await callOk(base, admin, 'POST', `/repositories/${enc(payments)}/roles/targets/keys`, { threshold: 2 }, 200)).keyId;
  const alice = s.tg.token([`signer:${payments}`], { name: 'alice', keyIds: [keyA] });
  const bob = s.tg.token([`signer:${payments}`], { name: 'bob', keyIds: [keyB] });
  await callOk(
    base,
    alice,
    'POST',
    `/repositories/${enc(payments)}/tags`,
    { tag: 'v2.4.0', digest: `sha256:${sha256Hex('v2.4.0')}`, size: 7023 },
    202,
  );

  mkdirSync(OUT, { recursive: true });
  const shot = async (w: Awaited<ReturnType<typeof browser.open>>, name: string, fullPage = true) => {
    await w.page.waitForLoadState('networkidle');
    await w.page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage });
    process.stdout.write(`docs/ui/${name}.png\n`);
  };
  const signin = await browser.open();
  await signin.page.goto(`${base}/ui/`);
  await shot(signin, 'sign-in');

  const w = await browser.open();
  await signIn(w, base, admin);
  const pages: Array<[string, string, string]> = [
    ['repositories', '#/repositories', 'Repositories'],
    ['repository', repoHash(s.gun('shop/web')), 'Signed tags'],
    ['repository-notary', repoHash(notaryGun), 'Signed tags'],
    ['expiring', '#/expiring', 'Expiring'],
    ['audit', '#/audit', 'Hash chain'],
    ['proxy', '#/proxy', 'Refusals by reason'],
  ];
  for (const [name, hash, text] of pages) {
    await w.page.goto(`${base}/ui/${hash}`);
    await w.page.getByText(text).first().waitFor();
    await shot(w, name);
  }
  const b = await browser.open();
  await signIn(b, base, bob);
  await b.page.goto(`${base}/ui/#/approvals`);
  await b.page.getByRole('button', { name: /Add my signature/ }).waitFor();
  await shot(b, 'approvals');
  const phone = await browser.open({ width: 390, height: 844 });
  await signIn(phone, base, admin);
  await phone.page.goto(`${base}/ui/${repoHash(s.gun('shop/web'))}`);
  await phone.page.getByText('Signed tags').first().waitFor();
  await shot(phone, 'repository-phone');

  // 1,000 repositories: how long the Repositories page takes to show its first page.
  const have = (await callOk(base, admin, 'GET', '/repositories?limit=1', undefined, 200)).total as number;
  const t0 = Date.now();
  await makeRepositories(base, admin, TOTAL - have);
  process.stdout.write(`made ${TOTAL - have} more repositories in ${Date.now() - t0} ms\n`);
  const runs = [];
  for (let i = 0; i < 5; i++) runs.push(await repositoriesLoadTime(w.page, base, TOTAL));
  const shown = runs.map((r) => r.shownMs);
  const sorted = [...shown].sort((a, c) => a - c);
  process.stdout.write(
    `Repositories page at ${TOTAL} repositories: first ${shown[0]} ms, median ${sorted[2]} ms of 5 loads ` +
      `(navigation to the first 50 rows on screen); DOMContentLoaded ${runs[4]!.domContentLoadedMs} ms\n`,
  );
  await shot(w, 'repositories-1000', false);
} finally {
  await browser.close();
  await s.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
