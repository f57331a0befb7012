// Lazy re-signing on GET timestamp.json / snapshot.json (spec §3.7): an expired timestamp, and an
// expired server-held snapshot, are regenerated, stored (with a changefeed record) and served.
// The server's clock is moved with createApp's `now` override.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { Metadata, checkFileMeta, type RootBody, type SnapshotBody, type TimestampBody } from '../../src/core/tuf/metadata.js';
import { DAY_MS, YEAR_MS, parseRfc3339 } from '../../src/core/tuf/time.js';
import { initRepo, raw, tufPath } from '../helpers/tuf-builder.js';
import { newGun, startServer, type Server } from './support.js';
import { storedState } from '../helpers/unchanged.js';
import { sha256Hex } from '../helpers/util.js';

let s: Server;
beforeEach(async () => {
  s = await startServer();
});
afterEach(() => s.stop());

const get = (gun: string, file: string) => raw(s.agent.get(tufPath(gun, file)));

async function feed(gun: string) {
  const res = await raw(s.agent.get(`/v2/${gun}/_trust/changefeed?records=100`));
  assert.equal(res.status, 200);
  return JSON.parse(res.body.toString()) as {
    count: number;
    records: Array<{ Version: number; SHA256: string; Category: string; CreatedAt: string }>;
  };
}

/** Asserts `expires` is `now + ms`, give or take a few seconds of test time. */
function assertExpiresAt(expires: string, want: number): void {
  const got = parseRfc3339(expires);
  assert.ok(Math.abs(got - want) < 10_000, `expires ${expires}, want about ${new Date(want).toISOString()}`);
}

test('an expired timestamp is re-signed on GET: version+1, expires now+14d, stored, changefeed record added, Last-Modified = now', async () => {
  const gun = newGun('ts-expired');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  const old = await get(gun, 'timestamp.json');
  const oldMd = Metadata.parse<TimestampBody>('timestamp', old.body);
  const snapBefore = (await get(gun, 'snapshot.json')).body;
  assert.equal((await feed(gun)).count, 1);

  s.advance(15 * DAY_MS);
  const res = await get(gun, 'timestamp.json');
  assert.equal(res.status, 200);
  const md = Metadata.parse<TimestampBody>('timestamp', res.body);
  assert.equal(md.version, oldMd.version + 1);
  assertExpiresAt(md.body.expires, s.now() + 14 * DAY_MS);
  assert.ok(!md.isExpired(s.now()));
  // signed by the root's timestamp key, naming the unchanged snapshot
  const root = Metadata.parse<RootBody>('root', (await get(gun, 'root.json')).body);
  md.verifyThreshold(root.body.keys, root.body.roles.timestamp, 'ErrValidation');
  assert.equal(checkFileMeta('snapshot', snapBefore, md.body.meta.snapshot, true), undefined);
  assert.ok((await get(gun, 'snapshot.json')).body.equals(snapBefore), 'snapshot not due: unchanged');
  // stored: reachable by version and checksum; the next GET serves the same bytes
  assert.ok((await get(gun, `${md.version}.timestamp.json`)).body.equals(res.body));
  assert.ok((await get(gun, `timestamp.${sha256Hex(res.body)}.json`)).body.equals(res.body));
  assert.ok((await get(gun, 'timestamp.json')).body.equals(res.body));
  // Last-Modified is the (moved) time it was made
  const lm = Date.parse(res.headers['last-modified']!.replace(/UTC$/, 'GMT'));
  assert.ok(Math.abs(lm - s.now()) < 10_000, res.headers['last-modified']);
  const f = await feed(gun);
  assert.equal(f.count, 2);
  assert.deepEqual(
    { ...f.records[1]!, CreatedAt: undefined },
    { ...f.records[1]!, CreatedAt: undefined, Version: md.version, SHA256: sha256Hex(res.body), Category: 'update' },
  );
  assert.ok(Math.abs(Date.parse(f.records[1]!.CreatedAt) - s.now()) < 10_000);
});

test('a timestamp that has not expired is served as stored', async () => {
  const gun = newGun('ts-fresh');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  const before = await storedState(s.tg);
  s.advance(13 * DAY_MS);
  assert.equal(Metadata.parse('timestamp', (await get(gun, 'timestamp.json')).body).version, 1);
  assert.deepEqual((await storedState(s.tg)).trust, before.trust);
});

test('GET snapshot.json also re-signs an expired timestamp (the snapshot stays)', async () => {
  const gun = newGun('ts-via-snap');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  const snap = (await get(gun, 'snapshot.json')).body;
  s.advance(15 * DAY_MS);
  assert.ok((await get(gun, 'snapshot.json')).body.equals(snap));
  assert.equal(Metadata.parse('timestamp', (await get(gun, '2.timestamp.json')).body).version, 2);
});

test('an expired server-held snapshot is re-signed on GET: snapshot v+1 (expires now+3y, root meta refreshed) and a timestamp naming it', async () => {
  const gun = newGun('snap-expired');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const oldSnap = Metadata.parse<SnapshotBody>('snapshot', (await get(gun, 'snapshot.json')).body);
  s.advance(4 * YEAR_MS);
  const res = await get(gun, 'snapshot.json');
  assert.equal(res.status, 200);
  const snap = Metadata.parse<SnapshotBody>('snapshot', res.body);
  assert.equal(snap.version, oldSnap.version + 1);
  assertExpiresAt(snap.body.expires, s.now() + 3 * YEAR_MS);
  const root = Metadata.parse<RootBody>('root', (await get(gun, 'root.json')).body);
  snap.verifyThreshold(root.body.keys, root.body.roles.snapshot, 'ErrValidation');
  assert.equal(checkFileMeta('root', repo.root.bytes, snap.body.meta.root!), undefined);
  assert.deepEqual(snap.body.meta.targets, oldSnap.body.meta.targets, 'other entries are kept');
  const ts = Metadata.parse<TimestampBody>('timestamp', (await get(gun, 'timestamp.json')).body);
  assert.equal(ts.version, 2);
  assertExpiresAt(ts.body.expires, s.now() + 14 * DAY_MS);
  assert.equal(checkFileMeta('snapshot', res.body, ts.body.meta.snapshot, true), undefined);
  assert.equal((await feed(gun)).count, 2);
  // the targets the client walks to are still the same bytes
  assert.ok((await get(gun, 'targets.json')).body.equals(repo.targets.bytes));
});

test('GET timestamp.json after 4 years regenerates both, once', async () => {
  const gun = newGun('both');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  s.advance(4 * YEAR_MS);
  const ts = await get(gun, 'timestamp.json');
  const md = Metadata.parse<TimestampBody>('timestamp', ts.body);
  assert.equal(md.version, 2);
  const snap = await get(gun, 'snapshot.json');
  assert.equal(Metadata.parse('snapshot', snap.body).version, 2);
  assert.equal(checkFileMeta('snapshot', snap.body, md.body.meta.snapshot, true), undefined);
  assert.ok((await get(gun, 'timestamp.json')).body.equals(ts.body));
  assert.equal((await feed(gun)).count, 2);
});

test('concurrent GETs of an expired timestamp regenerate it once and all serve the same bytes', async () => {
  const gun = newGun('concurrent-refresh');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  s.advance(15 * DAY_MS);
  const all = await Promise.all(Array.from({ length: 8 }, () => get(gun, 'timestamp.json')));
  for (const r of all) {
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(all[0]!.body));
  }
  assert.equal((await feed(gun)).count, 2);
  assert.equal((await get(gun, '3.timestamp.json')).status, 404);
});

test('client-held snapshot: an expired timestamp is re-signed after 15 days', async () => {
  const gun = newGun('client-ts');
  await initRepo(s.agent, gun);
  s.advance(15 * DAY_MS);
  const md = Metadata.parse<TimestampBody>('timestamp', (await get(gun, 'timestamp.json')).body);
  assert.equal(md.version, 2);
});

test('client-held snapshot expired: the server cannot re-sign it; GET answers 200 with what is stored and writes nothing (Go: 500)', async () => {
  const gun = newGun('client-snap-expired');
  await initRepo(s.agent, gun);
  const before = await storedState(s.tg);
  const ts = (await get(gun, 'timestamp.json')).body;
  s.advance(4 * YEAR_MS);
  const res = await get(gun, 'timestamp.json');
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(ts));
  assert.equal((await get(gun, 'snapshot.json')).status, 200);
  const after = await storedState(s.tg);
  assert.deepEqual(after.trust, before.trust);
  assert.deepEqual(after.changes, before.changes);
});

test('a publish after the clock moved uses the moved clock for new expiries', async () => {
  const gun = newGun('publish-later');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  s.advance(100 * DAY_MS);
  assert.equal((await repo.addTarget('later', 'x')).status, 200);
  const ts = Metadata.parse<TimestampBody>('timestamp', (await get(gun, 'timestamp.json')).body);
  assertExpiresAt(ts.body.expires, s.now() + 14 * DAY_MS);
});
