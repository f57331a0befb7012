// Expiry: what expires soon across repositories, and re-signing targets and delegations (and
// root, with an offline key handed in once) before they expire, with the keys the server holds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { YEAR_MS } from '../../src/core/tuf/time.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { outsideKey } from './keys-helpers.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

let m: Mgmt;
before(async () => (m = await startMgmt()));
after(() => m.stop());

const DAY = 24 * 3600 * 1000;
const digest = `sha256:${'d'.repeat(64)}`;
type Item = { gun: string; role: string; expires: string; expired: boolean; renewedAutomatically: boolean; version: number };

test('expiring lists roles across repositories soonest first; resign renews targets and held delegations', async () => {
  const gun = newGun('exp');
  const g = enc(gun);
  const other = newGun('exp-other');
  const ext = outsideKey();
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  expectStatus(await m.call('post', '/repositories', { body: { gun: other, rootKey: 'keystore' } }), 201);
  expectStatus(await m.call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/ci', generate: true } }), 200);
  expectStatus(await m.call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/ext', publicKeys: [ext.publicPem] } }), 200);
  expectStatus(await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest, size: 9, role: 'targets/ci' } }), 200);
  const extTag = await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'e1', digest, size: 9, role: 'targets/ext' } });
  expectStatus(extTag, 202);
  const part = extTag.body.pending.parts[0];
  expectStatus(
    await m.call('post', `/pending/${extTag.body.pending.id}/signatures`, {
      body: { signatures: [{ keyid: ext.id, sig: ext.sign(part.canonical) }] },
    }),
    200,
  );

  // Nothing but the 14-day timestamps expires within 30 days today.
  const now = await m.call('get', '/expiring?within=30d');
  expectStatus(now, 200);
  const mine = (now.body.items as Item[]).filter((i) => i.gun === gun);
  assert.deepEqual(
    mine.map((i) => [i.role, i.renewedAutomatically]),
    [['timestamp', true]],
  );

  // 35 months later: targets, both delegations and the snapshot expire within 30 days.
  m.advance(3 * YEAR_MS - 20 * DAY);
  try {
    const soon = await m.call('get', '/expiring?within=30d');
    const items = soon.body.items as Item[];
    assert.deepEqual(
      items
        .filter((i) => i.gun === gun)
        .map((i) => i.role)
        .sort(),
      ['snapshot', 'targets', 'targets/ci', 'targets/ext', 'timestamp'],
    );
    const ts = items.find((i) => i.gun === gun && i.role === 'timestamp')!;
    assert.ok(ts.version > 1 && Date.parse(ts.expires) > m.now() && ts.renewedAutomatically, 'the timestamp was renewed when it expired');
    assert.ok(
      items.some((i) => i.gun === other && i.role === 'targets'),
      'every repository is listed',
    );
    const sorted = items.map((i) => Date.parse(i.expires));
    assert.deepEqual(
      sorted,
      [...sorted].sort((a, b) => a - b),
    );
    assert.ok(items.every((i) => !i.expired));
    assert.equal(items.find((i) => i.gun === gun && i.role === 'snapshot')!.renewedAutomatically, true);
    assert.equal(items.find((i) => i.gun === gun && i.role === 'targets')!.renewedAutomatically, false);

    // Re-sign: held roles publish, the delegation held elsewhere waits for its key.
    const r = await m.call('post', `/repositories/${g}/resign`, { body: { within: '30d' } });
    expectStatus(r, 200);
    const byRole = Object.fromEntries((r.body.results as Array<{ role: string; status: string }>).map((x) => [x.role, x.status]));
    assert.deepEqual(byRole, { targets: 'published', 'targets/ci': 'published', 'targets/ext': 'pending' });
    const after = (await m.call('get', '/expiring?within=30d')).body.items as Item[];
    assert.deepEqual(
      after
        .filter((i) => i.gun === gun)
        .map((i) => i.role)
        .sort(),
      ['targets/ext', 'timestamp'],
    );
    const inspect = await m.call('get', `/repositories/${g}`);
    const targets = inspect.body.roles.find((x: { role: string }) => x.role === 'targets');
    assert.ok(Date.parse(targets.expires) > m.now() + 2 * YEAR_MS, 'targets expire three years from the (moved) clock');
    // A real client accepts the renewed repository.
    const cli = await notaryCli({ server: m.tg.url, token: m.admin });
    try {
      const rows = parseNotaryList((await cli.runOk(['list', gun])).stdout);
      assert.deepEqual(rows.map((x) => `${x.name} ${x.role}`).sort(), ['e1 targets/ext', 'v1 targets/ci']);
    } finally {
      await cli.cleanup();
    }
  } finally {
    m.advance(-(3 * YEAR_MS - 20 * DAY));
  }
});

test('an already expired targets role can be re-signed, and a signer may re-sign but not root', async () => {
  const gun = newGun('expired');
  const g = enc(gun);
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const keyA = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
  const tok = await m.call('post', '/tokens', { body: { name: 'resigner', scopes: [`signer:${gun}`], keyIds: [keyA] } });
  m.advance(3 * YEAR_MS + DAY);
  try {
    const items = (await m.call('get', '/expiring?within=0')).body.items as Item[];
    assert.ok(items.some((i) => i.gun === gun && i.role === 'targets' && i.expired));
    expectError(await m.call('post', `/repositories/${g}/resign`, { token: tok.body.token, body: { roles: ['root'] } }), 403, 'FORBIDDEN');
    expectError(await m.call('post', `/repositories/${g}/resign`, { body: { roles: ['timestamp'] } }), 400, 'INVALID_ROLE');
    const r = await m.call('post', `/repositories/${g}/resign`, { token: tok.body.token, body: { roles: ['targets'] } });
    expectStatus(r, 200);
    assert.equal(r.body.results[0].status, 'published');
    assert.ok(!((await m.call('get', '/expiring?within=0')).body.items as Item[]).some((i) => i.gun === gun));
  } finally {
    m.advance(-(3 * YEAR_MS + DAY));
  }
});

test('root is re-signed with an offline root key handed in for that request only', async () => {
  const gun = newGun('exp-root');
  const g = enc(gun);
  const created = await m.call('post', '/repositories', { body: { gun, rootKey: 'offline', passphrase: 'expiry-root-passphrase' } });
  expectStatus(created, 201);
  const without = await m.call('post', `/repositories/${g}/resign`, { body: { roles: ['root'] } });
  expectStatus(without, 200);
  assert.equal(without.body.results[0].status, 'pending');
  expectStatus(await m.call('delete', `/pending/${without.body.results[0].pendingId}`), 200);
  const r = await m.call('post', `/repositories/${g}/resign`, {
    body: { roles: ['root'], offlineRootKey: { pem: created.body.rootKey.pem, passphrase: 'expiry-root-passphrase' } },
  });
  expectStatus(r, 200);
  assert.deepEqual(r.body.results, [{ role: 'root', status: 'published', version: 2, pendingId: null }]);
  const root = JSON.parse((await request(m.tg.url).get(`/v2/${gun}/_trust/tuf/root.json`)).text) as { signed: { version: number } };
  assert.equal(root.signed.version, 2);
  assert.deepEqual(await m.tg.app.keys.list({ gun, role: 'root' }), [], 'the offline key was not kept');
  expectError(
    await m.call('post', `/repositories/${g}/resign`, {
      body: { roles: ['root'], offlineRootKey: { pem: created.body.rootKey.pem, passphrase: 'not-the-passphrase' } },
    }),
    400,
    'WRONG_PASSPHRASE',
  );
});
