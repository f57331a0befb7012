// m-of-n in the browser: a tag proposed by one key holder waits on the Approvals page, two more
// tokens add their signatures there, and the change publishes (the notary CLI then lists it).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { sha256Hex } from '../helpers/util.js';
import { assertLoopbackOnly, assertNoConsoleErrors, callOk, launch, signIn, type Browser } from './browser.js';

let tg: RunningTrustgate;
let browser: Browser;
const GUN = 'registry.example.com/approvals/app';
const g = encodeURIComponent(GUN);

before(async () => {
  tg = await startTrustgate();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await tg?.stop();
});

test('a 3-of-3 targets change: proposed by one token, approved in the browser by two more until it publishes', async () => {
  await callOk(tg.url, tg.adminToken, 'POST', '/repositories', { gun: GUN, rootKey: 'keystore' }, 201);
  const keyA = (await tg.app.keys.list({ gun: GUN, role: 'targets' }))[0]!.id;
  const keyB = (await callOk(tg.url, tg.adminToken, 'POST', `/repositories/${g}/roles/targets/keys`, { threshold: 2 }, 200))
    .keyId as string;
  const keyC = (await callOk(tg.url, tg.adminToken, 'POST', `/repositories/${g}/roles/targets/keys`, { threshold: 3 }, 200))
    .keyId as string;
  const carol = tg.token([`signer:${GUN}`], { name: 'carol', keyIds: [keyA] });
  const alice = tg.token([`signer:${GUN}`], { name: 'alice', keyIds: [keyB] });
  const bob = tg.token([`signer:${GUN}`], { name: 'bob', keyIds: [keyC] });
  const reader = tg.token(['reader'], { name: 'rita' });
  const digest = `sha256:${sha256Hex('release-1')}`;
  const proposed = await callOk(tg.url, carol, 'POST', `/repositories/${g}/tags`, { tag: 'release-1', digest, size: 3000 }, 202);
  assert.equal(proposed.pending.missing, 2);

  // A reader sees the change and who signed it, but has nothing to add.
  const r = await browser.open();
  await signIn(r, tg.url, reader);
  await r.page.getByRole('link', { name: 'Approvals', exact: true }).click();
  const readerCard = r.page.getByRole('article');
  await readerCard.getByText('1 of 3 signed').waitFor();
  assert.match(await readerCard.innerText(), /carol with/);
  assert.equal(await readerCard.getByRole('button').count(), 0);

  // Alice: the diff says what publishing does; her signature makes it 2 of 3.
  const a = await browser.open();
  await signIn(a, tg.url, alice);
  await a.page.getByRole('link', { name: 'Approvals', exact: true }).click();
  const card = a.page.getByRole('article').filter({ hasText: GUN });
  const diff = card.getByRole('list', { name: 'Changes to targets' });
  await diff.waitFor();
  assert.match(await diff.innerText(), new RegExp(`\\+ tag release-1 → ${sha256Hex('release-1').slice(0, 12)}`));
  assert.match(await card.innerText(), /opened by carol/);
  await card.getByRole('button', { name: `Add my signature (${keyB.slice(0, 12)})` }).click();
  await a.page.getByRole('status').filter({ hasText: 'still waiting for 1 more signature' }).waitFor();
  await card.getByText('2 of 3 signed').waitFor();
  assert.match(await card.innerText(), /alice with/);
  assert.equal(await card.getByRole('button').count(), 0, 'her key has signed: nothing more to add');
  assert.deepEqual((await callOk(tg.url, reader, 'GET', `/repositories/${g}`, undefined, 200)).signedTags, [], 'not yet published');

  // Bob's signature completes it.
  const b = await browser.open();
  await signIn(b, tg.url, bob);
  await b.page.getByRole('link', { name: 'Approvals', exact: true }).click();
  await b.page.getByRole('button', { name: `Add my signature (${keyC.slice(0, 12)})` }).click();
  await b.page.getByRole('status').filter({ hasText: 'release-1' }).filter({ hasText: 'is published' }).waitFor();
  await b.page.getByText('No change is waiting for signatures.').waitFor();

  const cli = await notaryCli({ server: tg.url, token: reader });
  try {
    const listed = parseNotaryList((await cli.runOk(['list', GUN])).stdout);
    assert.deepEqual(listed, [{ name: 'release-1', digest: sha256Hex('release-1'), size: 3000, role: 'targets' }]);
  } finally {
    await cli.cleanup();
  }
  const signed = await callOk(tg.url, tg.adminToken, 'GET', `/audit?gun=${g}&action=pending.sign`, undefined, 200);
  assert.deepEqual(
    signed.entries.map((e: { actor: { name: string }; outcome: string }) => `${e.actor.name} ${e.outcome}`),
    ['alice success', 'bob success'],
  );
  for (const w of [r, a, b]) {
    assertLoopbackOnly(w, tg.url);
    assertNoConsoleErrors(w);
  }
});
