// Failover under load: three trustgate processes (own data directories) share one PostgreSQL
// (store, keyv keystore, tokens, audit) and one Redis behind a real HAProxy (deploy/haproxy.cfg).
// A mixed load runs through the balancer (notary CLI publishes, signing API calls, proxy pulls)
// while one instance is killed with kill -9 and restarted, and later while PostgreSQL restarts.
// Afterwards no accepted publish is lost or applied twice, versions rise one by one, and the only
// failed requests are those in flight on the killed instance or sent while the database was down.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startHaproxy, type RunningHaproxy } from '../helpers/haproxy.js';
import { notaryCli, type NotaryCli } from '../helpers/notary-cli.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import { freePort } from '../helpers/ports.js';
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
import { startTrustgateProcess, type TrustgateProcess } from '../helpers/trustgate.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

interface Instance {
  name: string;
  env: Record<string, string>;
  log: string;
  tg: TrustgateProcess;
}

/** One request of the load: when it ran, how it ended, and which instance answered. */
interface Outcome {
  kind: 'sign' | 'notary' | 'pull';
  start: number;
  end: number;
  ok: boolean;
  status: number;
  instance: string;
  /** sign and notary: the tag and digest it published. */
  tag?: string;
  digest?: string;
}

const hexDigest = () => randomBytes(32).toString('hex');

describe('failover under a mixed load through HAProxy', () => {
  let dir: string;
  let pgs: PostgresService;
  let redis: RedisService;
  let reg: RegistryService;
  let lb: RunningHaproxy;
  const instances: Instance[] = [];
  let admin: string;
  let image: ImageLayout;
  let signGun: string;
  let notaryGun: string;
  let notary: NotaryCli;
  let t0 = 0;
  /** How many targets versions the signed repository had when the current load began. */
  let targetsBefore = 0;

  before(async () => {
    dir = await makeTempDir('ha-failover');
    [pgs, redis, reg] = await Promise.all([startPostgres(), startRedis(), startRegistry()]);
    const ports = { api: await freePort(), proxy: await freePort(), stats: await freePort() };
    const shared = {
      TRUSTGATE_DATABASE_URL: pgs.url,
      TRUSTGATE_KEYSTORE: 'keyv',
      TRUSTGATE_KEYSTORE_URL: pgs.url,
      TRUSTGATE_KEY_PASSPHRASE: 'ha-failover-passphrase',
      TRUSTGATE_CACHE_URL: redis.url,
      TRUSTGATE_UPSTREAM: reg.url,
      TRUSTGATE_REGISTRY_NAME: `127.0.0.1:${ports.proxy}`,
      TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
      TRUSTGATE_LOG_LEVEL: 'warn',
    };
    for (const name of ['tg1', 'tg2', 'tg3']) {
      const env = {
        ...shared,
        TRUSTGATE_DATA_DIR: path.join(dir, name, 'data'),
        TRUSTGATE_KEYS_DIR: path.join(dir, name, 'keys'),
        TRUSTGATE_LISTEN: `127.0.0.1:${await freePort()}`,
        TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${await freePort()}`,
      };
      await fsp.mkdir(env.TRUSTGATE_DATA_DIR, { recursive: true });
      const log = path.join(dir, `${name}.log`);
      instances.push({ name, env, log, tg: await startTrustgateProcess(env, log, { timeoutMs: 90_000 }) });
    }
    admin = instances[0]!.tg.adminToken!;
    assert.ok(admin, 'the first instance made the admin token');
    lb = await startHaproxy(
      instances.map((i) => ({ name: i.name, api: i.env.TRUSTGATE_LISTEN!, proxy: i.env.TRUSTGATE_PROXY_LISTEN! })),
      { ports },
    );

    // One repository signed through the signing API, one published by the notary CLI, and a
    // signed image the pullers fetch.
    signGun = `${lb.proxyHost}/team/signed`;
    notaryGun = `${lb.proxyHost}/team/notary`;
    image = await makeImageLayout(path.join(dir, 'image'), { tag: 'v1' });
    await skopeoCopy(image.ref, `docker://${reg.host}/team/signed:v1`);
    const created = await api('POST', '/repositories', { gun: signGun, rootKey: 'keystore' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const v1 = await api('POST', '/signing/sign', { gun: signGun, tag: 'v1', digest: image.manifest.digest, size: image.manifest.size });
    assert.equal(v1.status, 201, JSON.stringify(v1.body));
    notary = await notaryCli({ server: lb.apiUrl, token: admin });
    await notary.runOk(['init', notaryGun, '-p']);
  });

  after(async () => {
    await notary?.cleanup();
    await lb?.stop();
    for (const i of instances) await i.tg.proc.stop();
    await Promise.all([reg?.stop(), redis?.stop(), pgs?.stop()]);
    if (dir) await removeTempDir(dir);
  });

  async function api(method: string, p: string, body?: unknown): Promise<{ status: number; body: any; instance: string }> {
    const r = await fetch(`${lb.apiUrl}/api/v1${p}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined, instance: r.headers.get('x-trustgate-instance') ?? '' };
  }

  /** Runs the mixed load beside `during`, until `ms` has passed and `during` has been over for 2 s (each loop bounded). */
  async function load(ms: number, during: () => Promise<void>): Promise<Outcome[]> {
    const out: Outcome[] = [];
    targetsBefore = (await storedVersions(signGun, 'targets')).length;
    t0 = Date.now();
    let stop = Infinity;
    const around = async () => {
      try {
        await during();
      } finally {
        stop = Math.max(t0 + ms, Date.now() + 2000);
      }
    };
    const now = () => Date.now() - t0;
    // A failed request is followed by a short pause, so an outage does not use up a loop's bound.
    const paced = async (o: Outcome) => {
      out.push(o);
      if (!o.ok) await sleep(25);
    };
    let n = 0;
    const signer = async () => {
      for (let i = 0; i < 5000 && Date.now() < stop; i++) {
        const tag = `s${++n}-${randomBytes(3).toString('hex')}`;
        const digest = `sha256:${hexDigest()}`;
        const start = now();
        const r = await api('POST', '/signing/sign', { gun: signGun, tag, digest, size: 100 }).catch(() => ({
          status: 0,
          instance: '',
          body: undefined,
        }));
        await paced({ kind: 'sign', start, end: now(), ok: r.status === 201, status: r.status, instance: r.instance, tag, digest });
      }
    };
    const publisher = async () => {
      for (let i = 0; i < 500 && Date.now() < stop; i++) {
        const tag = `n${++n}`;
        const hex = hexDigest();
        const start = now();
        const add = await notary.run(['addhash', notaryGun, tag, '100', '--sha256', hex]);
        const pub = add.code === 0 ? await notary.run(['publish', notaryGun]) : add;
        if (pub.code !== 0) await notary.run(['reset', notaryGun, '--all']); // a failed publish leaves its change staged
        out.push({
          kind: 'notary',
          start,
          end: now(),
          ok: pub.code === 0,
          status: pub.code ?? -1,
          instance: '',
          tag,
          digest: `sha256:${hex}`,
        });
      }
    };
    const puller = async () => {
      for (let i = 0; i < 20_000 && Date.now() < stop; i++) {
        const start = now();
        let status = 0;
        let instance = '';
        try {
          const r = await fetch(`http://${lb.proxyHost}/v2/team/signed/manifests/v1`, {
            headers: { accept: ACCEPT },
            signal: AbortSignal.timeout(10_000),
          });
          await r.arrayBuffer();
          status = r.status;
          instance = r.headers.get('x-trustgate-instance') ?? '';
        } catch {
          // status 0: no answer
        }
        await paced({ kind: 'pull', start, end: now(), ok: status === 200, status, instance });
      }
    };
    await Promise.all([signer(), signer(), publisher(), puller(), puller(), around()]);
    return out;
  }

  /** The tags of a GUN's newest targets.json, as tag → sha256 hex, read from every instance directly. */
  async function targetsEverywhere(gun: string): Promise<Map<string, string>[]> {
    return Promise.all(
      instances.map(async (i) => {
        const r = await fetch(`http://${i.env.TRUSTGATE_LISTEN}/v2/${gun}/_trust/tuf/targets.json`);
        assert.equal(r.status, 200, `${i.name}: targets.json`);
        const body = (await r.json()) as { signed: { targets: Record<string, { hashes: { sha256: string } }> } };
        return new Map(Object.entries(body.signed.targets).map(([t, v]) => [t, Buffer.from(v.hashes.sha256, 'base64').toString('hex')]));
      }),
    );
  }

  async function query<T extends pg.QueryResultRow>(sql: string, args: unknown[]): Promise<T[]> {
    const c = new pg.Client({ connectionString: pgs.url });
    await c.connect();
    try {
      return (await c.query<T>(sql, args)).rows;
    } finally {
      await c.end();
    }
  }

  /** The error lines the instances logged, for a failure's message. */
  const errorsLogged = () =>
    instances
      .flatMap((i) =>
        readFileSync(i.log, 'utf8')
          .split('\n')
          .filter((l) => /"level":"(error|warn)"/.test(l) && !/store is unavailable|readiness check/.test(l))
          .map((l) => `${i.name}: ${l}`),
      )
      .slice(-20)
      .join('\n');

  /** The stored versions of a role, lowest first. */
  const storedVersions = async (gun: string, role: string) =>
    (await query<{ version: string }>('SELECT version FROM tuf_files WHERE gun = $1 AND role = $2 ORDER BY version', [gun, role])).map(
      (r) => Number(r.version),
    );

  /** The timestamp versions of the GUN's commits in the order they were committed. */
  const committedInOrder = async (gun: string) =>
    (await query<{ version: string }>("SELECT version FROM changefeed WHERE gun = $1 AND category = 'update' ORDER BY id", [gun])).map(
      (r) => Number(r.version),
    );

  async function checkConsistent(outcomes: Outcome[]): Promise<void> {
    for (const [gun, kind] of [
      [signGun, 'sign'],
      [notaryGun, 'notary'],
    ] as const) {
      const accepted = outcomes.filter((o) => o.kind === kind && o.ok);
      assert.ok(accepted.length > 0, `no ${kind} publish was accepted`);
      for (const targets of await targetsEverywhere(gun)) {
        for (const o of accepted) assert.equal(targets.get(o.tag!), o.digest!.slice(7), `${kind} ${o.tag} is signed as accepted`);
      }
      // Versions rise in commit order, whichever instance committed.
      const order = await committedInOrder(gun);
      assert.ok(
        order.every((v, i) => i === 0 || v > order[i - 1]!),
        `${gun}: timestamp versions in commit order ${order.join(',')}`,
      );
    }
    // The server makes every version of the signed repository: one by one, none skipped or twice.
    for (const role of ['targets', 'snapshot', 'timestamp']) {
      const v = await storedVersions(signGun, role);
      assert.deepEqual(
        v,
        v.map((_, i) => i + 1),
        `${signGun} ${role}: versions 1..n`,
      );
    }
    // Each accepted signing call published its own targets version (none lost, none twice).
    const signed = await storedVersions(signGun, 'targets');
    const attempts = outcomes.filter((o) => o.kind === 'sign');
    const accepted = attempts.filter((o) => o.ok).length;
    // One per accepted call, plus at most one per call that failed without an answer from its
    // instance (it may have committed before the instance died or lost its database).
    const unanswered = attempts.filter((o) => !o.ok && (o.status === 0 || o.status >= 502)).length;
    assert.ok(
      signed.length >= targetsBefore + accepted && signed.length <= targetsBefore + accepted + unanswered,
      `${signed.length - targetsBefore} new targets versions for ${accepted} accepted calls (${unanswered} unanswered)`,
    );
  }

  /** Polls (bounded) until every instance answers `want` for `check`; resolves to the ms it took. */
  async function everywhereWithin(ms: number, check: (i: Instance) => Promise<boolean>): Promise<number> {
    const start = Date.now();
    for (let n = 0; n < 1000; n++) {
      const all = await Promise.all(instances.map(check));
      if (all.every(Boolean)) return Date.now() - start;
      if (Date.now() - start > ms) assert.fail(`not on every instance within ${ms} ms: ${all.join(', ')}`);
      await sleep(20);
    }
    return assert.fail('bounded poll ended');
  }

  test('a token made through the balancer works on every instance; revoked through it, it fails on every one within 1 s', async (t) => {
    const made = await api('POST', '/tokens', { name: 'ha-reader', scopes: ['reader'] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const whoami = (i: Instance) =>
      fetch(`http://${i.env.TRUSTGATE_LISTEN}/api/v1/whoami`, { headers: { authorization: `Bearer ${made.body.token}` } }).then(
        (r) => r.status,
      );
    for (const i of instances) assert.equal(await whoami(i), 200, i.name);
    const revoked = await api('DELETE', `/tokens/${made.body.info.id}`);
    assert.ok(revoked.status === 200 || revoked.status === 204, JSON.stringify(revoked.body));
    const took = await everywhereWithin(1000, async (i) => (await whoami(i)) === 401);
    t.diagnostic(`revoked everywhere after ${took} ms`);
  });

  test('a tag revoked through the balancer is refused by the proxy of every instance within 1 s, whoever wrote the verdict', async (t) => {
    const tag = 'revoke-me';
    const sign = await api('POST', '/signing/sign', { gun: signGun, tag, digest: image.manifest.digest, size: image.manifest.size });
    assert.equal(sign.status, 201, JSON.stringify(sign.body));
    const pull = (i: Instance) =>
      fetch(`http://${i.env.TRUSTGATE_PROXY_LISTEN}/v2/team/signed/manifests/${tag}`, { headers: { accept: ACCEPT } }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    // Only the second instance pulls first: it writes the verdict the others then read from Redis.
    assert.equal(await pull(instances[1]!), 200);
    for (const i of instances) assert.equal(await pull(i), 200, i.name);
    const revoked = await api('POST', '/signing/revoke', { gun: signGun, tag });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const took = await everywhereWithin(1000, async (i) => (await pull(i)) === 403);
    t.diagnostic(`refused by every proxy after ${took} ms`);
  });

  test('kill -9 of one instance under load, then its restart: only requests in flight on it fail', async (t) => {
    const victim = instances[2]!;
    let killedAt = 0;
    let backAt = 0;
    const outcomes = await load(8000, async () => {
      await sleep(3000);
      process.kill(victim.tg.proc.child.pid!, 'SIGKILL');
      killedAt = Date.now() - t0;
      await sleep(3000);
      victim.tg = await startTrustgateProcess(victim.env, victim.log, { timeoutMs: 90_000 });
      await lb.waitStatus('trustgate_api', victim.name, 'UP', 20_000);
      backAt = Date.now() - t0;
    });
    const failed = outcomes.filter((o) => !o.ok);
    // A failed request was in flight when the instance died (HAProxy sends nothing new to an
    // instance whose connections are refused, and retries GETs it did not answer).
    const inFlight = (o: Outcome) => o.start <= killedAt + 50 && o.end >= killedAt - 50;
    t.diagnostic(
      `${outcomes.length} requests (${outcomes.filter((o) => o.kind === 'sign').length} signing calls, ` +
        `${outcomes.filter((o) => o.kind === 'notary').length} notary publishes, ${outcomes.filter((o) => o.kind === 'pull').length} pulls); ` +
        `killed at ${killedAt} ms, back in HAProxy at ${backAt} ms; ${failed.length} failed: ` +
        (failed.map((o) => `${o.kind} ${o.status} ${o.start}-${o.end}ms`).join(', ') || 'none'),
    );
    assert.deepEqual(
      failed.filter((o) => !inFlight(o)),
      [],
      'only requests in flight at the kill failed',
    );
    assert.ok(
      outcomes.some((o) => o.ok && o.start > backAt && o.instance === victim.name),
      'the restarted instance serves again',
    );
    await checkConsistent(outcomes);
  });

  test('PostgreSQL restarted under load: instances recover by themselves; no publish is lost or half-applied', async (t) => {
    let downAt = 0;
    let upAt = 0;
    const outcomes = await load(8000, async () => {
      await sleep(3000);
      downAt = Date.now() - t0;
      await pgs.halt();
      await sleep(2000);
      await pgs.resume();
      upAt = Date.now() - t0;
    });
    const failed = outcomes.filter((o) => !o.ok);
    const firstOk = (kind: Outcome['kind']) =>
      outcomes.filter((o) => o.kind === kind && o.ok && o.start >= upAt).sort((a, b) => a.end - b.end)[0];
    const recovery = { sign: firstOk('sign'), pull: firstOk('pull'), notary: firstOk('notary') };
    t.diagnostic(
      `${outcomes.length} requests; database down ${downAt}-${upAt} ms; ${failed.length} failed ` +
        `(${[...new Set(failed.map((o) => `${o.kind} ${o.status}`))].join(', ') || 'none'}); first success after it came back: ` +
        Object.entries(recovery)
          .map(([k, o]) => `${k} +${o ? o.end - upAt : '∞'} ms`)
          .join(', '),
    );
    // Failures are answers while the database was down, in flight as it went, or before HAProxy
    // saw the instances ready again (two checks a second apart), not crashes.
    for (const o of failed) {
      assert.ok(o.start <= upAt + 3000 && o.end >= downAt - 50, `${o.kind} failed outside the outage: ${JSON.stringify(o)}`);
      // 503 from the instance or from HAProxy (every instance not ready), or the connection closed.
      if (o.kind === 'sign')
        assert.ok([0, 503].includes(o.status), `a signing call during the outage: ${JSON.stringify(o)}\n${errorsLogged()}`);
    }
    for (const [kind, o] of Object.entries(recovery)) assert.ok(o && o.end - upAt < 5000, `${kind} recovered within 5 s of the restart`);
    await checkConsistent(outcomes);
    // Nothing was restarted: the same processes serve.
    for (const i of instances) i.tg.proc.assertAlive();
  });

  test('after both, the audit chain is one chain that verifies from every instance', async () => {
    for (const i of instances) {
      const r = await fetch(`http://${i.env.TRUSTGATE_LISTEN}/api/v1/audit/verify`, { headers: { authorization: `Bearer ${admin}` } });
      const body = (await r.json()) as { ok: boolean };
      assert.equal(r.status, 200, `${i.name}: ${JSON.stringify(body)}`);
      assert.equal(body.ok, true, `${i.name}: ${JSON.stringify(body)}`);
    }
  });
});
