// The dashboard against a real registry proxy: a tag revoked from the repository page is refused
// on the next pull through the proxy (a real docker-registry upstream, skopeo as the client), and
// the Proxy page shows the refusals by reason and the verdict cache's hit rate.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeImageLayout, runSkopeo, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { denied, get, startStack, type Stack } from '../proxy/support.js';
import { assertLoopbackOnly, assertNoConsoleErrors, launch, repoHash, signIn, type Browser } from './browser.js';

let s: Stack;
let browser: Browser;
let work: string;

before(async () => {
  s = await startStack();
  browser = await launch();
  work = await makeTempDir('ui-proxy');
});
after(async () => {
  await browser?.close();
  await s?.stop();
  await removeTempDir(work);
});

test('revoking a tag in the dashboard makes the proxy refuse its pull; the Proxy page counts the refusals', async () => {
  // Pushed through the proxy, so trustgate signs it; it pulls while signed (twice: a cache hit).
  const img = await makeImageLayout(path.join(work, 'app'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.host}/team/app:v1`, ['--dest-creds', s.creds]);
  for (let i = 0; i < 2; i++) assert.equal((await get(`${s.px.url}/v2/team/app/manifests/v1`)).status, 200);
  // An image that never was signed, pushed to the upstream directly.
  await skopeoCopy(img.ref, `docker://${s.reg.host}/team/unsigned:v1`);
  assert.equal(denied(await get(`${s.px.url}/v2/team/unsigned/manifests/v1`)).detail.reason, 'no-trust-data');

  const w = await browser.open();
  await signIn(w, s.tg.url, s.token);
  const { page } = w;
  await page.goto(`${s.tg.url}/ui/${repoHash(s.gun('team/app'))}`);
  await page.getByRole('button', { name: 'Revoke v1' }).click();
  await page.getByRole('button', { name: 'Confirm: revoke v1' }).click();
  await page.getByRole('status').filter({ hasText: 'published' }).waitFor();

  const refused = denied(await get(`${s.px.url}/v2/team/app/manifests/v1`));
  assert.equal(refused.detail.reason, 'not-signed');
  const pull = await runSkopeo(['inspect', '--tls-verify=false', '--raw', `docker://${s.host}/team/app:v1`]);
  assert.notEqual(pull.code, 0, 'a real client is refused too');
  assert.match(pull.stderr, /denied|DENIED|forbidden|403/i);

  await page.getByRole('link', { name: 'Proxy' }).click();
  const figures = page.getByRole('list', { name: 'Proxy figures' });
  await figures.waitFor();
  assert.match(await figures.innerText(), /\d+\s+refusals since/);
  assert.match(await figures.innerText(), /\d+\.\d %\s+verdict-cache hit rate \([1-9]\d* hits/);
  const byReason = page.getByRole('table').first();
  assert.match(await byReason.getByRole('row').filter({ hasText: 'not-signed' }).innerText(), /not-signed\s+[1-9]/);
  assert.match(await byReason.getByRole('row').filter({ hasText: 'no-trust-data' }).innerText(), /no-trust-data\s+1/);
  const recent = page.getByRole('table').nth(1);
  const newest = await recent.getByRole('row').nth(1).innerText();
  assert.match(newest, /team\/app:v1/);
  assert.match(newest, /not-signed/);
  // The reason filter narrows the list.
  await page.getByLabel('Reason').selectOption('no-trust-data');
  await recent.getByRole('row').filter({ hasText: 'team/app' }).first().waitFor({ state: 'detached' });
  assert.match(await recent.getByRole('row').nth(1).innerText(), /team\/unsigned:v1/);
  assertLoopbackOnly(w, s.tg.url);
  assertNoConsoleErrors(w);
});
