// The verdict cache: identical concurrent verifications run once, verdicts are bounded by the
// expiry of the data they rest on and dropped on trust changes, and the Redis backend (a real
// redis-server) is shared by two proxies.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/log.js';
import { BoundedMap, ManifestCache, VerdictCache } from '../../src/proxy/cache.js';
import type { Verdict } from '../../src/proxy/verifier.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir, runCommandOk, startRedis, startRegistry, type RedisService, type RegistryService } from '../helpers/services.js';
import { denied, get, startStack } from './support.js';

const log = createLogger('error');
const verdict = (ok: boolean, expiresAtMs?: number): Verdict => ({ ok, signers: [], evidence: { gun: 'g', reference: 'r', checkedAt: '' }, ...(expiresAtMs ? { expiresAtMs } : {}) });

test('identical concurrent verifications run once; unavailable verdicts are not kept', async () => {
  const cache = await VerdictCache.create({ max: 10, maxTtlMs: 60_000, now: Date.now, log });
  let runs = 0;
  const compute = async () => {
    runs++;
    await sleep(30);
    return verdict(true);
  };
  const all = await Promise.all(Array.from({ length: 20 }, () => cache.get('g', 'tag:v1', compute)));
  assert.equal(runs, 1);
  assert.ok(all.every((v) => v.ok));
  await cache.get('g', 'tag:v1', compute);
  assert.equal(runs, 1, 'served from the cache');
  cache.invalidate('g');
  await cache.get('g', 'tag:v1', compute);
  assert.equal(runs, 2, 'dropped on a trust change');
  let down = 0;
  const unavailable = async () => (down++, { ...verdict(false), reason: 'unavailable' as const });
  await cache.get('g', 'tag:x', unavailable);
  await cache.get('g', 'tag:x', unavailable);
  assert.equal(down, 2);
});

test('a verdict is not used past the expiry of its trust data, and a change during verification is not stored', async () => {
  let now = 1_000_000;
  const cache = await VerdictCache.create({ max: 10, maxTtlMs: 3_600_000, now: () => now, log });
  let runs = 0;
  await cache.get('g', 'k', async () => (runs++, verdict(true, now + 1000)));
  await cache.get('g', 'k', async () => (runs++, verdict(true, now + 1000)));
  assert.equal(runs, 1);
  now += 2000;
  await cache.get('g', 'k', async () => (runs++, verdict(true, now + 1000)));
  assert.equal(runs, 2, 'expired verdicts are verified again');
  await cache.get('g', 'k2', async () => {
    runs++;
    cache.invalidate('g'); // trust data changed while verifying
    return verdict(true, now + 1000);
  });
  await cache.get('g', 'k2', async () => (runs++, verdict(true, now + 1000)));
  assert.equal(runs, 4);
  const m = new BoundedMap<string, number>(2);
  m.set('a', 1).set('b', 2).set('c', 3);
  assert.deepEqual([...m.keys()], ['b', 'c']);
});

test('the manifest cache keeps checked bytes within its budget and TTL, per Accept, and forgets a repository', () => {
  let now = 0;
  const c = new ManifestCache(1600, 1000, () => now);
  const b = (n: number, fill = 1) => Buffer.alloc(n, fill);
  c.set('a/x', 'sha256:1', 'json', 'application/json', b(100));
  assert.equal(c.get('a/x', 'sha256:1', 'json')?.body.length, 100);
  assert.equal(c.get('a/x', 'sha256:1', 'other'), undefined, 'another Accept is another entry');
  assert.equal(c.get('a/y', 'sha256:1', 'json'), undefined, 'another repository is another entry');
  c.set('a/x', 'sha256:big', 'json', undefined, b(101));
  assert.equal(c.get('a/x', 'sha256:big', 'json'), undefined, 'an entry over 1/16 of the budget is not kept');
  for (let i = 2; i <= 16; i++) c.set('a/y', `sha256:${i}`, 'json', undefined, b(100, i));
  assert.equal(c.size, 16);
  c.set('a/y', 'sha256:17', 'json', undefined, b(100));
  assert.equal(c.size, 16, 'the oldest left to make room');
  assert.equal(c.get('a/x', 'sha256:1', 'json'), undefined);
  assert.equal(c.get('a/y', 'sha256:2', 'json')?.body[0], 2);
  c.forget('a/y');
  assert.equal(c.size, 0);
  c.set('a/x', 'sha256:1', 'json', 'application/json', b(100));
  now += 1001;
  assert.equal(c.get('a/x', 'sha256:1', 'json'), undefined, 'expired');
  const off = new ManifestCache(0, 1000, () => now);
  off.set('a/x', 'sha256:1', 'json', undefined, b(1));
  assert.equal(off.get('a/x', 'sha256:1', 'json'), undefined);
});

let redis: RedisService;
let reg: RegistryService;
let dir: string;
before(async () => {
  [redis, reg, dir] = await Promise.all([startRedis(), startRegistry(), makeTempDir('proxy-cache')]);
});
after(async () => {
  await redis?.stop();
  await reg?.stop();
  await removeTempDir(dir);
});

test('with TRUSTGATE_CACHE_URL verdicts live in Redis and are dropped on trust changes', async () => {
  const s = await startStack({ reg, env: { TRUSTGATE_CACHE_URL: redis.url } });
  try {
    assert.equal(s.px.cache.kind, 'redis');
    const img = await makeImageLayout(path.join(dir, 'a'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${s.host}/cached/app:v1`, ['--dest-creds', s.creds]);
    denied(await get(`${s.px.url}/v2/cached/app/manifests/v2`));
    assert.equal((await get(`${s.px.url}/v2/cached/app/manifests/v1`)).status, 200);
    const keys = await runCommandOk('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*']);
    const stored = keys.stdout.split('\n').filter((k) => k.includes('cached/app'));
    assert.ok(stored.some((k) => k.includes('tag:v1')), keys.stdout);
    assert.ok(stored.some((k) => k.includes('tag:v2')), keys.stdout);
    const hits = s.px.cache.hits;
    assert.equal((await get(`${s.px.url}/v2/cached/app/manifests/v1`)).status, 200);
    assert.equal(s.px.cache.hits, hits + 1);
    // signing v2 drops the cached denial at once
    const b = await makeImageLayout(path.join(dir, 'b'), { tag: 'v2' });
    await skopeoCopy(b.ref, `docker://${s.host}/cached/app:v2`, ['--dest-creds', s.creds]);
    assert.equal((await get(`${s.px.url}/v2/cached/app/manifests/v2`)).status, 200);
  } finally {
    await s.stop();
  }
});
