// Changes to one GUN made through different instances take turns: with PostgreSQL, holding a
// GUN's change lock in one instance holds it in all, so a change never builds on versions that
// another instance is about to replace (which cost a retry, and under steady load a 409).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TargetsBody } from '../../src/core/tuf/metadata.js';
import type { Caller } from '../../src/trust/changes.js';
import { startPostgres, type PostgresService } from '../helpers/services.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

let pg: PostgresService;
let a: RunningTrustgate;
let b: RunningTrustgate;
before(async () => {
  pg = await startPostgres();
  const env = { TRUSTGATE_DATABASE_URL: pg.url, TRUSTGATE_KEYSTORE: 'keyv', TRUSTGATE_KEYSTORE_URL: pg.url };
  a = await startTrustgate({ env });
  b = await startTrustgate({ env });
});
after(async () => {
  await a?.stop();
  await b?.stop();
  await pg?.stop();
});

const admin: Caller = { id: 'admin', name: 'admin', admin: true, keyIds: [] };
const target = (s: string) => ({ hashes: { sha256: createHash('sha256').update(s).digest('base64') }, length: s.length });

test("a change through one instance waits while another instance holds the GUN's change lock, and builds on its result", async () => {
  const gun = 'example.com/ha/change-lock';
  await a.app.management.changes.editor.init(gun, { rootKey: 'keystore' });
  let builds = 0;
  let done = false;
  assert.ok(a.app.store.exclusive, 'a PostgreSQL store has a cross-instance lock');
  let change: Promise<unknown> = Promise.resolve();
  // A's change lock, held while A publishes (re-entrant inside it).
  await a.app.management.changes.locks.run(gun, async () => {
    change = b.app.management.changes
      .apply({
        gun,
        caller: admin,
        action: 'tag.add',
        summary: 'b',
        edits: new Map([
          [
            'targets',
            (t: TargetsBody) => {
              builds++;
              t.targets.b = target('b');
            },
          ],
        ]),
      })
      .finally(() => (done = true));
    await sleep(500);
    assert.equal(done, false, "B's change waited for the lock");
    assert.equal(builds, 0, 'and had not started building');
    // What the holder publishes meanwhile is what B then builds on.
    const first = await a.app.management.changes.apply({
      gun,
      caller: admin,
      action: 'tag.add',
      summary: 'a',
      edits: new Map([['targets', (t: TargetsBody) => void (t.targets.a = target('a'))]]),
    });
    assert.equal(first.versions.targets, 2);
  });
  // Released: B's change ran once, on top of A's.
  await change;
  assert.equal(builds, 1, 'built once: no version conflict, no retry');
  const targets = JSON.parse((await b.app.trust.current(gun, 'targets'))!.bytes.toString()) as { signed: TargetsBody };
  assert.equal(targets.signed.version, 3);
  assert.deepEqual(Object.keys(targets.signed.targets).sort(), ['a', 'b']);
});
