// The dashboard at scale, in Chromium: 1,000 repositories (server-side pages and search) and
// 10,000 signed tags in one repository (pages of 100). Load times are reported as test
// diagnostics, not asserted.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { assertLoopbackOnly, assertNoConsoleErrors, launch, repoHash, signIn, type Browser } from './browser.js';
import { fastTempDir, makeRepositories, repositoriesLoadTime, scaleGun, signManyTags } from './scale.js';

let tg: RunningTrustgate;
let browser: Browser;
let dir: string;
const REPOS = 1000;
const TAGS = 10_000;

before(async () => {
  dir = fastTempDir('ui-scale');
  tg = await startTrustgate({ dir, env: { TRUSTGATE_SIGN_MAX_BATCH: String(TAGS) } });
  browser = await launch();
  let t0 = Date.now();
  await makeRepositories(tg.url, tg.adminToken, REPOS);
  const made = Date.now() - t0;
  t0 = Date.now();
  await signManyTags(tg.url, tg.adminToken, scaleGun(7), TAGS);
  process.stdout.write(`# made ${REPOS} repositories in ${made} ms, signed ${TAGS} tags in ${Date.now() - t0} ms\n`);
});
after(async () => {
  await browser?.close();
  await tg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('1,000 repositories: a page of 50 at a time, the search asks the server, the load time is reported', async (t) => {
  const w = await browser.open();
  await signIn(w, tg.url, tg.adminToken);
  const { page } = w;
  const first = await repositoriesLoadTime(page, tg.url, REPOS);
  const again = await repositoriesLoadTime(page, tg.url, REPOS);
  t.diagnostic(
    `Repositories page at ${REPOS} repositories: shown in ${first.shownMs} ms (cold), ${again.shownMs} ms (warm); DOMContentLoaded ${again.domContentLoadedMs} ms`,
  );
  const rows = page.getByRole('table').getByRole('row');
  assert.equal(await rows.count(), 51, 'a header and 50 repositories');
  assert.match(await page.getByRole('navigation', { name: 'repositories pages' }).innerText(), /Page 1 of 20/);
  assert.match(await rows.nth(1).innerText(), new RegExp(scaleGun(0)));
  assert.match(await rows.nth(8).innerText(), /10,000|10000/, 'the big repository counts its tags');
  await page.getByRole('button', { name: 'Next →' }).click();
  await page.getByText('Page 2 of 20').waitFor();
  assert.match(await rows.nth(1).innerText(), new RegExp(scaleGun(50)));
  const requested = w.requests.filter((u) => u.includes('/api/v1/repositories?'));
  assert.ok(
    requested.every((u) => new URL(u).searchParams.get('limit') === '50'),
    'every list request asks for one page',
  );

  await page.getByLabel('Search repositories').fill('service-0999');
  await page.getByText('1 matching repositories', { exact: true }).waitFor();
  assert.equal(await rows.count(), 2);
  assertLoopbackOnly(w, tg.url);
  assertNoConsoleErrors(w);
});

test('10,000 tags in one repository: pages of 100, a filter that the server applies', async (t) => {
  const w = await browser.open();
  await signIn(w, tg.url, tg.adminToken);
  const { page } = w;
  const t0 = Date.now();
  await page.goto(`${tg.url}/ui/${repoHash(scaleGun(7))}`);
  const tags = page.getByRole('region', { name: 'Signed tags' });
  await tags.getByText('10,000 tags', { exact: true }).waitFor({ timeout: 60_000 });
  t.diagnostic(`repository page with ${TAGS} tags shown in ${Date.now() - t0} ms`);
  assert.equal(await tags.getByRole('row').count(), 101);
  assert.match(await tags.getByRole('navigation').innerText(), /Page 1 of 100/);
  await tags.getByRole('button', { name: 'Next →' }).click();
  await tags.getByText('Page 2 of 100').waitFor();
  assert.match(await tags.getByRole('row').nth(1).innerText(), /build-00100/);
  await page.getByLabel('Filter tags').fill('build-09999');
  await tags.getByText('1 matching tags', { exact: true }).waitFor();
  assert.match(await tags.getByRole('row').nth(1).innerText(), /build-09999[\s\S]*10\.7 KiB|build-09999[\s\S]*10999 B/);
  assertLoopbackOnly(w, tg.url);
  assertNoConsoleErrors(w);
});
