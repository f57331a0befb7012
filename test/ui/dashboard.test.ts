// The dashboard in Debian's Chromium against a real trustgate: the static edge's headers, sign-in,
// every page over data made through the management API and the notary CLI, what a reader and a
// signer may see and do, keyboard use and a phone-width screen. Every page stays on loopback and
// logs no console error.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { notaryCli, parseNotaryList, type NotaryCli } from '../helpers/notary-cli.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { sha256Hex } from '../helpers/util.js';
import {
  assertLoopbackOnly,
  assertNoConsoleErrors,
  call,
  callOk,
  launch,
  repoHash,
  signIn,
  type Browser,
  type WatchedPage,
} from './browser.js';

let tg: RunningTrustgate;
let browser: Browser;
let notary: NotaryCli;
const CLI_GUN = 'registry.example.com/dash/notary-made';
const API_GUN = 'registry.example.com/dash/api-made';
const OTHER_GUN = 'registry.example.com/other/app';
const digest = (label: string) => `sha256:${sha256Hex(label)}`;

before(async () => {
  tg = await startTrustgate({ logs: 'debug' });
  browser = await launch();
  // One repository as `notary` makes it (root key offline, in the client's trust directory)...
  notary = await notaryCli({ server: tg.url, token: tg.adminToken });
  await notary.runOk(['init', CLI_GUN, '-p']);
  await notary.runOk(['addhash', CLI_GUN, 'v1.0', '1234', '--sha256', sha256Hex('cli-v1'), '-p']);
  await notary.runOk(['addhash', CLI_GUN, 'v1.1', '5678', '--sha256', sha256Hex('cli-v1.1'), '-p']);
  // ...and two through the management API, with a signer whose key the server holds.
  for (const gun of [API_GUN, OTHER_GUN]) await callOk(tg.url, tg.adminToken, 'POST', '/repositories', { gun, rootKey: 'keystore' }, 201);
  const g = encodeURIComponent(API_GUN);
  await callOk(tg.url, tg.adminToken, 'POST', `/repositories/${g}/tags`, { tag: 'stable', digest: digest('api-stable'), size: 2048 }, 200);
  await callOk(tg.url, tg.adminToken, 'POST', `/repositories/${g}/signers`, { name: 'alice', generate: true }, 200);
});

after(async () => {
  await browser?.close();
  await notary?.cleanup();
  await tg?.stop();
});

/** A tab signed in with `token` (checked for loopback-only requests and no console errors by done()). */
async function session(token: string, viewport?: { width: number; height: number }) {
  const w = await browser.open(viewport);
  await signIn(w, tg.url, token);
  return w;
}

function done(w: WatchedPage, allowed: RegExp[] = []) {
  assertLoopbackOnly(w, tg.url);
  assertNoConsoleErrors(w, allowed);
  return w.page.close();
}

test('the /ui/ edge: a strict CSP and its companions, /ui redirects, hashed assets cache, other paths 404', async () => {
  const page = await fetch(`${tg.url}/ui/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type')!, /^text\/html/);
  const csp = page.headers.get('content-security-policy')!;
  const directives = new Map(csp.split(/;\s*/).map((d) => [d.split(' ')[0]!, d.split(' ').slice(1).join(' ')]));
  assert.equal(directives.get('default-src'), "'self'");
  assert.equal(directives.get('script-src'), "'self'");
  assert.equal(directives.get('style-src'), "'self'");
  assert.equal(directives.get('frame-ancestors'), "'none'");
  assert.equal(directives.get('object-src'), "'none'");
  assert.equal(directives.get('base-uri'), "'none'");
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|data:|https?:|\*/, 'no inline code, no other host');
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
  const html = await page.text();
  assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/, 'no inline script');
  assert.doesNotMatch(html, /<style|\sstyle=/, 'no inline style');
  assert.doesNotMatch(html, /https?:\/\//, 'nothing from another host');

  const bare = await fetch(`${tg.url}/ui?x=1`, { redirect: 'manual' });
  assert.equal(bare.status, 301);
  assert.equal(bare.headers.get('location'), '/ui/?x=1');

  const script = html.match(/src="(\/ui\/assets\/[^"]+\.js)"/)![1]!;
  const asset = await fetch(`${tg.url}${script}`);
  assert.equal(asset.status, 200);
  assert.match(asset.headers.get('content-type')!, /javascript/);
  assert.match(asset.headers.get('cache-control')!, /immutable/);
  assert.ok(asset.headers.get('content-security-policy'), 'every answer of the edge carries the CSP');

  for (const path of ['/ui/nope.js', '/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/.hidden']) {
    const r = await fetch(`${tg.url}${path}`);
    assert.equal(r.status, 404, path);
    assert.doesNotMatch(await r.text(), /"name": "trustgate"/, path);
  }
  const post = await fetch(`${tg.url}/ui/`, { method: 'POST' });
  assert.equal(post.status, 405);
});

test('sign-in: a bad token gets a clear message and no session; a good one shows the pages and stays out of the URL', async () => {
  const w = await browser.open();
  const { page } = w;
  await page.goto(`${tg.url}/ui/`);
  const field = page.getByLabel('API token');
  assert.equal(await field.getAttribute('type'), 'password');
  await field.fill('tg_not-a-real-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.innerText(), /not accepted/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);

  await field.fill(tg.adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor();
  assert.equal(await page.evaluate(() => Object.values(sessionStorage).join()), tg.adminToken);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing outlives the tab');
  // Still signed in after a reload (session storage), and the token is in no URL ever requested.
  await page.reload();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  assert.ok(w.requests.every((u) => !u.includes(tg.adminToken)));
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.ok(!tg.logs.join('\n').includes(tg.adminToken));
  // The refused whoami is the one failed load Chromium reports.
  await done(w, [/401 \(Unauthorized\)/]);
});

test('Repositories: every repository with its signed tags, roles and soonest expiry; the search narrows the list', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  const table = page.getByRole('table');
  await table.getByRole('link', { name: CLI_GUN }).waitFor();
  const row = (gun: string) => page.getByRole('row').filter({ has: page.getByRole('link', { name: gun, exact: true }) });
  const cli = await row(CLI_GUN).innerText();
  assert.match(cli, /\b2\b/, 'two signed tags');
  assert.match(cli, /timestamp: \d{4}-\d\d-\d\d/, 'the timestamp expires first');
  assert.match(cli, /(root|targets): \d{4}-\d\d-\d\d/, 'the soonest a person must re-sign');
  assert.match(await row(API_GUN).innerText(), /\b1\b/);
  assert.match(await page.getByRole('status').first().innerText(), /3 repositories/);

  await page.getByLabel('Search repositories').fill('dash/');
  await page.getByText('2 matching repositories').waitFor();
  assert.equal(await row(OTHER_GUN).count(), 0);
  await page.getByRole('link', { name: CLI_GUN }).click();
  await page.getByRole('heading', { name: CLI_GUN }).waitFor();
  await done(w);
});

test('a repository made by notary: tags with digest, size, role, signer and time; keys held offline and by the server', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  await page.goto(`${tg.url}/ui/${repoHash(CLI_GUN)}`);
  const tags = page.getByRole('region', { name: 'Signed tags' });
  const v1 = tags.getByRole('row').filter({ hasText: 'v1.0' });
  await v1.waitFor();
  const text = await v1.innerText();
  assert.match(text, new RegExp(sha256Hex('cli-v1').slice(0, 12)));
  assert.match(text, /1\.2 KiB/);
  assert.match(text, /targets/);
  assert.match(text, /Repo Admin/);
  assert.match(text, /\d{4}-\d\d-\d\d \d\d:\d\d UTC/, 'when it was signed');
  const roles = page.getByRole('region', { name: 'Roles and keys' });
  const root = await roles.getByRole('row').filter({ hasText: /^root/ }).innerText();
  assert.match(root, /not held here|offline/, 'notary keeps the root key');
  const timestamp = await roles
    .getByRole('row')
    .filter({ hasText: /^timestamp/ })
    .innerText();
  assert.match(timestamp, /keystore/, 'the server holds the timestamp key');
  assert.match(timestamp, /\d{4}-\d\d-\d\d/, 'with its expiry');
  // What notary lists is what the page shows.
  const listed = parseNotaryList((await notary.runOk(['list', CLI_GUN])).stdout);
  assert.deepEqual(listed.map((t) => t.name).sort(), ['v1.0', 'v1.1']);
  await done(w);
});

test('an admin signs a digest, adds and removes a signer, rotates a key and revokes a tag from the repository page', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  await page.goto(`${tg.url}/ui/${repoHash(API_GUN)}`);
  const signers = page.getByRole('region', { name: 'Signers' });
  await signers.getByRole('row').filter({ hasText: 'alice' }).waitFor();

  await page.getByText('Sign a digest').click();
  await page.getByLabel('Tag', { exact: true }).fill('v2');
  await page.getByLabel('Digest').fill(digest('api-v2'));
  await page.getByLabel('Size (bytes)').fill('4096');
  await page.getByRole('button', { name: 'Sign', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'published' }).waitFor();
  await page.getByRole('region', { name: 'Signed tags' }).getByRole('row').filter({ hasText: 'v2' }).waitFor();
  const tags = (await callOk(tg.url, tg.adminToken, 'GET', `/repositories/${encodeURIComponent(API_GUN)}`, undefined, 200)).signedTags;
  assert.ok(tags.some((t: { tag: string; digest: string }) => t.tag === 'v2' && t.digest === digest('api-v2')));

  await page.getByText('Add a signer').click();
  await page.getByLabel('Name').fill('bob');
  await page.getByRole('button', { name: 'Add signer' }).click();
  await signers.getByRole('row').filter({ hasText: 'bob' }).waitFor();
  await page.getByRole('button', { name: 'Remove signer bob' }).click();
  await page.getByRole('button', { name: 'Confirm: remove bob' }).click();
  await signers.getByRole('row').filter({ hasText: 'bob' }).waitFor({ state: 'detached' });

  const before = (await callOk(tg.url, tg.adminToken, 'GET', `/repositories/${encodeURIComponent(API_GUN)}`, undefined, 200)).roles;
  const snapshotKey = before.find((r: { role: string }) => r.role === 'snapshot').keyIds[0];
  await page.getByRole('button', { name: 'Rotate snapshot key' }).click();
  await page.getByRole('button', { name: 'Confirm: rotate the snapshot key' }).click();
  await page
    .getByRole('status')
    .filter({ hasText: /snapshot/ })
    .waitFor();
  const after = (await callOk(tg.url, tg.adminToken, 'GET', `/repositories/${encodeURIComponent(API_GUN)}`, undefined, 200)).roles;
  assert.notEqual(after.find((r: { role: string }) => r.role === 'snapshot').keyIds[0], snapshotKey);

  await page.getByRole('button', { name: 'Revoke v2' }).click();
  await page.getByRole('button', { name: 'Confirm: revoke v2' }).click();
  await page.getByRole('region', { name: 'Signed tags' }).getByRole('row').filter({ hasText: 'v2' }).waitFor({ state: 'detached' });
  const left = (await callOk(tg.url, tg.adminToken, 'GET', `/repositories/${encodeURIComponent(API_GUN)}`, undefined, 200)).signedTags;
  assert.deepEqual(
    left.map((t: { tag: string }) => t.tag),
    ['stable'],
  );
  await done(w);
});

test('Expiring: the window chooser widens the list, soonest first', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  await page.getByRole('link', { name: 'Expiring' }).click();
  await page.getByRole('heading', { name: 'Expiring', level: 1 }).waitFor();
  await page.getByLabel('Expiring within').selectOption('1d');
  await page.getByText(/Nothing expires before/).waitFor();
  await page.getByLabel('Expiring within').selectOption('3650d');
  const rows = page.getByRole('table').getByRole('row');
  await rows.nth(1).waitFor();
  const expiries = await page.getByRole('table').locator('tbody tr td:first-child').allInnerTexts();
  assert.ok(expiries.length >= 12, `every role of three repositories: ${expiries.length}`);
  const times = expiries.map((t) => Date.parse(t.slice(0, 16).replace(' ', 'T') + 'Z'));
  assert.deepEqual(
    times,
    [...times].sort((a, b) => a - b),
    'soonest first',
  );
  assert.match(await rows.nth(1).innerText(), /timestamp/);
  // Only what a person must re-sign: the server renews timestamps (and its snapshots) itself.
  await page.getByLabel('Only roles someone must re-sign').check();
  await page.getByRole('table').locator('tbody tr').first().filter({ hasNotText: 'timestamp' }).waitFor();
  const renewal = await page.getByRole('table').locator('tbody tr td:nth-child(5)').allInnerTexts();
  assert.ok(renewal.length > 0);
  assert.deepEqual([...new Set(renewal)], ['needs a key holder']);
  await done(w);
});

test('Audit: the chain verifies, and the filters narrow by repository, action and outcome', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  const reader = tg.token(['reader'], { name: 'audit-reader' });
  assert.equal((await call(tg.url, reader, 'DELETE', `/repositories/${encodeURIComponent(OTHER_GUN)}`)).status, 403);
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByText(/Hash chain verified: \d+ entries/).waitFor();
  await page.getByRole('table').waitFor();
  await page.getByLabel('Repository').fill(API_GUN);
  await page.getByLabel('Action (or prefix)').fill('signer');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.getByRole('cell', { name: 'signer.add' }).first().waitFor();
  const cells = await page.locator('tbody tr td:nth-child(4)').allInnerTexts();
  assert.ok(cells.length >= 1, cells.join());
  assert.ok(
    cells.every((a) => a.startsWith('signer')),
    cells.join(),
  );
  const guns = await page.locator('tbody tr td:nth-child(6)').allInnerTexts();
  assert.deepEqual([...new Set(guns)], [API_GUN]);
  await page.getByLabel('Action (or prefix)').fill('');
  await page.getByLabel('Repository').fill('');
  await page.getByLabel('Outcome').selectOption('denied');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.getByRole('cell', { name: 'audit-reader' }).first().waitFor();
  const outcomes = await page.locator('tbody tr td:nth-child(5)').allInnerTexts();
  assert.deepEqual([...new Set(outcomes)], ['denied']);
  await done(w);
});

test('Proxy: without a registry proxy the page says so', async () => {
  const w = await session(tg.adminToken);
  await w.page.getByRole('link', { name: 'Proxy' }).click();
  await w.page.getByText('This instance runs no registry proxy').waitFor();
  await done(w);
});

test('a reader sees every page but no action button, and the API refuses it with 403 when it tries', async () => {
  const reader = tg.token(['reader']);
  const w = await session(reader);
  const { page } = w;
  await page.goto(`${tg.url}/ui/${repoHash(API_GUN)}`);
  await page.getByRole('region', { name: 'Signed tags' }).getByRole('row').filter({ hasText: 'stable' }).waitFor();
  await page.getByRole('region', { name: 'Signers' }).getByRole('row').filter({ hasText: 'alice' }).waitFor();
  assert.deepEqual(await page.locator('main button').allInnerTexts(), [], 'no button in the page body');
  assert.equal(await page.getByText('Sign a digest').count(), 0);
  assert.equal(await page.getByText('Add a signer').count(), 0);
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByText('The audit log needs an admin token.').waitFor();
  // The same token, straight at the API from the page: refused, and nothing changed.
  const tried = await page.evaluate(
    async ({ gun, d }) => {
      const token = Object.values(sessionStorage)[0]!;
      const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const g = encodeURIComponent(gun);
      const sign = await fetch(`/api/v1/repositories/${g}/tags`, {
        method: 'POST',
        headers: h,
        body: JSON.stringify({ tag: 'evil', digest: d, size: 1 }),
      });
      const revoke = await fetch(`/api/v1/repositories/${g}/tags/stable`, { method: 'DELETE', headers: h });
      const signer = await fetch(`/api/v1/repositories/${g}/signers/alice`, { method: 'DELETE', headers: h });
      return [sign.status, revoke.status, signer.status];
    },
    { gun: API_GUN, d: digest('evil') },
  );
  assert.deepEqual(tried, [403, 403, 403]);
  const tags = (await callOk(tg.url, tg.adminToken, 'GET', `/repositories/${encodeURIComponent(API_GUN)}`, undefined, 200)).signedTags;
  assert.deepEqual(
    tags.map((t: { tag: string }) => t.tag),
    ['stable'],
  );
  await done(w, [/403 \(Forbidden\)/]);
});

test('a signer may sign and revoke only in its repositories and sees no admin action', async () => {
  const signer = tg.token(['signer:registry.example.com/dash/*', 'reader']);
  const w = await session(signer);
  const { page } = w;
  await page.goto(`${tg.url}/ui/${repoHash(API_GUN)}`);
  await page.getByRole('button', { name: 'Revoke stable' }).waitFor();
  assert.equal(await page.getByText('Sign a digest').count(), 1);
  assert.equal(await page.getByRole('button', { name: /^Rotate/ }).count(), 0);
  assert.equal(await page.getByRole('button', { name: /^Remove signer/ }).count(), 0);
  assert.equal(await page.getByText('Add a signer').count(), 0);
  await page.goto(`${tg.url}/ui/${repoHash(OTHER_GUN)}`);
  await page.getByRole('heading', { name: OTHER_GUN }).waitFor();
  await page.getByRole('region', { name: 'Signed tags' }).waitFor();
  assert.deepEqual(await page.locator('main button').allInnerTexts(), [], 'nothing to do outside its pattern');
  assert.equal(
    (await call(tg.url, signer, 'POST', `/repositories/${encodeURIComponent(OTHER_GUN)}/tags`, { tag: 'x', digest: digest('x'), size: 1 }))
      .status,
    403,
  );
  await done(w);
});

test('keyboard only: Tab reaches the navigation, Enter follows a link, and the focus is visible', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  await page.getByRole('link', { name: CLI_GUN }).waitFor();
  const focused: string[] = [];
  for (let i = 0; i < 8 && !focused.includes('Approvals'); i++) {
    await page.keyboard.press('Tab');
    focused.push(await page.evaluate(() => document.activeElement?.textContent?.trim() ?? ''));
  }
  assert.ok(focused.includes('Approvals'), focused.join(' | '));
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
  assert.notEqual(outline, 'none', 'a visible focus ring');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Approvals', level: 1 }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Approvals' }).getAttribute('aria-current'), 'page');
  // Every form control on the repository page has a label.
  await page.goto(`${tg.url}/ui/${repoHash(API_GUN)}`);
  await page.getByText('Sign a digest').click();
  const unlabeled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => !(e as HTMLInputElement).labels?.length)
      .map((e) => e.outerHTML),
  );
  assert.deepEqual(unlabeled, []);
  await done(w);
});

test('on a phone-width screen the pages fit the width and the navigation wraps', async () => {
  const w = await session(tg.adminToken, { width: 390, height: 844 });
  const { page } = w;
  for (const hash of ['#/repositories', repoHash(CLI_GUN), '#/expiring', '#/audit']) {
    await page.goto(`${tg.url}/ui/${hash}`);
    await page.locator('h1').first().waitFor();
    await page.locator('table').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${hash}: the page scrolls sideways by ${overflow}px (tables scroll inside their box)`);
  }
  await done(w);
});

test('a malformed or unknown repository in the address shows an error on the page, not a broken one', async () => {
  const w = await session(tg.adminToken);
  const { page } = w;
  await page.goto(`${tg.url}/ui/#/repo/%E0%A4%A`);
  await page.getByRole('heading', { name: '%E0%A4%A' }).waitFor();
  await page.getByRole('alert').first().waitFor();
  await page.goto(`${tg.url}/ui/${repoHash('registry.example.com/dash/missing')}`);
  await page.getByRole('alert').filter({ hasText: /404/ }).first().waitFor();
  await page.getByRole('link', { name: 'Repositories' }).first().click();
  await page.getByRole('link', { name: CLI_GUN }).waitFor();
  // The refused lookups are the failed loads Chromium reports.
  await done(w, [/status of (400|404)/]);
});
