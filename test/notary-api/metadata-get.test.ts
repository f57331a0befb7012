// GET routes 3-5 (spec §2.1, §2.2, §2.10): current metadata through the hash chain, by version,
// by checksum, and their Cache-Control / Last-Modified / Content-Length headers.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Metadata, type SnapshotBody } from '../../src/core/tuf/metadata.js';
import { initRepo, raw, tufPath, type TufRepo } from '../helpers/tuf-builder.js';
import { assertError, fixture, fixtureHeader, newGun, rawRequest, startServer, NOT_FOUND_DETAIL, type Server } from './support.js';
import { sha256Hex } from '../helpers/util.js';

let s: Server;
let gun: string;
let repo: TufRepo;
before(async () => {
  s = await startServer();
  gun = newGun('get');
  repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  assert.equal((await repo.addDelegation('targets/releases', { publishRole: true })).status, 200);
  assert.equal((await repo.addTarget('v1', 'one', 'targets/releases')).status, 200);
});
after(() => s.stop());

const get = (file: string, g = gun) => raw(s.agent.get(tufPath(g, file)));
const LAST_MODIFIED =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} UTC$/;
const CURRENT_CC = 'public, max-age=300, s-maxage=300, must-revalidate';
const CONSISTENT_CC = 'public, max-age=2592000, s-maxage=2592000';

test('the reference answers carry the same cache headers we send (fixtures a_root, a_1root, a_cs_root)', () => {
  assert.equal(fixtureHeader('a_root', 'Cache-Control'), CURRENT_CC);
  assert.equal(fixtureHeader('a_1root', 'Cache-Control'), CONSISTENT_CC);
  assert.equal(fixtureHeader('a_cs_root', 'Cache-Control'), CONSISTENT_CC);
  assert.match(fixtureHeader('a_root', 'Last-Modified')!, LAST_MODIFIED);
  assert.equal(fixtureHeader('a_root', 'Content-Type'), 'text/plain; charset=utf-8');
});

test('current metadata: 200, exact bytes, current cache headers, Last-Modified in Go layout (`... UTC`), exact Content-Length', async () => {
  for (const role of ['root', 'targets', 'snapshot', 'timestamp', 'targets/releases']) {
    const res = await get(`${role}.json`);
    assert.equal(res.status, 200, role);
    assert.equal(res.headers['cache-control'], CURRENT_CC, role);
    assert.match(res.headers['last-modified']!, LAST_MODIFIED, role);
    assert.equal(res.headers.pragma, undefined);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(Number(res.headers['content-length']), res.body.length);
    assert.equal(res.headers.etag, undefined);
  }
  assert.ok((await get('targets/releases.json')).body.equals(repo.roles.get('targets/releases')!.bytes));
  assert.ok((await get('root.json')).body.equals(repo.root.bytes));
});

test('Last-Modified is the time the row was stored, to the second', async () => {
  const before = Math.floor(s.now() / 1000) * 1000;
  const g = newGun('lastmod');
  await initRepo(s.agent, g, { serverSnapshot: true });
  const afterMs = s.now();
  const lm = Date.parse((await get('root.json', g)).headers['last-modified']!.replace(/UTC$/, 'GMT'));
  assert.ok(lm >= before && lm <= afterMs, `${lm} in [${before}, ${afterMs}]`);
});

test('by version: N.role.json serves version N with consistent cache headers; delegation names keep their slashes', async () => {
  for (const [file, bytes] of [
    ['1.root.json', repo.root.bytes],
    ['2.targets/releases.json', repo.roles.get('targets/releases')!.bytes],
    ['2.targets.json', repo.targets.bytes],
  ] as const) {
    const res = await get(file);
    assert.equal(res.status, 200, file);
    assert.ok(res.body.equals(bytes), file);
    assert.equal(res.headers['cache-control'], CONSISTENT_CC);
    assert.match(res.headers['last-modified']!, LAST_MODIFIED);
  }
  const v1 = await get('1.targets/releases.json');
  assert.equal(Metadata.parse('targets/releases', v1.body).version, 1);
});

test('by version: unknown versions, version 0, huge numbers and other GUNs are 404 with detail {} (fixture a_root_9999)', async () => {
  for (const file of [
    '9999.root.json',
    '0.root.json',
    '99999999999999999999999.root.json',
    '5.targets/releases.json',
    '1.targets/nope.json',
  ]) {
    const res = await get(file);
    assertError(res, 404, fixture('a_root_9999'));
    assert.equal(res.headers['cache-control'], undefined, 'no cache headers on errors');
    assert.equal(res.headers['last-modified'], undefined);
  }
  assertError(await get('1.root.json', newGun('other')), 404, NOT_FOUND_DETAIL);
});

test('by checksum: role.<sha256>.json serves those bytes; consistent cache headers; uppercase hex works too', async () => {
  const snap = Metadata.parse<SnapshotBody>('snapshot', (await get('snapshot.json')).body);
  for (const role of ['root', 'targets', 'targets/releases']) {
    const sum = Buffer.from(snap.body.meta[role]!.hashes.sha256!, 'base64').toString('hex');
    const res = await get(`${role}.${sum}.json`);
    assert.equal(res.status, 200, role);
    assert.equal(sha256Hex(res.body), sum);
    assert.equal(res.headers['cache-control'], CONSISTENT_CC);
    assert.match(res.headers['last-modified']!, LAST_MODIFIED);
  }
  const ts = await get('timestamp.json');
  assert.ok((await get(`timestamp.${sha256Hex(ts.body)}.json`)).body.equals(ts.body));
  const old = await get('1.targets.json');
  assert.ok((await get(`targets.${sha256Hex(old.body).toUpperCase()}.json`)).body.equals(old.body));
});

test('by checksum: the lookup is filtered by role and by GUN', async () => {
  const targets = await get('targets.json');
  const sum = sha256Hex(targets.body);
  assertError(await get(`root.${sum}.json`), 404, fixture('a_root_badsum'));
  assertError(await get(`snapshot.${sum}.json`), 404, NOT_FOUND_DETAIL);
  assertError(await get(`targets/releases.${sum}.json`), 404, NOT_FOUND_DETAIL);
  assertError(await get(`targets.${sum}.json`, newGun('elsewhere')), 404, NOT_FOUND_DETAIL);
  assertError(await get(`root.${'0'.repeat(64)}.json`), 404, fixture('a_root_badsum'));
});

test('by checksum: 96- and 128-hex checksums are routed but never match (only sha256 is indexed)', async () => {
  const root = (await get('root.json')).body;
  const sha512 = createHash('sha512').update(root).digest('hex');
  const sha384 = createHash('sha384').update(root).digest('hex');
  assertError(await get(`root.${sha512}.json`), 404, NOT_FOUND_DETAIL);
  assertError(await get(`root.${sha384}.json`), 404, NOT_FOUND_DETAIL);
  // other lengths are not checksum routes at all: a bare 404
  const bare = await get(`root.${sha256Hex(root).slice(0, 63)}.json`);
  assert.equal(bare.status, 404);
  assert.equal(JSON.parse(bare.body.toString()).errors[0].detail, undefined);
});

test('current: a role the snapshot does not list is 404 with detail {} (fixture a_deleg_missing)', async () => {
  assertError(await get('targets/nope.json'), 404, fixture('a_deleg_missing'));
  assertError(await get('targets/releases/x.json'), 404, fixture('a_deleg_missing'));
});

test('current: an unknown GUN is 404 for every role (fixtures unknown_gun_*)', async () => {
  const g = 'localhost:5000/library/nosuch';
  assertError(await get('root.json', g), 404, fixture('unknown_gun_root'));
  assertError(await get('timestamp.json', g), 404, fixture('unknown_gun_timestamp'));
  assertError(await get('snapshot.json', g), 404, fixture('unknown_gun_snapshot'));
  assertError(await get('targets.json', g), 404, NOT_FOUND_DETAIL);
});

test('current: resolved through timestamp → snapshot → role, not simply the newest stored row', async () => {
  const g = newGun('chain');
  const r = await initRepo(s.agent, g, { serverSnapshot: true });
  assert.equal((await r.addTarget('a', 'a')).status, 200);
  // Store a newer targets row behind the server's back, outside the chain.
  const stray = Buffer.from('{"signed":{},"signatures":[]}');
  await s.tg.app.store.commit(g, [{ role: 'targets', version: 50, bytes: stray }], new Date());
  const cur = await get('targets.json', g);
  assert.equal(cur.status, 200);
  assert.ok(cur.body.equals(r.targets.bytes), 'current targets is the one the snapshot names');
  assert.ok((await get('50.targets.json', g)).body.equals(stray), 'the stray row is still reachable by version');
});

test('stored bytes go out unchanged whatever they hold: every byte value, small files and large ones', async () => {
  // Small files are written as a latin1 string with the headers, large ones as the buffer
  // (src/notary/handler.ts, ReadyFile.text): both must give back exactly the stored bytes,
  // including non-ASCII UTF-8 and bytes that are not UTF-8 at all.
  const g = newGun('bytes');
  await initRepo(s.agent, g, { serverSnapshot: true });
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const utf8 = Buffer.from('{"signed":{"name":"café ☃ 𝄞"},"signatures":[]}', 'utf8');
  const large = Buffer.concat(Array.from({ length: 100 }, () => every)); // 25,600 bytes
  const cases = [
    [60, every],
    [61, utf8],
    [62, large],
  ] as const;
  for (const [v, bytes] of cases) await s.tg.app.store.commit(g, [{ role: 'targets', version: v, bytes }], new Date());
  for (let round = 0; round < 2; round++) {
    // The second round is answered from the ready cache.
    for (const [v, bytes] of cases) {
      const res = await get(`${v}.targets.json`, g);
      assert.equal(res.status, 200);
      assert.equal(Number(res.headers['content-length']), bytes.length, `version ${v}`);
      assert.ok(res.body.equals(bytes), `version ${v}, round ${round}: the stored bytes exactly`);
      assert.ok((await get(`targets.${sha256Hex(bytes)}.json`, g)).body.equals(bytes), `by checksum, version ${v}`);
    }
  }
});

test('GET never regenerates anything when nothing is due (same bytes, no new versions)', async () => {
  const a = await get('timestamp.json');
  const b = await get('timestamp.json');
  assert.ok(a.body.equals(b.body));
  assertError(await get(`${Metadata.parse('timestamp', a.body).version + 1}.timestamp.json`), 404, NOT_FOUND_DETAIL);
});

test('a delegation whose name contains `_trust/tuf` is served under its full name', async () => {
  const g = newGun('trustname');
  const r = await initRepo(s.agent, g, { serverSnapshot: true });
  assert.equal((await r.addDelegation('targets/_trust', { publishRole: true })).status, 200);
  assert.equal((await r.addDelegation('targets/_trust/tuf', { publishRole: true })).status, 200);
  assert.equal((await r.addDelegation('targets/_trust/tuf/x', { publishRole: true })).status, 200);
  const res = await get('targets/_trust/tuf/x.json', g);
  assert.equal(res.status, 200, res.body.toString());
  assert.ok(res.body.equals(r.roles.get('targets/_trust/tuf/x')!.bytes));
  assert.ok((await get('1.targets/_trust/tuf/x.json', g)).body.equals(res.body));
});

test('conditional and range request headers are ignored: always a full 200', async () => {
  const cur = await get('root.json');
  const res = await rawRequest(s, 'GET', tufPath(gun, 'root.json'), {
    headers: { 'If-Modified-Since': cur.headers['last-modified']!.replace('UTC', 'GMT'), 'If-None-Match': '*', Range: 'bytes=0-3' },
  });
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(cur.body));
});

test('TRUSTGATE_CACHE_MAX_AGE_CURRENT=0: current metadata gets `max-age=0, no-cache, no-store` + Pragma; consistent keeps its max-age', async () => {
  const s2 = await startServer({ TRUSTGATE_CACHE_MAX_AGE_CURRENT: '0', TRUSTGATE_CACHE_MAX_AGE_CONSISTENT: '60' });
  try {
    const g = newGun('nocache');
    await initRepo(s2.agent, g, { serverSnapshot: true });
    const cur = await raw(s2.agent.get(tufPath(g, 'root.json')));
    assert.equal(cur.status, 200);
    assert.equal(cur.headers['cache-control'], 'max-age=0, no-cache, no-store');
    assert.equal(cur.headers.pragma, 'no-cache');
    assert.match(cur.headers['last-modified']!, LAST_MODIFIED);
    const v = await raw(s2.agent.get(tufPath(g, '1.root.json')));
    assert.equal(v.headers['cache-control'], 'public, max-age=60, s-maxage=60');
    assert.equal(v.headers.pragma, undefined);
    const c = await raw(s2.agent.get(tufPath(g, `root.${sha256Hex(v.body)}.json`)));
    assert.equal(c.headers['cache-control'], 'public, max-age=60, s-maxage=60');
  } finally {
    await s2.stop();
  }
});

test('TRUSTGATE_CACHE_MAX_AGE_CONSISTENT=0 disables caching of consistent URLs only', async () => {
  const s2 = await startServer({ TRUSTGATE_CACHE_MAX_AGE_CONSISTENT: '0' });
  try {
    const g = newGun('nocache2');
    await initRepo(s2.agent, g, { serverSnapshot: true });
    const v = await raw(s2.agent.get(tufPath(g, '1.root.json')));
    assert.equal(v.headers['cache-control'], 'max-age=0, no-cache, no-store');
    assert.equal(v.headers.pragma, 'no-cache');
    const cur = await raw(s2.agent.get(tufPath(g, 'root.json')));
    assert.equal(cur.headers['cache-control'], CURRENT_CC);
  } finally {
    await s2.stop();
  }
});
