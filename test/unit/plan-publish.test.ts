// planPublish takes parses of the stored files that its caller already holds (RepoState.parsed),
// so a publish parses only what it uploads; a parse given under another role is not used, and
// without any the plan is the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { Metadata, type SnapshotBody, type TimestampBody } from '../../src/core/tuf/metadata.js';
import { planPublish, type RepoState } from '../../src/core/tuf/update.js';
import { DAY_MS } from '../../src/core/tuf/time.js';
import { expiresIn, newRootSigner, rootBody, sign, snapshotBody, targetMeta, targetsBody } from '../helpers/tuf-builder.js';

const gun = 'example.com/plan';

async function repo() {
  const root = await newRootSigner(gun);
  const targets = generateSigner('ecdsa');
  const snapshot = generateSigner('ecdsa');
  const timestamp = generateSigner('ecdsa');
  const rootBytes = await sign(
    rootBody({ version: 1, root: [root.key], targets: [targets.key], snapshot: [snapshot.key], timestamp: [timestamp.key] }),
    [root],
  );
  const t1 = await sign(targetsBody({ version: 1 }), [targets]);
  const snap = await sign(snapshotBody({ version: 1, files: { root: rootBytes, targets: t1 } }), [snapshot]);
  const ts = (version: number) =>
    sign({ _type: 'Timestamp', expires: expiresIn(14 * DAY_MS), meta: { snapshot: targetMeta(snap) }, version } satisfies TimestampBody, [
      timestamp,
    ]);
  const keyring = { signersFor: async (role: 'snapshot' | 'timestamp') => [role === 'snapshot' ? snapshot : timestamp] };
  const state = async (parsed?: Map<Buffer, Metadata>): Promise<RepoState> => ({
    root: rootBytes,
    snapshot: snap,
    timestamp: await ts(1),
    targets: new Map([['targets', t1]]),
    latestVersions: new Map([
      ['root', 1],
      ['targets', 1],
      ['snapshot', 1],
      ['timestamp', 1],
    ]),
    ...(parsed ? { parsed } : {}),
  });
  const upload = new Map([['targets', await sign(targetsBody({ version: 2, targets: { v1: targetMeta('image') } }), [targets])]]);
  return { rootBytes, snap, ts, keyring, state, upload };
}

const versions = (files: { role: string; version: number }[]) => files.map((f) => `${f.role}@${f.version}`);

test("planPublish: without parses, and with the caller's parses of the same files, the plan is the same", async () => {
  const r = await repo();
  const plain = await planPublish(gun, r.upload, await r.state(), r.keyring, Date.now());
  const st = await r.state();
  const parsed = new Map<Buffer, Metadata>([
    [st.root!, Metadata.parse('root', st.root!)],
    [st.snapshot!, Metadata.parse('snapshot', st.snapshot!)],
    [st.timestamp!, Metadata.parse('timestamp', st.timestamp!)],
  ]);
  const cached = await planPublish(gun, r.upload, { ...st, parsed }, r.keyring, Date.now());
  assert.deepEqual(versions(cached), versions(plain));
  assert.deepEqual(versions(plain), ['targets@2', 'snapshot@2', 'timestamp@2']);
  const meta = (files: typeof plain) => Metadata.parse<SnapshotBody>('snapshot', files.find((f) => f.role === 'snapshot')!.bytes).body.meta;
  assert.deepEqual(meta(cached), meta(plain));
});

test('planPublish: a given parse is what planning uses, but only under its own role', async () => {
  const r = await repo();
  const st = await r.state();
  // A stand-in parse (of another timestamp, version 7) shows whether planning read the map:
  // the next timestamp version follows the current timestamp's.
  const ts7 = Metadata.parse<TimestampBody>('timestamp', await r.ts(7));
  const used = await planPublish(
    gun,
    r.upload,
    { ...st, parsed: new Map<Buffer, Metadata>([[st.timestamp!, ts7]]) },
    r.keyring,
    Date.now(),
  );
  assert.equal(used.find((f) => f.role === 'timestamp')?.version, 8);
  // The same parse filed under the snapshot's bytes has the wrong role and is ignored.
  const ignored = await planPublish(
    gun,
    r.upload,
    { ...st, parsed: new Map<Buffer, Metadata>([[st.snapshot!, ts7]]) },
    r.keyring,
    Date.now(),
  );
  assert.deepEqual(versions(ignored), ['targets@2', 'snapshot@2', 'timestamp@2']);
});
