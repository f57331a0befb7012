// Cluster mode (TRUSTGATE_WORKERS > 1) with real processes: `node --import tsx src/main.ts` as
// the primary, its workers seen in /proc, the real `notary` CLI, /metrics merged across workers,
// a worker killed and replaced, SIGTERM to the primary, a primary killed outright, a crash loop,
// and bad settings. Every wait is bounded; processes and temp dirs go even when a test fails.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/util.js';
import { startTrustgateProcess, trustgateCommand } from '../helpers/trustgate.js';
import { authedAgent, initRepo } from '../helpers/tuf-builder.js';
import {
  makeTempDir,
  removeTempDir,
  runCommand,
  startRegistry,
  tailFile,
  type ManagedProcess,
  type RegistryService,
} from '../helpers/services.js';

const SUMMARY = 'notary_server_http_request_duration_microseconds';

/** GETs its URL on 8 keep-alive connections until killed (at most 10 minutes), printing a count. */
const LOAD_SCRIPT = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
let served = 0;
const end = Date.now() + 600000;
const one = () => new Promise((resolve, reject) => {
  http.get(process.argv[1], { agent }, (res) => { res.resume(); res.on('end', () => res.statusCode === 200 ? resolve() : reject(new Error('status ' + res.statusCode))); }).on('error', reject);
});
const loop = async () => { while (Date.now() < end) { await one(); served++; } };
setInterval(() => process.stdout.write('served ' + served + '\\n'), 100);
Promise.all(Array.from({ length: 8 }, loop)).then(() => process.exit(0), (e) => { process.stderr.write('load error: ' + e.message + '\\n'); process.exit(1); });
`;

interface Cluster {
  url: string;
  proc: ManagedProcess;
  pid: number;
  log: () => string;
  /** The first-start admin token. */
  adminToken: string;
}

/** `npm start`'s settings for two workers in `dir`. */
const clusterEnv = (dir: string, env: Record<string, string> = {}) => ({
  TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
  TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
  TRUSTGATE_LOG_LEVEL: 'info',
  TRUSTGATE_WORKERS: '2',
  ...env,
});

/** Starts a cluster in `dir` and waits until the primary has logged that all workers listen. */
async function startCluster(dir: string, env: Record<string, string> = {}): Promise<Cluster> {
  const logFile = path.join(dir, 'trustgate.log');
  const { url, proc, adminToken } = await startTrustgateProcess(clusterEnv(dir, env), logFile, {
    timeoutMs: 90_000,
    stopTimeoutMs: 15_000,
    logLine: /"msg":"trustgate listening"/,
  });
  const log = () => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  return { url, proc, pid: proc.child.pid!, log, adminToken: adminToken! };
}

/** A process's state letter and parent, from /proc (undefined when it is gone). */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0]!, ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

const alive = (pid: number) => {
  const s = procStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
};

/** The primary's worker processes: its live node children running main.ts (tsx also runs esbuild). */
function workerPids(primary: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const s = procStat(pid);
    if (!s || s.ppid !== primary || s.state === 'Z') continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('main.ts')) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/** One GET, on a connection of its own unless an agent (keep-alive connections) is given. */
function getOnce(
  url: string,
  headers: Record<string, string> = {},
  agent: http.Agent | false = false,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 10_000, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/** Waits for a child's exit, at most `ms`; undefined when it did not exit. */
function exitOf(child: ChildProcess, ms: number): Promise<{ code: number | null; signal: string | null } | undefined> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

function sample(text: string, line: string): number {
  const m = new RegExp(`^${line.replace(/[{}.]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `no line ${line} in:\n${text.slice(0, 3000)}`);
  return Number(m[1]);
}

const getRoleCount = async (url: string) => {
  const r = await getOnce(`${url}/metrics`);
  assert.equal(r.status, 200, r.body);
  return sample(r.body, `${SUMMARY}_count{operation="GetRole"}`);
};

describe('a cluster of two workers', () => {
  let dir: string;
  let c: Cluster | undefined;
  const gun = `localhost/cluster/app-${process.pid}`;

  before(async () => {
    dir = await makeTempDir('cluster');
    // A backup copy that a killed run left behind: the primary removes it before it forks.
    fs.mkdirSync(path.join(dir, 'data', '.backup-left1'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'data', '.backup-left1', 'trustgate.db'), 'a copy');
    c = await startCluster(dir);
  });
  after(async () => {
    await c?.proc.stop();
    if (dir) await removeTempDir(dir);
  });

  test('the primary prepares once and forks two workers; requests over separate connections are answered', async () => {
    const { url, pid, log } = c!;
    await until('two workers', () => workerPids(pid).length === 2, 30_000);
    const text = log();
    assert.equal(text.match(/"msg":"trustgate listening"/g)?.length, 1, text);
    assert.match(text, /"msg":"trustgate listening".*"workers":2/);
    assert.equal(text.match(/created the initial admin token/g)?.length, 1, 'the admin token is made once, by the primary');
    assert.equal(text.match(/generated a key-encryption secret/g)?.length, 1);
    assert.equal(fs.existsSync(path.join(dir, 'data', '.backup-left1')), false, 'the leftover backup copy is gone');
    assert.equal(text.match(/removed a backup copy left by an earlier run/g)?.length, 1, 'removed once, by the primary');
    for (let i = 0; i < 20; i++) {
      const r = await getOnce(`${url}/_notary_server/health`);
      assert.equal(r.status, 200, r.body);
    }
  });

  test('the real notary CLI: init, addhash, publish and list from a fresh trust dir', async () => {
    const bytes = Buffer.from(`cluster target ${process.pid}`);
    const hex = createHash('sha256').update(bytes).digest('hex');
    const alice = await notaryCli({ server: c!.url, token: c!.adminToken });
    const reader = await notaryCli({ server: c!.url });
    try {
      await alice.runOk(['init', gun, '-p']);
      await alice.runOk(['addhash', gun, 'v1', String(bytes.length), '--sha256', hex]);
      await alice.runOk(['publish', gun]);
      // A fresh trust dir fetches everything anew, over new connections (so from either worker).
      for (const cli of [alice, reader]) {
        const listed = parseNotaryList((await cli.runOk(['list', gun])).stdout);
        assert.deepEqual(
          listed.map((t) => [t.name, t.digest, t.size, t.role]),
          [['v1', hex, bytes.length, 'targets']],
        );
      }
    } finally {
      await alice.cleanup();
      await reader.cleanup();
    }
  });

  test("read-your-writes across workers under load: a GET sent after a publish's answer, on either worker, gets the new targets", async () => {
    // Each worker looks at SQLite's WAL-index once per event-loop turn (src/storage/sqlite-wal-watch.ts).
    // Background GETs on keep-alive connections keep both workers busy, so their turns serve
    // many requests on one look. The GETs checked here go out right after each publish's answer:
    // on four keep-alive connections made together (which the primary hands to the two workers in
    // turn), and on a new connection. They reach the workers more than 1 ms after the commit here,
    // so this catches a worker that never looks again, not one that looks only every 1 ms (the
    // turn rule itself is tested in test/storage/sqlite-wal-watch.test.ts).
    const { url } = c!;
    const g = `localhost/cluster/ryw-${process.pid}`;
    const targetsUrl = `${url}/v2/${g}/_trust/tuf/targets.json`;
    const repo = await initRepo(authedAgent(request(url), c!.adminToken), g, { serverSnapshot: true });
    const get = (agent: http.Agent) => getOnce(targetsUrl, {}, agent);
    const pinned = new http.Agent({ keepAlive: true, maxSockets: 4 });
    // The load runs in a process of its own, so this one sends its GETs as soon as each publish
    // is answered.
    const loader = spawn(process.execPath, ['-e', LOAD_SCRIPT, `${url}/v2/${g}/_trust/tuf/timestamp.json`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let loadOut = '';
    loader.stdout!.on('data', (b: Buffer) => (loadOut += b.toString()));
    loader.stderr!.on('data', (b: Buffer) => (loadOut += b.toString()));
    const served = () => Number(/served (\d+)/.exec(loadOut.slice(loadOut.lastIndexOf('served')))?.[1] ?? 0);
    try {
      // The four pinned connections, opened together.
      assert.deepEqual(
        (await Promise.all([0, 1, 2, 3].map(() => get(pinned)))).map((r) => r.status),
        [200, 200, 200, 200],
      );
      await until('the background load to run', () => served() >= 200, 20_000, {
        check: () => assert.equal(loader.exitCode, null, loadOut),
      });
      for (let i = 0; i < 40; i++) {
        const res = await repo.addTarget(`t${i}`, `content ${i}`);
        assert.equal(res.status, 200, `publish ${i}`);
        const want = repo.targets.bytes.toString('utf8');
        const answers = await Promise.all([get(pinned), get(pinned), get(pinned), get(pinned), getOnce(targetsUrl)]);
        answers.forEach((r, k) => {
          assert.equal(r.status, 200, r.body);
          assert.equal(r.body, want, `GET ${k} after publish ${i} served an older targets`);
        });
      }
      assert.equal(loader.exitCode, null, `the load stopped early: ${loadOut}`);
    } finally {
      pinned.destroy();
      loader.kill();
      await exitOf(loader, 5000);
    }
    assert.doesNotMatch(loadOut, /error/i);
    assert.ok(served() > 1000, `the background load kept the workers busy (${served()} GETs)`);
  });

  test('/metrics counts the GETs of every worker', async () => {
    const { url } = c!;
    const K = 40;
    const before = await getRoleCount(url);
    for (let i = 0; i < K; i++) {
      const r = await getOnce(`${url}/v2/${gun}/_trust/tuf/timestamp.json`);
      assert.equal(r.status, 200, r.body);
    }
    // Round-robin gives each worker about half of the connections: one worker alone has < K.
    const afterCount = await getRoleCount(url);
    assert.ok(afterCount >= before + K, `GetRole count ${afterCount}, expected at least ${before} + ${K}`);
    const text = (await getOnce(`${url}/metrics`)).body;
    for (const q of ['0.5', '0.9', '0.99']) assert.ok(sample(text, `${SUMMARY}{quantile="${q}",operation="GetRole"}`) > 0, q);
    assert.match(text, /^# TYPE trustgate_process_cpu_seconds_total counter$/m);
  });

  test('a worker killed with SIGKILL: the service keeps answering and another worker takes its place', async () => {
    const { url, pid, log } = c!;
    const countBefore = await getRoleCount(url); // this scrape is what the primary keeps of the dying worker
    const [victim, survivor] = workerPids(pid);
    assert.ok(victim && survivor);
    process.kill(victim, 'SIGKILL');
    // Once the primary has seen the death it hands no connection to that worker. (A connection
    // handed over in the instant between the death and the primary noticing it is lost: node's
    // round-robin hand-over has no way back for it.)
    await until('the primary to see the killed worker exit', () => log().includes(`"pid":${victim},`), 10_000);
    assert.match(log(), /"msg":"worker stopped unexpectedly: starting another".*"signal":"SIGKILL"/);
    for (let i = 0; i < 20; i++) {
      const r = await getOnce(`${url}/v2/${gun}/_trust/tuf/timestamp.json`);
      assert.equal(r.status, 200, `request ${i} after the kill: ${r.body}`);
    }
    await until('a replacement worker', () => workerPids(pid).length === 2, 90_000);
    const now = workerPids(pid);
    assert.ok(!now.includes(victim) && now.includes(survivor), `workers now ${now}`);
    await until('the replacement to listen', () => /"msg":"worker started"/.test(log()), 90_000);
    for (let i = 0; i < 10; i++) assert.equal((await getOnce(`${url}/_notary_server/health`)).status, 200);
    // The killed worker's counts (as of the last scrape) stay in the merge: the counter never goes back.
    assert.ok((await getRoleCount(url)) >= countBefore + 20, "merged counter kept the stopped worker's counts");
  });

  test('SIGTERM to the primary: every process exits, with code 0', async () => {
    const { pid, proc } = c!;
    const workers = workerPids(pid);
    assert.equal(workers.length, 2);
    process.kill(pid, 'SIGTERM');
    const exit = await exitOf(proc.child, 20_000);
    assert.ok(exit, `the primary did not exit within 20 s\n${tailFile(proc.logFile)}`);
    assert.deepEqual(exit, { code: 0, signal: null });
    await until('the workers to be gone', () => workers.every((w) => !alive(w)), 10_000);
    // Each worker drained and said so.
    const log = tailFile(proc.logFile, 1 << 20);
    for (const w of workers) {
      assert.match(
        log,
        new RegExp(`"msg":"shutting down: no new connections, finishing requests in flight","signal":"SIGTERM","pid":${w},`),
      );
      assert.match(log, new RegExp(`"msg":"stopped","pid":${w}}`));
    }
  });
});

test('the verifying proxy on two workers: a tag signed through one worker is served by every worker at once', async () => {
  const dir = await makeTempDir('cluster-proxy');
  let reg: RegistryService | undefined;
  let c: Cluster | undefined;
  try {
    reg = await startRegistry();
    const proxyPort = await freePort();
    // Pushes through the proxy need a token with sign access; pulls here go without one.
    c = await startCluster(dir, {
      TRUSTGATE_UPSTREAM: reg.url,
      TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
      TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
    });
    const creds = `admin:${c.adminToken}`;
    assert.equal(c.log().match(/"msg":"registry proxy listening"/g)?.length, 1, c.log());
    const host = `127.0.0.1:${proxyPort}`;
    const manifest = (tag: string) =>
      getOnce(`http://${host}/v2/team/app/manifests/${tag}`, {
        accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json',
      });
    const v1 = await makeImageLayout(path.join(dir, 'v1'), { tag: 'v1' });
    await skopeoCopy(v1.ref, `docker://${host}/team/app:v1`, ['--dest-creds', creds]);
    // Each worker gets some of these connections, and keeps the denial of the unsigned v2.
    for (let i = 0; i < 10; i++) assert.equal((await manifest('v2')).status, 403, `pull ${i} of the unsigned v2`);
    const v2 = await makeImageLayout(path.join(dir, 'v2'), { tag: 'v2' });
    await skopeoCopy(v2.ref, `docker://${host}/team/app:v2`, ['--dest-creds', creds]);
    await sleep(200); // the change travels worker → primary → worker over IPC
    // Without the change passed on, the other worker would deny v2 until its verdict's TTL (60 s).
    for (let i = 0; i < 10; i++) {
      const r = await manifest('v2');
      assert.equal(r.status, 200, `pull ${i} of the signed v2: ${r.body}`);
    }
  } finally {
    await c?.proc.stop();
    await reg?.stop();
    await removeTempDir(dir);
  }
});

test('a primary killed outright: its workers exit too', async () => {
  const dir = await makeTempDir('cluster-orphans');
  let c: Cluster | undefined;
  try {
    c = await startCluster(dir);
    await until('two workers', () => workerPids(c!.pid).length === 2, 30_000);
    const workers = workerPids(c.pid);
    process.kill(c.pid, 'SIGKILL');
    await until('the orphaned workers to exit', () => workers.every((w) => !alive(w)), 15_000);
  } finally {
    await c?.proc.stop();
    await removeTempDir(dir);
  }
});

test('workers that keep dying at start: the primary gives up with a non-zero exit', async () => {
  const dir = await makeTempDir('cluster-crashloop');
  // The proxy's port is taken, so every worker fails to start its proxy (after the primary's preparation).
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const taken = (blocker.address() as net.AddressInfo).port;
  const logFile = path.join(dir, 'trustgate.log');
  const env = clusterEnv(dir, { TRUSTGATE_UPSTREAM: 'http://127.0.0.1:9', TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${taken}` });
  const { proc } = await startTrustgateProcess(env, logFile, { noWait: true, stopTimeoutMs: 15_000 });
  try {
    const exit = await exitOf(proc.child, 120_000);
    assert.ok(exit, `the primary was still running after 120 s\n${tailFile(logFile)}`);
    assert.equal(exit.code, 1, tailFile(logFile));
    const text = fs.readFileSync(logFile, 'utf8');
    assert.match(text, /"msg":"workers keep stopping \(5 within 30 s\): giving up"/);
    assert.match(text, /cannot start the registry proxy/);
    assert.doesNotMatch(text, /"msg":"trustgate listening"/);
  } finally {
    await proc.stop();
    blocker.close();
    await removeTempDir(dir);
  }
});

test('TRUSTGATE_WORKERS=0, abc or 65: exit 2 with a message naming the setting', async () => {
  const dir = await makeTempDir('cluster-config');
  try {
    for (const v of ['0', 'abc', '65']) {
      const main = trustgateCommand({
        TRUSTGATE_WORKERS: v,
        TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
        TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
        TRUSTGATE_LISTEN: '127.0.0.1:1',
      });
      const r = await runCommand(main.cmd, main.args, { ...main.opts, timeoutMs: 60_000 });
      assert.equal(r.code, 2, `${v}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`TRUSTGATE_WORKERS must be auto or a whole number from 1 to 64, got "${v}"`), r.stderr);
      assert.ok(!fs.existsSync(path.join(dir, 'data')), 'nothing was prepared');
    }
  } finally {
    await removeTempDir(dir);
  }
});
