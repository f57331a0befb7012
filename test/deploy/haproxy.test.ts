// Three trustgate processes (separate data directories, one PostgreSQL for the store and the keyv
// keystore, one docker-registry upstream) behind a real HAProxy running deploy/haproxy.cfg: the
// balancer reaches all three, the notary CLI publishes and skopeo pulls through it, and an
// instance killed with `kill -9` is taken out while the others keep serving.
//
// Tokens are in PostgreSQL: the admin token the first instance made works on all three.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHaproxy, type RunningHaproxy } from '../helpers/haproxy.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { freePort } from '../helpers/ports.js';
import {
  makeTempDir,
  removeTempDir,
  startPostgres,
  startRegistry,
  type PostgresService,
  type RegistryService,
} from '../helpers/services.js';
import { startTrustgateProcess, type TrustgateProcess } from '../helpers/trustgate.js';

const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

interface Instance {
  name: string;
  tg: TrustgateProcess;
  api: string;
  proxy: string;
}

/** One GET; status and the instance HAProxy sent it to (0 and '' when it failed outright). */
async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; instance: string }> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    return { status: res.status, instance: res.headers.get('x-trustgate-instance') ?? '' };
  } catch {
    return { status: 0, instance: '' };
  }
}

describe('three trustgate instances behind HAProxy (deploy/haproxy.cfg)', () => {
  let dir: string;
  let pg: PostgresService | undefined;
  let reg: RegistryService | undefined;
  let lb: RunningHaproxy | undefined;
  const instances: Instance[] = [];
  let admin = '';
  let gun = '';
  let image: ImageLayout;

  before(async () => {
    dir = await makeTempDir('ha-lb');
    pg = await startPostgres();
    reg = await startRegistry();
    const ports = { api: await freePort(), proxy: await freePort(), stats: await freePort() };
    const shared = {
      TRUSTGATE_DATABASE_URL: pg.url,
      TRUSTGATE_KEYSTORE: 'keyv',
      TRUSTGATE_KEYSTORE_URL: pg.url,
      TRUSTGATE_KEY_PASSPHRASE: 'ha-test-passphrase',
      TRUSTGATE_UPSTREAM: reg.url,
      // Every instance names GUNs after the address clients pull from: the balancer's.
      TRUSTGATE_REGISTRY_NAME: `127.0.0.1:${ports.proxy}`,
      TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
      TRUSTGATE_LOG_LEVEL: 'warn',
    };
    // One after another: the first creates the schema, the keystore and the admin token.
    for (const name of ['tg1', 'tg2', 'tg3']) {
      const data = path.join(dir, name, 'data');
      await fsp.mkdir(data, { recursive: true });
      const api = `127.0.0.1:${await freePort()}`;
      const proxy = `127.0.0.1:${await freePort()}`;
      const tg = await startTrustgateProcess(
        {
          ...shared,
          TRUSTGATE_DATA_DIR: data,
          TRUSTGATE_KEYS_DIR: path.join(dir, name, 'keys'),
          TRUSTGATE_LISTEN: api,
          TRUSTGATE_PROXY_LISTEN: proxy,
        },
        path.join(dir, `${name}.log`),
        { timeoutMs: 90_000 },
      );
      instances.push({ name, tg, api, proxy });
    }
    admin = instances[0]!.tg.adminToken!;
    assert.ok(admin, 'the first instance made an admin token');
    lb = await startHaproxy(
      instances.map((i) => ({ name: i.name, api: i.api, proxy: i.proxy })),
      { ports },
    );
    gun = `${lb.proxyHost}/team/app`;
    image = await makeImageLayout(path.join(dir, 'image'), { tag: 'v1' });
    await skopeoCopy(image.ref, `docker://${reg.host}/team/app:v1`);
  });

  after(async () => {
    await lb?.stop();
    for (const i of instances) await i.tg.proc.stop();
    await reg?.stop();
    await pg?.stop();
    if (dir) await removeTempDir(dir);
  });

  test('requests through the balancer reach all three instances, on both frontends', async () => {
    const api = new Set<string>();
    const proxy = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const a = await get(`${lb!.apiUrl}/_notary_server/health`);
      assert.equal(a.status, 200);
      api.add(a.instance);
      const p = await get(`http://${lb!.proxyHost}/v2/`); // the registry API check: a challenge
      assert.equal(p.status, 401);
      proxy.add(p.instance);
    }
    assert.deepEqual([...api].sort(), ['tg1', 'tg2', 'tg3']);
    assert.deepEqual([...proxy].sort(), ['tg1', 'tg2', 'tg3']);
  });

  test('the notary CLI publishes through the balancer, and every instance serves the signed pull', async () => {
    const cli = await notaryCli({ server: lb!.apiUrl, token: admin });
    const reader = await notaryCli({ server: lb!.apiUrl });
    const pulled = path.join(dir, 'pulled');
    try {
      const hex = image.manifest.digest.slice('sha256:'.length);
      await cli.runOk(['init', gun, '-p']);
      await cli.runOk(['addhash', gun, 'v1', String(image.manifest.size), '--sha256', hex]);
      await cli.runOk(['publish', gun]);
      const listed = parseNotaryList((await reader.runOk(['list', gun])).stdout);
      assert.deepEqual(
        listed.map((t) => [t.name, t.digest, t.size]),
        [['v1', hex, image.manifest.size]],
      );
      // A real pull through the balancer, then each instance's own verdict.
      await skopeoCopy(`docker://${gun}:v1`, `oci:${pulled}:v1`);
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const r = await get(`http://${lb!.proxyHost}/v2/team/app/manifests/v1`, { accept: MANIFEST_ACCEPT });
        assert.equal(r.status, 200, `pull ${i} (${r.instance})`);
        seen.add(r.instance);
      }
      assert.deepEqual([...seen].sort(), ['tg1', 'tg2', 'tg3']);
      // An unsigned tag stays refused through every instance.
      await skopeoCopy(image.ref, `docker://${reg!.host}/team/app:unsigned`);
      for (let i = 0; i < 3; i++) assert.equal((await get(`http://${lb!.proxyHost}/v2/team/app/manifests/unsigned`)).status, 403);
    } finally {
      await cli.cleanup();
      await reader.cleanup();
    }
  });

  test('kill -9 of one instance under load: HAProxy takes it out, the others keep serving', async (t) => {
    const victim = instances[2]!;
    const urls = [`${lb!.apiUrl}/v2/${gun}/_trust/tuf/targets.json`, `http://${lb!.proxyHost}/v2/team/app/manifests/v1`];
    const results: { at: number; status: number; instance: string }[] = [];
    const start = Date.now();
    const killAt = 1500;
    const end = start + 6000;
    // Bounded: 4 clients, each until `end` and at most 2,000 requests.
    const client = async (n: number) => {
      for (let i = 0; i < 2000 && Date.now() < end; i++) {
        const r = await get(urls[(n + i) % 2]!, { accept: MANIFEST_ACCEPT });
        results.push({ at: Date.now() - start, ...r });
      }
    };
    let outAfterMs = -1;
    const killer = (async () => {
      await sleep(killAt);
      process.kill(victim.tg.proc.child.pid!, 'SIGKILL');
      const killed = Date.now();
      await lb!.waitStatus('trustgate_api', victim.name, 'DOWN', 10_000);
      outAfterMs = Date.now() - killed;
    })();
    await Promise.all([client(0), client(1), client(2), client(3), killer]);
    await lb!.waitStatus('trustgate_proxy', victim.name, 'DOWN', 10_000);
    const failed = results.filter((r) => r.status !== 200);
    const afterKill = results.filter((r) => r.at > killAt + 3000);
    t.diagnostic(
      `${results.length} requests in 6 s, ${failed.length} failed (${failed.map((f) => `${f.status}@${f.at}ms`).join(' ') || 'none'}); ` +
        `${results.filter((r) => r.at > killAt && r.instance === victim.name).length} answered by ${victim.name} after the kill; ` +
        `HAProxy marked it DOWN ${outAfterMs} ms after the kill`,
    );
    // Only requests in flight on the killed instance may fail (HAProxy retries those GETs elsewhere).
    assert.ok(failed.length <= 4, `failed: ${JSON.stringify(failed)}`);
    assert.ok(results.length > 50, `load too small: ${results.length}`);
    assert.ok(afterKill.length > 0 && afterKill.every((r) => r.status === 200 && r.instance !== victim.name), 'served by the others');
    const status = await lb!.status();
    assert.match(status.trustgate_api!.tg1!, /^UP/);
    assert.match(status.trustgate_api!.tg2!, /^UP/);
  });
});
