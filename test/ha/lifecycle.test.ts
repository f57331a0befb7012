// What a load balancer sees of one trustgate process: /livez and /readyz on the trust and proxy
// ports (ready follows the store and the keystore), and SIGTERM: not ready, no new connections,
// the request in flight finishes, idle connections are closed, a log line, exit 0.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.js';
import {
  makeTempDir,
  removeTempDir,
  startPostgres,
  startRegistry,
  tailFile,
  type PostgresService,
  type RegistryService,
} from '../helpers/services.js';
import { startTrustgate, startTrustgateProcess, type TrustgateProcess } from '../helpers/trustgate.js';
import { until } from '../helpers/util.js';

let pg: PostgresService;
let reg: RegistryService;
let dir: string;
before(async () => {
  [pg, reg, dir] = await Promise.all([startPostgres(), startRegistry(), makeTempDir('ha-lifecycle')]);
});
after(async () => {
  await Promise.all([pg?.stop(), reg?.stop()]);
  await removeTempDir(dir);
});

let firstAdmin: string | undefined;

/** A trustgate process with the proxy, its store and keystore both in PostgreSQL. */
async function start(name: string, extra: Record<string, string> = {}): Promise<TrustgateProcess & { proxyUrl: string }> {
  const proxyPort = await freePort();
  const p = await startTrustgateProcess(
    {
      TRUSTGATE_DATA_DIR: path.join(dir, name, 'data'),
      TRUSTGATE_KEYS_DIR: path.join(dir, name, 'keys'),
      TRUSTGATE_KEY_PASSPHRASE: 'test-keystore-passphrase',
      TRUSTGATE_DATABASE_URL: pg.url,
      TRUSTGATE_KEYSTORE: 'keyv',
      TRUSTGATE_KEYSTORE_URL: pg.url,
      TRUSTGATE_UPSTREAM: reg.url,
      TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      TRUSTGATE_LOG_LEVEL: 'info',
      ...extra,
    },
    path.join(dir, `${name}.log`),
    { logLine: /registry proxy listening/ },
  );
  // Tokens live in PostgreSQL: only the first start on the database makes an admin token.
  firstAdmin ??= p.adminToken;
  return { ...p, ...(firstAdmin ? { adminToken: firstAdmin } : {}), proxyUrl: `http://127.0.0.1:${proxyPort}` };
}

async function probe(url: string): Promise<{ status: number; text: string }> {
  const r = await fetch(url);
  return { status: r.status, text: await r.text() };
}

test('HA4: /livez and /readyz on both ports, unauthenticated; ready is 503 while PostgreSQL is down and 200 again after', async () => {
  const p = await start('probes');
  try {
    for (const base of [p.url, p.proxyUrl]) {
      assert.deepEqual(await probe(`${base}/livez`), { status: 200, text: '{"status":"live"}' });
      assert.deepEqual(await probe(`${base}/readyz`), { status: 200, text: '{"status":"ready"}' });
      const post = await fetch(`${base}/readyz`, { method: 'POST' });
      assert.equal(post.status, 405);
      await post.arrayBuffer();
    }
    await pg.halt();
    try {
      for (const base of [p.url, p.proxyUrl]) {
        const r = await probe(`${base}/readyz`);
        assert.equal(r.status, 503);
        // Only the names of what failed: no error text, host or port.
        assert.deepEqual(JSON.parse(r.text), { status: 'not ready', failed: ['store', 'keystore'] });
        assert.deepEqual(await probe(`${base}/livez`), { status: 200, text: '{"status":"live"}' });
      }
      // Requests that need the database answer 503, and the process stays up.
      const tuf = await fetch(`${p.url}/v2/registry.example.com/x/_trust/tuf/timestamp.json`);
      assert.equal(tuf.status, 503);
      await tuf.arrayBuffer();
      p.proc.assertAlive();
    } finally {
      await pg.resume();
    }
    const back = performance.now();
    await until('ready again', async () => (await probe(`${p.url}/readyz`)).status === 200, 10_000, {
      intervalMs: 20,
      check: () => p.proc.assertAlive(),
    });
    console.log(`  ready again ${Math.round(performance.now() - back)} ms after PostgreSQL accepted connections`);
    assert.equal((await probe(`${p.proxyUrl}/readyz`)).status, 200);
  } finally {
    await p.proc.stop();
  }
});

test('HA4: while shutting down, /readyz answers 503 naming the shutdown', async () => {
  const tg = await startTrustgate();
  try {
    assert.equal((await probe(`${tg.url}/readyz`)).status, 200);
    tg.app.probes.draining = true;
    assert.deepEqual(await probe(`${tg.url}/readyz`), { status: 503, text: '{"status":"not ready","failed":["shutdown"]}' });
    assert.equal((await probe(`${tg.url}/livez`)).status, 200);
  } finally {
    await tg.stop();
  }
});

/** Opens a connection and resolves once it is connected. */
function connect(url: string): Promise<net.Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the server sends on `s` until it closes the connection. */
function readAll(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.once('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

test('HA5: SIGTERM: the slow request in flight completes, new connections are refused, idle ones closed, exit 0 with a log line', async () => {
  const p = await start('sigterm', { TRUSTGATE_SHUTDOWN_TIMEOUT_SECONDS: '20' });
  const exited = new Promise<number | null>((resolve) => p.proc.child.once('exit', (code) => resolve(code)));
  try {
    // An idle keep-alive connection, after one answered request.
    const idle = await connect(p.url);
    const idleRead = readAll(idle);
    idle.write(`GET /livez HTTP/1.1\r\nHost: x\r\n\r\n`);
    // The slow request: a token creation whose body is only half sent.
    const body = JSON.stringify({ name: 'made-during-shutdown', scopes: ['reader'] });
    const slow = await connect(p.url);
    const slowRead = readAll(slow);
    slow.write(
      `POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${p.adminToken}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 10)}`,
    );
    await sleep(200);

    p.proc.child.kill('SIGTERM');
    // New connections are refused on both ports.
    for (const url of [p.url, p.proxyUrl])
      await until(
        `${url} to refuse connections`,
        () =>
          connect(url).then(
            (s) => (s.destroy(), false),
            (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED',
          ),
        5000,
        { intervalMs: 20 },
      );
    // The idle connection is closed by the server (its one answer was received first).
    assert.match(await idleRead, /^HTTP\/1\.1 200 /);

    // The request in flight gets its whole answer, and its connection closes after it.
    await sleep(300);
    slow.write(body.slice(10));
    const answer = await slowRead;
    assert.match(answer, /^HTTP\/1\.1 201 /);
    assert.match(answer, /\r\nConnection: close\r\n/i);
    assert.match(answer, /made-during-shutdown/);

    assert.equal(await Promise.race([exited, sleep(10_000).then(() => 'still running')]), 0);
    const log = tailFile(p.proc.logFile, 1 << 20);
    assert.match(log, /"msg":"shutting down: no new connections, finishing requests in flight"/);
    assert.match(log, /"msg":"stopped"/);
  } finally {
    await p.proc.stop();
  }
});
