// The verdict cache: identical concurrent verifications run once, verdicts are bounded by the
// expiry of the data they rest on and dropped on trust changes, and the Redis backend (a real
// redis-server) is shared by two proxies.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/observability/log.js';
import { BoundedMap } from '../../src/core/bounded-map.js';
import { ManifestCache, VerdictCache } from '../../src/proxy/cache.js';
import { startProxy } from '../../src/proxy/index.js';
import type { Verdict } from '../../src/trust/verifier.js';
import { TrustService } from '../../src/trust/service.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import {
  makeTempDir,
  removeTempDir,
  runCommandOk,
  startRedis,
  startRegistry,
  type RedisService,
  type RegistryService,
} from '../helpers/services.js';
import { denied, get, startStack } from './support.js';
import { editTargets } from '../helpers/trust-edits.js';

const log = createLogger('error');
const verdict = (ok: boolean, expiresAtMs?: number): Verdict => ({
  ok,
  signers: [],
  evidence: { gun: 'g', reference: 'r', checkedAt: '' },
  ...(expiresAtMs ? { expiresAtMs } : {}),
});

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
    assert.ok(
      stored.some((k) => k.includes('tag:v1')),
      keys.stdout,
    );
    assert.ok(
      stored.some((k) => k.includes('tag:v2')),
      keys.stdout,
    );
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

test('V13: a revoke drops verdicts written by another instance at once', async () => {
  // Two proxy instances on one database and one Redis: B has its own trust service (another
  // process), so it never hears A's trust changes; only the shared cache can carry them.
  const env = { TRUSTGATE_CACHE_URL: redis.url, TRUSTGATE_REGISTRY_NAME: 'registry.example.com', TRUSTGATE_VERDICT_TTL_SECONDS: '600' };
  const a = await startStack({ reg, env });
  const b = await startProxy(a.tg.app, { trust: new TrustService(a.tg.app.trust.store, a.tg.app.keys) }, { host: '127.0.0.1', port: 0 });
  try {
    assert.equal(b.cache.kind, 'redis');
    const img = await makeImageLayout(path.join(dir, 'v13'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${a.host}/v13/app:v1`, ['--dest-creds', a.creds]);
    const gun = 'registry.example.com/v13/app';
    // B verifies and writes the verdict; A then answers from it.
    assert.equal((await get(`${b.url}/v2/v13/app/manifests/v1`)).status, 200);
    const hits = a.px.cache.hits;
    assert.equal((await get(`${a.px.url}/v2/v13/app/manifests/v1`)).status, 200);
    assert.equal(a.px.cache.hits, hits + 1, 'A used the verdict B wrote');
    // Revoked through A: neither instance serves it any more, B first.
    await editTargets(a.tg.app, gun, 'targets', (t) => void delete t.targets.v1);
    assert.equal(denied(await get(`${b.url}/v2/v13/app/manifests/v1`)).detail.reason, 'not-signed');
    assert.equal(denied(await get(`${a.px.url}/v2/v13/app/manifests/v1`)).detail.reason, 'not-signed');
    // Signed again (through A's push), both serve it again at once: the denials are dropped too.
    await skopeoCopy(img.ref, `docker://${a.host}/v13/app:v1`, ['--dest-creds', a.creds]);
    assert.equal((await get(`${b.url}/v2/v13/app/manifests/v1`)).status, 200);
    assert.equal((await get(`${a.px.url}/v2/v13/app/manifests/v1`)).status, 200);
  } finally {
    await b.close();
    await a.stop();
  }
});

test('the Redis verdict cache: a verification that began before an invalidation is not stored, and Redis away costs only verifications', async () => {
  const mk = () => VerdictCache.create({ url: redis.url, max: 10, maxTtlMs: 60_000, now: Date.now, log });
  const [one, two] = await Promise.all([mk(), mk()]);
  try {
    let runs = 0;
    let started!: () => void;
    const begun = new Promise<void>((r) => (started = r));
    const slow = async () => {
      runs++;
      started();
      await sleep(50);
      return verdict(true);
    };
    // `two` starts a verification; `one` invalidates the GUN meanwhile: the result is not stored.
    const running = two.get('race/gun', 'tag:v1', slow);
    await begun;
    await one.invalidate('race/gun');
    assert.ok((await running).ok);
    await two.get('race/gun', 'tag:v1', slow);
    assert.equal(runs, 2, 'the verdict computed across the invalidation was not kept');
    await one.get('race/gun', 'tag:v1', slow);
    assert.equal(runs, 2, 'the one computed after it was');
  } finally {
    await one.close();
    await two.close();
  }
  const away = await VerdictCache.create({ url: 'redis://127.0.0.1:1', max: 10, maxTtlMs: 60_000, now: Date.now, log });
  try {
    let runs = 0;
    const v = await away.get('g', 'k', async () => (runs++, verdict(true)));
    assert.ok(v.ok);
    await away.invalidate('g');
    await away.get('g', 'k', async () => (runs++, verdict(true)));
    assert.equal(runs, 2);
  } finally {
    await away.close();
  }
});
