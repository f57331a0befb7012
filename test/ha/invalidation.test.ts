// Several trustgate instances (own data directories, one PostgreSQL, optionally one Redis, one
// upstream registry): a trust change made on one is enforced by every proxy within 1 s, whoever
// wrote the cached verdict; PostgreSQL restarted under load is survived without a restart; with
// Redis gone, pulls are still verified.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pgDriver from 'pg';
import { startProxy, type StartedProxy } from '../../src/proxy/index.js';
import { APPLICATION_NAME } from '../../src/storage/pg-feed.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { notaryCli } from '../helpers/notary-cli.js';
import {
  makeTempDir,
  removeTempDir,
  startPostgres,
  startRedis,
  startRegistry,
  type PostgresService,
  type RedisService,
  type RegistryService,
} from '../helpers/services.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { ACCEPT_ALL, get } from '../proxy/support.js';

const REGISTRY = 'registry.example.com';
const LIMIT_MS = 1000;

let pg: PostgresService;
let redis: RedisService;
let reg: RegistryService;
let dir: string;
before(async () => {
  [pg, redis, reg, dir] = await Promise.all([startPostgres(), startRedis(), startRegistry(), makeTempDir('ha-invalidation')]);
});
after(async () => {
  await Promise.all([pg?.stop(), redis?.stop(), reg?.stop()]);
  await removeTempDir(dir);
});

interface Instance {
  name: string;
  tg: RunningTrustgate;
  px: StartedProxy;
  /** host:port of the proxy. */
  host: string;
}

/** Three instances, each with its own data directory, on the one PostgreSQL (and Redis when asked). */
async function startInstances(cache: 'memory' | 'redis'): Promise<Instance[] & { stop(): Promise<void> }> {
  const env = {
    TRUSTGATE_DATABASE_URL: pg.url,
    TRUSTGATE_UPSTREAM: reg.url,
    TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
    TRUSTGATE_REGISTRY_NAME: REGISTRY,
    // Far longer than any wait here: only invalidation can explain a verdict that goes.
    TRUSTGATE_VERDICT_TTL_SECONDS: '600',
    ...(cache === 'redis' ? { TRUSTGATE_CACHE_URL: redis.url } : {}),
  };
  const out: Instance[] = [];
  for (const name of ['A', 'B', 'C']) {
    const tg = await startTrustgate({ env });
    const px = await startProxy(tg.app, {}, { host: '127.0.0.1', port: 0 });
    assert.equal(px.cache.kind, cache);
    out.push({ name, tg, px, host: px.url.replace(/^https?:\/\//, '') });
  }
  return Object.assign(out, {
    async stop() {
      for (const i of out) {
        await i.px.close();
        await i.tg.stop();
      }
    },
  });
}

const pull = (i: Instance, repo: string, tag: string) => get(`${i.px.url}/v2/${repo}/manifests/${tag}`);

/** Polls every instance until each answers `status`; returns the ms each took from `since`. */
async function allAnswer(instances: Instance[], repo: string, tag: string, status: number, since: number): Promise<Record<string, number>> {
  const took: Record<string, number> = {};
  await Promise.all(
    instances.map(async (i) => {
      for (let n = 0; n < 200; n++) {
        const r = await pull(i, repo, tag);
        if (r.status === status) return void (took[i.name] = performance.now() - since);
        if (performance.now() - since > 5000) break;
        await sleep(20);
      }
      throw new Error(`${i.name} did not answer ${status} for ${repo}:${tag} within 5 s`);
    }),
  );
  return took;
}

async function api(i: Instance, method: string, p: string, body?: unknown): Promise<{ status: number; body: string }> {
  const r = await fetch(`${i.tg.url}/api/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${i.tg.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: await r.text() };
}

for (const cache of ['memory', 'redis'] as const) {
  test(`HA1 (${cache} caches): a tag revoked on A is refused by A, B and C within 1 s, the verdict written by B`, async () => {
    const all = await startInstances(cache);
    const [a, b, c] = [all[0]!, all[1]!, all[2]!];
    const repo = `ha-${cache}/app`;
    const gun = `${REGISTRY}/${repo}`;
    try {
      const img = await makeImageLayout(path.join(dir, `img-${cache}`), { tag: 'v1' });
      // Pushed (and signed) through A's proxy, with A's own admin token.
      await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v1`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
      // B verifies and caches the verdict; its second pull is answered from the cache.
      assert.equal((await pull(b, repo, 'v1')).status, 200);
      const hits = b.px.cache.hits;
      assert.equal((await pull(b, repo, 'v1')).status, 200);
      assert.equal(b.px.cache.hits, hits + 1, 'B answered from its cached verdict');
      for (const i of [a, c]) assert.equal((await pull(i, repo, 'v1')).status, 200);

      const revoke = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v1`);
      assert.equal(revoke.status, 200, revoke.body);
      const took = await allAnswer(all, repo, 'v1', 403, performance.now());
      console.log(`  ${cache}: revoke on A refused within ms: ${JSON.stringify(took)}`);
      for (const [name, ms] of Object.entries(took)) assert.ok(ms < LIMIT_MS, `${name} refused after ${ms} ms`);

      // A publish through the Notary API of A (the notary CLI, its own keys) is served by B's
      // proxy within 1 s, although B had cached a denial for that tag.
      const cliRepo = `ha-${cache}/cli`;
      const cliGun = `${REGISTRY}/${cliRepo}`;
      await skopeoCopy(img.ref, `docker://${reg.host}/${cliRepo}:v2`);
      const manifest = await get(`${reg.url}/v2/${cliRepo}/manifests/v2`, { accept: ACCEPT_ALL });
      assert.equal(manifest.status, 200);
      const file = path.join(dir, `manifest-${cache}.json`);
      await writeFile(file, manifest.body);
      assert.equal((await pull(b, cliRepo, 'v2')).status, 403, 'no trust data yet: denied (and the denial cached)');
      assert.equal((await pull(b, cliRepo, 'v2')).status, 403);
      const cli = await notaryCli({ server: a.tg.url, token: a.tg.adminToken });
      try {
        await cli.runOk(['init', cliGun]);
        await cli.runOk(['add', cliGun, 'v2', file]);
        await cli.runOk(['publish', cliGun]);
        const served = await allAnswer([b, c], cliRepo, 'v2', 200, performance.now());
        console.log(`  ${cache}: notary publish on A served within ms: ${JSON.stringify(served)}`);
        for (const [name, ms] of Object.entries(served)) assert.ok(ms < LIMIT_MS, `${name} served after ${ms} ms`);
      } finally {
        await cli.cleanup();
      }
    } finally {
      await all.stop();
    }
  });
}

test('HA2: PostgreSQL restarted under load: every instance recovers by itself and enforces changes again', async () => {
  const all = await startInstances('memory');
  const a = all[0]!;
  const repo = 'ha-restart/app';
  const gun = `${REGISTRY}/${repo}`;
  try {
    const img = await makeImageLayout(path.join(dir, 'img-restart'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v1`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v2`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    // Load: every instance pulls and reads trust data without pause; answers are counted.
    const counts = new Map<string, Record<string, number>>();
    let loading = true;
    const load = all.map(async (i) => {
      const c: Record<string, number> = {};
      counts.set(i.name, c);
      while (loading) {
        const [p, t] = await Promise.all([
          pull(i, repo, 'v1'),
          fetch(`${i.tg.url}/v2/${gun}/_trust/tuf/timestamp.json`).then(async (r) => (await r.arrayBuffer(), r.status)),
        ]);
        c[`pull ${p.status}`] = (c[`pull ${p.status}`] ?? 0) + 1;
        c[`tuf ${t}`] = (c[`tuf ${t}`] ?? 0) + 1;
        assert.ok(p.status === 200 || p.status === 503, `a pull answered ${p.status}`);
        assert.ok(t === 200 || t === 503, `a trust data read answered ${t}`);
      }
    });
    await sleep(300);
    await pg.halt();
    // A change attempted while the database is away fails whole, with 503.
    const failed = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v2`);
    assert.equal(failed.status, 503, failed.body);
    await sleep(500);
    await pg.resume();
    const back = performance.now();
    // Every instance serves pulls and answers ready again, without a restart.
    const recovered: Record<string, number> = {};
    await Promise.all(
      all.map(async (i) => {
        for (let n = 0; n < 500; n++) {
          const [p, r] = await Promise.all([pull(i, repo, 'v1'), fetch(`${i.tg.url}/readyz`)]);
          await r.arrayBuffer();
          if (p.status === 200 && r.status === 200) return void (recovered[i.name] = Math.round(performance.now() - back));
          await sleep(20);
        }
        throw new Error(`${i.name} did not recover`);
      }),
    );
    loading = false;
    await Promise.all(load);
    console.log(`  PostgreSQL back: instances served again after ms: ${JSON.stringify(recovered)}`);
    console.log(`  answers during the load: ${JSON.stringify(Object.fromEntries(counts))}`);
    // The failed change left nothing behind: v2 is still served everywhere.
    for (const i of all) assert.equal((await pull(i, repo, 'v2')).status, 200);
    // The change feed is back too: a revoke on A is enforced everywhere within 1 s.
    const revoke = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v1`);
    assert.equal(revoke.status, 200, revoke.body);
    const took = await allAnswer(all, repo, 'v1', 403, performance.now());
    console.log(`  after the restart, revoke refused within ms: ${JSON.stringify(took)}`);
    for (const [name, ms] of Object.entries(took)) assert.ok(ms < LIMIT_MS, `${name} refused after ${ms} ms`);
  } finally {
    await all.stop();
  }
});

test('HA2: a change made while the change feeds are cut is enforced once they are back: the reconnect drops every cache', async () => {
  const all = await startInstances('memory');
  const a = all[0]!;
  const repo = 'ha-missed/app';
  const gun = `${REGISTRY}/${repo}`;
  const admin = new pgDriver.Client({ connectionString: pg.url });
  await admin.connect();
  try {
    const img = await makeImageLayout(path.join(dir, 'img-missed'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v1`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    for (const i of all) for (let n = 0; n < 2; n++) assert.equal((await pull(i, repo, 'v1')).status, 200);
    // Every instance's LISTEN connection is ended; the revoke commits before any is back, so its
    // notification reaches none of them.
    const cut = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [APPLICATION_NAME]);
    assert.equal(cut.rowCount, 3);
    const revoke = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v1`);
    assert.equal(revoke.status, 200, revoke.body);
    const took = await allAnswer(all, repo, 'v1', 403, performance.now());
    console.log(`  revoke missed by the feeds refused within ms: ${JSON.stringify(took)}`);
    for (const [name, ms] of Object.entries(took)) assert.ok(ms < LIMIT_MS, `${name} refused after ${ms} ms`);
    // Refused while the feeds were away (nothing cached was used), and still once they are back.
    await sleep(1500);
    for (const i of all) for (let n = 0; n < 2; n++) assert.equal((await pull(i, repo, 'v1')).status, 403, `${i.name} after the reconnect`);
  } finally {
    await admin.end();
    await all.stop();
  }
});

test('HA2: an instance whose change feed cannot reconnect does not use its cached verdicts', async () => {
  const all = await startInstances('memory');
  const a = all[0]!;
  const repo = 'ha-cutoff/app';
  const gun = `${REGISTRY}/${repo}`;
  // From another database: the one in use cannot be closed to new connections from inside.
  const admin = new pgDriver.Client({ connectionString: pg.url.replace(/\/trustgate$/, '/postgres') });
  await admin.connect();
  try {
    const img = await makeImageLayout(path.join(dir, 'img-cutoff'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v1`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    for (const i of all) for (let n = 0; n < 2; n++) assert.equal((await pull(i, repo, 'v1')).status, 200);
    // No new connection to the database (pooled ones stay): the feeds, once ended, stay away.
    await admin.query('ALTER DATABASE trustgate ALLOW_CONNECTIONS false');
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [APPLICATION_NAME]);
    const revoke = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v1`);
    assert.equal(revoke.status, 200, revoke.body);
    const took = await allAnswer(all, repo, 'v1', 403, performance.now());
    for (const [name, ms] of Object.entries(took)) assert.ok(ms < LIMIT_MS, `${name} refused after ${ms} ms`);
    await sleep(1500);
    for (const i of all) assert.equal((await pull(i, repo, 'v1')).status, 403, `${i.name} while its feed is away`);
  } finally {
    await admin.query('ALTER DATABASE trustgate ALLOW_CONNECTIONS true').catch(() => undefined);
    await admin.end();
    await all.stop();
  }
});

test('HA3: with Redis stopped, pulls are still verified: a signed tag is served, a revoked one refused', async () => {
  const all = await startInstances('redis');
  const [a, b] = [all[0]!, all[1]!];
  const repo = 'ha-noredis/app';
  const gun = `${REGISTRY}/${repo}`;
  try {
    const img = await makeImageLayout(path.join(dir, 'img-noredis'), { tag: 'v1' });
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v1`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    await skopeoCopy(img.ref, `docker://${a.host}/${repo}:v2`, ['--dest-creds', `admin:${a.tg.adminToken}`]);
    for (const i of all) for (const t of ['v1', 'v2']) assert.equal((await pull(i, repo, t)).status, 200);
    await redis.stop();
    const revoke = await api(a, 'DELETE', `/repositories/${encodeURIComponent(gun)}/tags/v1`);
    assert.equal(revoke.status, 200, revoke.body);
    const took = await allAnswer(all, repo, 'v1', 403, performance.now());
    for (const [name, ms] of Object.entries(took)) assert.ok(ms < LIMIT_MS, `${name} refused after ${ms} ms`);
    for (const i of all) assert.equal((await pull(i, repo, 'v2')).status, 200);
    assert.equal((await pull(b, repo, 'unsigned')).status, 403);
  } finally {
    await all.stop();
  }
});
