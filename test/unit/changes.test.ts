// The change pipeline (src/trust/changes.ts) against a real trustgate's trust service, keystore
// and pending changes: which keys a caller signs with, publish vs park vs refuse, the errors it
// throws, the re-entrant GUN lock and the after-publish hooks.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setEntry } from '../../src/core/tuf/metadata.js';
import { TrustChangeError, type Caller, type Edit, type TrustChanges } from '../../src/trust/changes.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { editRoot } from '../helpers/trust-edits.js';

let tg: RunningTrustgate;
let changes: TrustChanges;
before(async () => {
  tg = await startTrustgate();
  changes = tg.app.management.changes;
});
after(() => tg.stop());

const admin: Caller = { id: 'a', name: 'admin', admin: true, keyIds: [] };
const meta = (s: string) => ({ hashes: { sha256: createHash('sha256').update(s).digest('base64') }, length: s.length });
const tag =
  (name: string): Edit =>
  (b) =>
    setEntry(b.targets, name, meta(name));
const versions = async (gun: string) => Object.fromEntries(await tg.app.store.latestVersions(gun));
let n = 0;
const newGun = () => `example.com/changes/app-${process.pid}-${++n}`;

/** A repository whose targets role needs two signatures; the server holds both keys. */
async function twoOfTwo(): Promise<{ gun: string; first: string; second: string }> {
  const gun = newGun();
  const init = await changes.editor.init(gun, { rootKey: 'keystore' });
  const second = await tg.app.keys.generate(gun, 'targets', 'ecdsa');
  await editRoot(tg.app, gun, (b) => {
    b.keys[second.id] = second.public;
    b.roles.targets.keyids.push(second.id);
    b.roles.targets.threshold = 2;
  });
  return { gun, first: init.targetsKeyId, second: second.id };
}

test('an admin signs with every held key of the role and publishes', async () => {
  const { gun } = await twoOfTwo();
  const p = await changes.apply({ gun, caller: admin, action: 'tag.sign', summary: 's', edits: new Map([['targets', tag('v1')]]) });
  assert.equal(p.pending, undefined);
  assert.equal(p.versions.targets, (await versions(gun)).targets);
  assert.deepEqual(
    p.published.map((r) => [r.role, r.tags]),
    [['targets', 1]],
  );
});

test('a signer token signs only with its keyIds: short of the threshold it parks a pending change, or is refused', async () => {
  const { gun, first, second } = await twoOfTwo();
  const signer: Caller = { id: 's', name: 'ci', admin: false, keyIds: [first] };
  assert.deepEqual(
    (await changes.usableSigners(gun, signer, [first, second])).map((s) => s.id),
    [first],
  );
  assert.deepEqual(
    (await changes.usableSigners(gun, admin, [first, second], { signWith: [second] })).map((s) => s.id),
    [second],
  );
  const before = await versions(gun);
  const p = await changes.apply({ gun, caller: signer, action: 'tag.sign', summary: 's', edits: new Map([['targets', tag('v2')]]) });
  assert.ok(p.pending && p.change);
  assert.deepEqual(
    p.pending.roles.map((r) => [r.role, r.needed, r.keyIds]),
    [['targets', 1, [second]]],
  );
  assert.deepEqual(await versions(gun), before);
  await assert.rejects(
    changes.apply({
      gun,
      caller: signer,
      action: 'proxy.sign',
      summary: 's',
      edits: new Map([['targets', tag('v3')]]),
      whenShort: 'refuse',
    }),
    (e: unknown) => e instanceof TrustChangeError && e.code === 'THRESHOLD_NOT_MET',
  );
  assert.deepEqual(await versions(gun), before);
  await tg.app.management.pending.remove(p.pending.id);
});

test('a caller with none of the role keys is refused (FORBIDDEN) unless it proposes; unknown roles and repositories are named', async () => {
  const { gun } = await twoOfTwo();
  const nobody: Caller = { id: 'n', name: 'nobody', admin: false, keyIds: [] };
  const edits = new Map([['targets', tag('x')]]);
  await assert.rejects(
    changes.apply({ gun, caller: nobody, action: 'a', summary: 's', edits }),
    (e: unknown) => e instanceof TrustChangeError && e.code === 'FORBIDDEN',
  );
  const proposed = await changes.apply({ gun, caller: nobody, action: 'a', summary: 's', edits, propose: true });
  assert.equal(proposed.pending?.roles[0]?.needed, 2);
  await tg.app.management.pending.remove(proposed.pending!.id);
  await assert.rejects(
    changes.apply({ gun, caller: admin, action: 'a', summary: 's', edits: new Map([['targets/none', tag('x')]]) }),
    (e: unknown) => e instanceof TrustChangeError && e.code === 'ROLE_NOT_FOUND',
  );
  await assert.rejects(
    changes.apply({ gun: newGun(), caller: admin, action: 'a', summary: 's', edits }),
    (e: unknown) => e instanceof TrustChangeError && e.code === 'REPOSITORY_NOT_FOUND',
  );
});

test('a change run while holding the GUN lock does not wait for itself', async () => {
  const { gun } = await twoOfTwo();
  const p = await changes.locks.run(gun, () =>
    changes.apply({ gun, caller: admin, action: 'a', summary: 's', edits: new Map([['targets', tag('nested')]]) }),
  );
  assert.ok(p.versions.targets);
});

test('after-publish hooks see the publication and the signers; a failing hook is AFTER_PUBLISH with the data already published', async () => {
  const { gun, first, second } = await twoOfTwo();
  const seen: string[][] = [];
  const p = await changes.apply({
    gun,
    caller: admin,
    action: 'a',
    summary: 's',
    edits: new Map([['targets', tag('h1')]]),
    after: [({ signers }) => void seen.push(signers.map((s) => s.id).sort())],
  });
  assert.deepEqual(seen, [[first, second].sort()]);
  await assert.rejects(
    changes.apply({
      gun,
      caller: admin,
      action: 'a',
      summary: 's',
      edits: new Map([['targets', tag('h2')]]),
      after: [() => Promise.reject(new Error('registry down'))],
    }),
    (e: unknown) =>
      e instanceof TrustChangeError &&
      e.code === 'AFTER_PUBLISH' &&
      (e.extra.publication as { versions: { targets: number } }).versions.targets === p.versions.targets! + 1,
  );
  assert.equal((await versions(gun)).targets, p.versions.targets! + 1);
});
