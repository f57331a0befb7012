// A pending change whose base version is gone (another change to the same role published after
// it was opened) is closed as stale at once: it leaves the list, the audit log says why, and the
// keys made for it are deleted. The README's offline-root case, with the file store and with
// PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cli, type Cli } from '../cli/support.js';
import { startPostgres, type PostgresService } from '../helpers/services.js';
import { bearer, startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

type Json = Record<string, any>;

async function api(tg: RunningTrustgate, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${tg.url}/api/v1${path}`, {
    method,
    headers: { Authorization: bearer(tg.adminToken), 'Content-Type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

const enc = encodeURIComponent;

function stalePending(name: string, env: () => Record<string, string>) {
  describe(name, () => {
    let tg: RunningTrustgate;
    let tgc: Cli;
    before(async () => {
      tg = await startTrustgate({ env: env() });
      tgc = cli(tg.url, tg.adminToken);
    });
    after(() => tg?.stop());

    test('a later root change closes the pending change as stale, audits why and deletes its new key', async () => {
      const gun = `example.com/stale/${name.replace(/\W/g, '')}-${Date.now()}`;
      const created = await api(tg, 'POST', '/repositories', { gun, rootKey: 'offline', passphrase: 'stale-passphrase' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      // Step 4 of the walkthrough: the offline root must sign, so the rotation waits.
      const rotate = await tgc.run(['key', 'rotate', gun, 'targets']);
      assert.equal(rotate.code, 3, rotate.stderr);
      assert.match(rotate.stdout, /^pending: root needs 1 more signature\(s\) \(change [0-9a-f]+; /);
      const [open] = (await api(tg, 'GET', `/pending?gun=${enc(gun)}`)).body.pending as Json[];
      assert.ok(open, 'the rotation is pending');
      const targetsKeys = (await tg.app.keys.list({ gun, role: 'targets' })).map((k) => k.id);
      assert.equal(targetsKeys.length, 2, 'the pending change made a second targets key');
      // A later root change, signed with the offline key handed in: the pending one cannot apply.
      const now = await api(tg, 'POST', `/repositories/${enc(gun)}/keys/targets/rotate`, {
        offlineRootKey: { pem: created.body.rootKey.pem, passphrase: 'stale-passphrase' },
      });
      assert.equal(now.status, 200, JSON.stringify(now.body));
      assert.equal(now.body.versions.root, 2);

      const listed = await api(tg, 'GET', `/pending?gun=${enc(gun)}`);
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body.pending, [], 'closed at once, not listed for 7 days');
      const audit = await api(tg, 'GET', `/audit?gun=${enc(gun)}&action=pending.stale`);
      const entry = (audit.body.entries as Json[]).find((e) => e.detail?.pendingId === open.id);
      assert.ok(entry, JSON.stringify(audit.body));
      assert.equal(entry.outcome, 'failure');
      assert.match(entry.detail.reason, /^root version 2 of .* was published after this change was opened from version 1$/);
      // The key made for the stale change is gone; the one that published stays in use.
      const left = (await tg.app.keys.list({ gun, role: 'targets' })).map((k) => k.id);
      assert.deepEqual(left, [now.body.newKeyId]);
      const keys = await tgc.run(['key', 'list', gun]);
      assert.equal(keys.code, 0, keys.stderr);
      assert.doesNotMatch(keys.stdout, /\bno\s*$/m, `no key left unused:\n${keys.stdout}`);
      // Asking for it now says where it went.
      const sign = await api(tg, 'GET', `/pending/${open.id}`);
      assert.equal(sign.status, 404);
      assert.match(JSON.stringify(sign.body), /closed as stale: see the audit log/);
    });

    test('every pending change a publish leaves without a base is closed, with its keys', async () => {
      const gun = `example.com/stale/list-${name.replace(/\W/g, '')}-${Date.now()}`;
      const created = await api(tg, 'POST', '/repositories', { gun, rootKey: 'offline', passphrase: 'stale-passphrase' });
      assert.equal(created.status, 201);
      const first = await api(tg, 'POST', `/repositories/${enc(gun)}/keys/targets/rotate`, {});
      assert.equal(first.status, 202);
      const second = await api(tg, 'POST', `/repositories/${enc(gun)}/keys/targets/rotate`, {});
      assert.equal(second.status, 202);
      const sig = await api(tg, 'POST', `/repositories/${enc(gun)}/keys/targets/rotate`, {
        offlineRootKey: { pem: created.body.rootKey.pem, passphrase: 'stale-passphrase' },
      });
      assert.equal(sig.status, 200);
      const listed = await api(tg, 'GET', `/pending?gun=${enc(gun)}`);
      assert.deepEqual(listed.body.pending, []);
      const audit = await api(tg, 'GET', `/audit?gun=${enc(gun)}&action=pending.stale`);
      assert.deepEqual(
        (audit.body.entries as Json[]).map((e) => e.detail.pendingId).sort(),
        [first.body.pending.id, second.body.pending.id].sort(),
      );
      assert.equal((await tg.app.keys.list({ gun, role: 'targets' })).length, 1);
    });
  });
}

stalePending('file store', () => ({}));

let pg: PostgresService | undefined;
before(async () => {
  pg = await startPostgres();
});
after(() => pg?.stop());
stalePending('PostgreSQL', () => ({ TRUSTGATE_DATABASE_URL: pg!.url }));
