import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Metadata, type TargetsBody } from '../../src/core/tuf/metadata.js';
import { PushSigner } from '../../src/proxy/signing.js';
import { TrustChangeError } from '../../src/trust/changes.js';
import { RepoEditor } from '../../src/trust/editor.js';
import { editRoot, editTargets } from '../helpers/trust-edits.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

let tg: RunningTrustgate;
let editor: RepoEditor;
before(async () => {
  tg = await startTrustgate();
  editor = new RepoEditor(tg.app.trust, tg.app.keys);
});
after(() => tg.stop());

const digest = (s: string) => createHash('sha256').update(s).digest();

test('a repository initialised on the server is readable by the real notary CLI', async () => {
  const gun = 'example.com/editor/app';
  const res = await editor.init(gun, { rootKey: 'keystore' });
  assert.deepEqual(
    res.files.map((f) => f.role),
    ['root', 'targets', 'snapshot', 'timestamp'],
  );
  await editTargets(tg.app, gun, 'targets', (b) => {
    b.targets.v1 = { hashes: { sha256: digest('manifest').toString('base64') }, length: 8 };
  });
  const cli = await notaryCli({ server: tg.url, token: tg.adminToken });
  try {
    const out = await cli.runOk(['list', gun]);
    const rows = parseNotaryList(out.stdout);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.name, 'v1');
    assert.equal(rows[0]!.digest, digest('manifest').toString('hex'));
  } finally {
    await cli.cleanup();
  }
});

test('an offline root is returned once and never stored', async () => {
  const gun = 'example.com/editor/offline';
  const res = await editor.init(gun, { rootKey: 'offline' });
  assert.ok(res.offlineRootKey);
  assert.equal(await tg.app.keys.get(res.rootKeyId), undefined);
  const held = await tg.app.keys.list({ gun, role: 'root' });
  assert.equal(held.length, 0);
});

test('a targets edit that lacks signatures is refused with what is missing, and nothing is published', async () => {
  const gun = 'example.com/editor/threshold';
  await editor.init(gun, { rootKey: 'keystore' });
  const second = await tg.app.keys.generate(gun, 'targets', 'ecdsa');
  await editRoot(tg.app, gun, (b) => {
    b.keys[second.id] = second.public;
    b.roles.targets.keyids.push(second.id);
    b.roles.targets.threshold = 2;
  });
  await tg.app.keys.delete(second.id); // the second holder is somebody else now
  const before = (await tg.app.trust.current(gun, 'targets'))!.bytes;
  const admin = { id: 'admin', name: 'admin', admin: true, keyIds: [] };
  await assert.rejects(
    tg.app.management.changes.apply({
      gun,
      caller: admin,
      action: 'tag.add',
      summary: 'x',
      edits: new Map([['targets', (b) => void (b.targets.x = { hashes: { sha256: digest('x').toString('base64') }, length: 1 })]]),
      whenShort: 'refuse',
    }),
    (e: unknown) => e instanceof TrustChangeError && e.code === 'THRESHOLD_NOT_MET',
  );
  assert.deepEqual((await tg.app.trust.current(gun, 'targets'))!.bytes, before);
  assert.equal(Metadata.parse<TargetsBody>('targets', before).body.targets.x, undefined);
});

test('push signing a tag named "__proto__" or "constructor" lists it as an own target of the signed file', async () => {
  const gun = 'example.com/editor/proto';
  const signer = new PushSigner(tg.app.management.changes, tg.app.keys);
  const admin = { id: 'admin', name: 'admin', admin: true, keyIds: [] };
  const hex = (s: string) => digest(s).toString('hex');
  await signer.sign(gun, 'targets', '__proto__', `sha256:${hex('p')}`, 3, admin);
  await signer.sign(gun, 'targets', 'constructor', `sha256:${hex('c')}`, 4, admin);
  const bytes = (await tg.app.trust.current(gun, 'targets'))!.bytes;
  const signed = (
    JSON.parse(bytes.toString('utf8')) as { signed: { targets: Record<string, { hashes: { sha256: string }; length: number }> } }
  ).signed;
  assert.deepEqual(Object.keys(signed.targets), ['__proto__', 'constructor']);
  assert.equal(signed.targets['__proto__']!.hashes.sha256, digest('p').toString('base64'));
  assert.equal(signed.targets['constructor']!.length, 4);
  const body = Metadata.parse<TargetsBody>('targets', bytes).body;
  assert.deepEqual(Object.keys(body.targets), ['__proto__', 'constructor']);
});
