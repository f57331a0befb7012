// `npm run bench`: trustgate against the reference notary-server, GET and publish throughput, in one
// run on this machine. What it measures and its BENCH_* knobs: docs/performance.md. Raw results go
// to bench/results/notary-<time>.json (not committed).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { keyId, parseKey, type TufKey } from '../src/core/crypto/keys.js';
import { generateSigner, LocalSigner } from '../src/core/crypto/signer.js';
import { createRootCertificate } from '../src/core/crypto/x509.js';
import { signBody, type FileMeta, type RootBody, type TargetsBody } from '../src/core/tuf/metadata.js';
import { formatRfc3339, YEAR_MS } from '../src/core/tuf/time.js';
import { notaryCli, parseNotaryList, type NotaryCli } from '../test/helpers/notary-cli.js';
import { freePort, waitForHttp } from '../test/helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand, startNotaryServer, startProcess, tailFile } from '../test/helpers/services.js';
import type { LoadResult } from './load.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The checkout whose trustgate is measured (BENCH_TRUSTGATE_DIR: another one, e.g. an older commit's worktree). */
const SERVER_ROOT = path.resolve(process.env.BENCH_TRUSTGATE_DIR ?? ROOT);
const DURATION_MS = envInt('BENCH_DURATION_MS', 5000, 500, 60_000);
const WARMUP_MS = Math.min(1000, Math.max(300, Math.floor(DURATION_MS / 5)));
const MAX_REQUESTS = 2_000_000;
const ROUNDS = envInt('BENCH_ROUNDS', 5, 1, 20);
const TAGS = envInt('BENCH_TAGS', 1000, 200, 10_000);
const GET_REPO_TAGS = 20;
const PUBLISH_BUDGET_MS = 75_000; // per series, both servers' publishes together; past it, what was done is reported
const CONCURRENCIES = [1, 32];
const ONLY = process.env.BENCH_ONLY ?? '';
const WORKERS = process.env.BENCH_TRUSTGATE_WORKERS ?? 'auto';
if (!/^(auto|[1-9]\d?)$/.test(WORKERS)) throw new Error('BENCH_TRUSTGATE_WORKERS must be auto or a number of processes');
if (!['', 'get', 'publish'].includes(ONLY)) throw new Error('BENCH_ONLY must be get or publish');
const GET_GUN = 'bench.example/get';
const PUBLISH_GUN = 'bench.example/publish';
const WARMUP_GUN = 'bench.example/warmup';
const WARMUP_PUBLISHES = 100;
const HISTORY_GUN = 'bench.example/history';
/** The fixed-size series: this many tags, re-pointed in turn, over as many versions as TAGS. */
const HISTORY_KEEP_TAGS = 20;

function envInt(name: string, def: number, min: number, max: number): number {
  const v = process.env[name];
  if (!v) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}`);
  return n;
}

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Servers

interface Server {
  name: 'trustgate' | 'reference' | 'trustgate-1';
  url: string;
  /** The server process, for its CPU time (undefined if it cannot be found). */
  pid: number | undefined;
  stop(): Promise<void>;
}

/** A process's parent pid and CPU time (user + system, ms) from /proc/<pid>/stat. */
async function procStat(pid: number | string): Promise<{ ppid: number; cpuMs: number } | undefined> {
  try {
    const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/**
 * CPU time (ms) that a process and its live descendants (trustgate's cluster workers) have used
 * so far. Throughput on a busy machine depends on what else runs; CPU time per request much
 * less so, so both are reported.
 */
async function cpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN;
  const root = await procStat(pid);
  if (!root) return NaN;
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>([[pid, root.cpuMs]]);
  for (const name of await fsp.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name) || Number(name) === pid) continue;
    const st = await procStat(name);
    if (!st) continue;
    cpu.set(Number(name), st.cpuMs);
    children.set(st.ppid, [...(children.get(st.ppid) ?? []), Number(name)]);
  }
  let total = 0;
  const todo = [pid];
  for (let n = 0; todo.length > 0 && n < 10_000; n++) {
    const p = todo.pop()!;
    total += cpu.get(p) ?? 0;
    todo.push(...(children.get(p) ?? []));
  }
  return total;
}
let CLK_TCK = 100;

/** The pid of the process whose command line contains `needle` (the reference's config path). */
async function findPid(needle: string): Promise<number | undefined> {
  for (const name of await fsp.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await fsp.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle)) return Number(name);
  }
  return undefined;
}

/** Builds dist/ as `npm start` does (`npm run build`), falling back to tsx if the build fails. */
async function buildTrustgate(): Promise<{ entry: string[]; how: string }> {
  const tsc = path.join(SERVER_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await runCommand(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: SERVER_ROOT, timeoutMs: 120_000 });
  if (r.code === 0) return { entry: [path.join(SERVER_ROOT, 'dist', 'main.js')], how: 'node dist/main.js' };
  say(`build failed, running src/main.ts through tsx instead:\n${(r.stdout + r.stderr).slice(0, 2000)}`);
  return { entry: ['--import', 'tsx', path.join(SERVER_ROOT, 'src', 'main.ts')], how: 'node --import tsx src/main.ts (build failed)' };
}

async function startTrustgateProcess(entry: string[], workers: string, name: Server['name'] = 'trustgate'): Promise<Server> {
  const dir = await makeTempDir('bench-trustgate');
  const port = await freePort();
  // Only our settings: an inherited TRUSTGATE_DATABASE_URL must not move us off the default store.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRUSTGATE_')));
  Object.assign(env, {
    TRUSTGATE_LISTEN: `127.0.0.1:${port}`,
    TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
    TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    TRUSTGATE_LOG_LEVEL: 'error',
    TRUSTGATE_WORKERS: workers,
    TRUSTGATE_AUTH: 'none', // like the reference server, which runs without auth
    NODE_ENV: 'production',
  });
  const extra = (process.env.BENCH_TRUSTGATE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const proc = startProcess(process.execPath, [...extra, ...entry], { cwd: SERVER_ROOT, env, logFile: path.join(dir, 'trustgate.log') });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/_notary_server/health`, 30_000, { check: () => proc.assertAlive(), okStatus: (s) => s === 200 });
  } catch (e) {
    const log = tailFile(proc.logFile);
    await proc.stop();
    await removeTempDir(dir);
    throw new Error(`trustgate did not become ready: ${(e as Error).message}\n${log}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    name,
    url,
    pid: proc.child.pid,
    stop: () =>
      (stopping ??= (async () => {
        const log = tailFile(proc.logFile, 2000).trim();
        await proc.stop();
        if (log) say(`trustgate log tail:\n${log}`);
        await removeTempDir(dir);
      })()),
  };
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP helpers (keep-alive, sequential)

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string | number>; body?: Buffer; timeoutMs?: number } = {},
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, agent, timeout: opts.timeoutMs ?? 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${opts.method ?? 'GET'} ${url}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function getOk(url: string): Promise<Buffer> {
  const r = await request(url);
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
  return r.body;
}

const tufUrl = (s: Server, gun: string, file = '') => `${s.url}/v2/${gun}/_trust/tuf/${file}`;

function multipart(files: [role: string, bytes: Buffer][]): { body: Buffer; contentType: string } {
  const boundary = `trustgate-bench-${randomBytes(12).toString('hex')}`;
  const parts: Buffer[] = [];
  for (const [role, bytes] of files) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="${role}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
    );
    parts.push(bytes, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function post(s: Server, gun: string, m: { body: Buffer; contentType: string }): Promise<void> {
  const r = await request(tufUrl(s, gun), {
    method: 'POST',
    headers: { 'Content-Type': m.contentType, 'Content-Length': m.body.length },
    body: m.body,
  });
  if (r.status !== 200) throw new Error(`${s.name}: publish to ${gun} answered ${r.status} ${r.body.toString('utf8').slice(0, 500)}`);
}

// ---------------------------------------------------------------------------------------------
// The GET repository, made by the real notary CLI

async function makeGetRepo(s: Server): Promise<NotaryCli> {
  const cli = await notaryCli({ server: s.url, timeoutMs: 60_000 });
  await cli.runOk(['init', GET_GUN, '-p']);
  await cli.runOk(['key', 'rotate', GET_GUN, 'snapshot', '-r']);
  for (let i = 0; i < GET_REPO_TAGS; i++) {
    const digest = createHash('sha256').update(`get-${i}`).digest('hex');
    await cli.runOk(['addhash', GET_GUN, `v1.${i}`, String(1000 + i), '--sha256', digest, ...(i === GET_REPO_TAGS - 1 ? ['-p'] : [])]);
  }
  const listed = parseNotaryList((await cli.runOk(['list', GET_GUN])).stdout);
  if (listed.length !== GET_REPO_TAGS) throw new Error(`${s.name}: notary list shows ${listed.length} targets, expected ${GET_REPO_TAGS}`);
  return cli;
}

// ---------------------------------------------------------------------------------------------
// Load generation

type LoadGen = 'wrk' | 'node';

async function pickLoadGen(): Promise<LoadGen> {
  const want = process.env.BENCH_LOADGEN ?? 'auto';
  if (want === 'node') return 'node';
  const has = (await runCommand('wrk', ['--version'], { timeoutMs: 5000 }).catch(() => null)) !== null;
  if (want === 'wrk' && !has) throw new Error('BENCH_LOADGEN=wrk but wrk is not installed (apt-get install -y wrk)');
  return has ? 'wrk' : 'node';
}

function wrkMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

async function runWrk(url: string, c: number, ms: number): Promise<LoadResult> {
  const secs = Math.max(1, Math.round(ms / 1000));
  const r = await runCommand('wrk', ['-t1', `-c${c}`, `-d${secs}s`, '--latency', '--timeout', '10s', url], { timeoutMs: ms + 30_000 });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
  const out = r.stdout;
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),\s*([\d.]+)(\w+) read/.exec(out);
  if (!total) throw new Error(`cannot read wrk output:\n${out}`);
  const requests = Number(total[1]);
  const elapsedMs = wrkMs(total[2]!, total[3]!);
  const non200 = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? wrkMs(m[1]!, m[2]!) : NaN;
  };
  const max = /Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/.exec(out);
  return {
    requests,
    errors: errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non200,
    bytes: 0,
    elapsedMs,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? requests / (elapsedMs / 1000)),
    latencyMs: { p50: pct('50'), p90: pct('90'), p99: pct('99'), max: max ? wrkMs(max[1]!, max[2]!) : NaN },
  };
}

function runNodeLoad(url: string, c: number, ms: number, warmupMs: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'bench', 'load.ts'), url, String(c), String(ms), String(MAX_REQUESTS), String(warmupMs)],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms + warmupMs + 30_000);
    timer.unref();
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`load generator exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch {
        reject(new Error(`load generator printed no result: ${out} ${err}`));
      }
    });
  });
}

/** One server's GET numbers for one file and concurrency, over all rounds. */
interface GetResult {
  /** Median over the rounds. */
  rps: number;
  rounds: number[];
  requests: number;
  latencyMs: { p50: number; p99: number };
  /** Server CPU time per request (µs), all rounds together. */
  serverCpuUsPerRequest: number;
}

async function warmUp(gen: LoadGen, url: string, c: number): Promise<void> {
  if (gen === 'node') await runNodeLoad(url, c, WARMUP_MS, 0);
  else await runWrk(url, c, WARMUP_MS);
}

/** One measured round against one server, with the CPU time the server used meanwhile. */
async function measure(gen: LoadGen, s: Server, url: string, c: number, ms: number): Promise<LoadResult & { cpuMs: number }> {
  const cpu0 = await cpuMs(s.pid);
  const r = gen === 'node' ? await runNodeLoad(url, c, ms, 100) : await runWrk(url, c, ms);
  const cpu = (await cpuMs(s.pid)) - cpu0;
  if (r.errors > 0 || r.non200 > 0) throw new Error(`${s.name} GET ${url}: ${r.errors} errors, ${r.non200} non-200 answers`);
  return { ...r, cpuMs: cpu };
}

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

// ---------------------------------------------------------------------------------------------
// Pre-signed publishes

interface PublishKeys {
  root: LocalSigner;
  rootKey: TufKey;
  targets: LocalSigner;
}

async function makeKeys(gun: string): Promise<PublishKeys> {
  const r = generateSigner('ecdsa');
  const { key: rootKey } = await createRootCertificate({ gun, privateKey: r.privateKey });
  return { root: new LocalSigner(r.privateKey, rootKey), rootKey, targets: generateSigner('ecdsa') };
}

/** Root v1 for one server: our root and targets keys, that server's snapshot and timestamp keys. */
async function makeRoot(s: Server, keys: PublishKeys, gun: string): Promise<Buffer> {
  const ts = parseKey(JSON.parse((await getOk(tufUrl(s, gun, 'timestamp.key'))).toString('utf8')));
  const sn = parseKey(JSON.parse((await getOk(tufUrl(s, gun, 'snapshot.key'))).toString('utf8')));
  const role = (id: string) => ({ keyids: [id], threshold: 1 });
  const body: RootBody = {
    _type: 'Root',
    consistent_snapshot: false,
    expires: formatRfc3339(Date.now() + 10 * YEAR_MS),
    keys: { [keys.root.id]: keys.rootKey, [keys.targets.id]: keys.targets.key, [keyId(ts)]: ts, [keyId(sn)]: sn },
    roles: { root: role(keys.root.id), targets: role(keys.targets.id), snapshot: role(keyId(sn)), timestamp: role(keyId(ts)) },
    version: 1,
  };
  return signBody(body, [keys.root]);
}

/**
 * Targets versions 1..n+1, the same files for both servers. Version v > 1 adds tag v-2; with
 * `keepTags`, it points tag (v-2) mod keepTags at a new digest instead, so the file stays the
 * same size while the repository's history grows.
 */
async function presignTargets(keys: PublishKeys, n: number, keepTags?: number): Promise<Buffer[]> {
  const expires = formatRfc3339(Date.now() + 3 * YEAR_MS);
  const targets: Record<string, FileMeta> = {};
  const out: Buffer[] = [];
  for (let v = 1; v <= n + 1; v++) {
    if (v > 1) {
      const i = v - 2;
      const digest = createHash('sha256').update(`image-${i}`).digest('base64');
      const tag = keepTags === undefined ? i : i % keepTags;
      targets[`tag-${String(tag).padStart(4, '0')}`] = { hashes: { sha256: digest }, length: 500 + (i % 1000) };
    }
    const body: TargetsBody = { _type: 'Targets', delegations: { keys: {}, roles: [] }, expires, targets, version: v };
    out.push(await signBody(body, [keys.targets]));
  }
  return out;
}

/** A repository's keys and its pre-signed targets versions (see presignTargets). */
interface Series {
  gun: string;
  keys: PublishKeys;
  signed: Buffer[];
}

async function presignSeries(gun: string, n: number, keepTags?: number): Promise<Series> {
  const keys = await makeKeys(gun);
  return { gun, keys, signed: await presignTargets(keys, n, keepTags) };
}

/** Makes the series' repository on every server (root and targets v1), then publishes the rest, in turns. */
async function publishSeries(servers: Server[], series: Series): Promise<Record<string, PublishResult>> {
  const roots = new Map<Server, Buffer>();
  for (const s of servers) roots.set(s, await makeRoot(s, series.keys, series.gun));
  return publishAll(
    servers,
    series.gun,
    roots,
    series.signed[0]!,
    series.signed.slice(1).map((b) => multipart([['targets', b]])),
  );
}

interface PublishResult {
  publishes: number;
  completed: boolean;
  totalMs: number;
  first100PerSec: number;
  last100PerSec: number;
  overallPerSec: number;
  /** last-100 rate / first-100 rate: 1 means no slowdown as tags grow. */
  lastOverFirst: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Server CPU time per publish (ms), from /proc. */
  serverCpuMsPerPublish: number;
  /** trustgate only: what its /metrics says about UpdateTUF (all publishes, warm-up included). */
  serverSide?: Record<string, number>;
}

/**
 * Publishes targets versions 2..n+1 to every server, taking turns publish by publish (order
 * swapped each time), so both repositories grow together and load from elsewhere on the machine
 * falls on both alike. Each server's rates come from its own request times.
 */
async function publishAll(
  servers: Server[],
  gun: string,
  roots: Map<Server, Buffer>,
  v1: Buffer,
  bodies: { body: Buffer; contentType: string }[],
): Promise<Record<string, PublishResult>> {
  for (const s of servers)
    await post(
      s,
      gun,
      multipart([
        ['root', roots.get(s)!],
        ['targets', v1],
      ]),
    );
  const times = new Map<Server, number[]>(servers.map((s) => [s, []]));
  const cpu0 = new Map<Server, number>();
  for (const s of servers) cpu0.set(s, await cpuMs(s.pid));
  const start = performance.now();
  for (let i = 0; i < bodies.length; i++) {
    for (const s of i % 2 ? [...servers].reverse() : servers) {
      const t0 = performance.now();
      await post(s, gun, bodies[i]!);
      times.get(s)!.push(performance.now() - t0);
    }
    if ((i + 1) % 250 === 0 && gun === PUBLISH_GUN) say(`  ${i + 1} publishes each`);
    if (performance.now() - start > PUBLISH_BUDGET_MS) {
      say(`publish budget of ${PUBLISH_BUDGET_MS} ms used up after ${i + 1} publishes each`);
      break;
    }
  }
  const out: Record<string, PublishResult> = {};
  for (const s of servers) {
    const t = times.get(s)!;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const w = Math.min(100, t.length);
    const first = w / (sum(t.slice(0, w)) / 1000);
    const last = w / (sum(t.slice(-w)) / 1000);
    const sorted = [...t].sort((a, b) => a - b);
    out[s.name] = {
      publishes: t.length,
      completed: t.length === bodies.length,
      totalMs: sum(t),
      first100PerSec: first,
      last100PerSec: last,
      overallPerSec: t.length / (sum(t) / 1000),
      lastOverFirst: last / first,
      latencyMs: { p50: sorted[Math.floor(sorted.length / 2)]!, p99: sorted[Math.floor(sorted.length * 0.99)]!, max: sorted.at(-1)! },
      serverCpuMsPerPublish: ((await cpuMs(s.pid)) - cpu0.get(s)!) / t.length,
    };
  }
  return out;
}

/** trustgate's own view of its publish latency, from its Prometheus summary (mean and quantiles, ms). */
async function serverPublishLatency(s: Server): Promise<Record<string, number> | undefined> {
  const r = await request(`${s.url}/metrics`).catch(() => undefined);
  if (r?.status !== 200) return undefined;
  const text = r.body.toString('utf8');
  const metric = 'notary_server_http_request_duration_microseconds';
  const get = (suffix: string, extra = '') => {
    const m = new RegExp(`^${metric}${suffix}\\{${extra}operation="UpdateTUF"\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  const out: Record<string, number> = { meanMs: get('_sum') / get('_count') / 1000 };
  for (const q of ['0.5', '0.9', '0.99']) out[`p${Number(q) * 100}Ms`] = get('', `quantile="${q}",`) / 1000;
  return out;
}

async function checkPublished(s: Server, gun: string, expectTags: number, expectVersion: number): Promise<void> {
  const t = JSON.parse((await getOk(tufUrl(s, gun, 'targets.json'))).toString('utf8')) as { signed: TargetsBody };
  const n = Object.keys(t.signed.targets).length;
  if (n !== expectTags) throw new Error(`${s.name}: ${gun} targets.json lists ${n} tags after the publishes, expected ${expectTags}`);
  if (t.signed.version !== expectVersion)
    throw new Error(`${s.name}: ${gun} targets.json is version ${t.signed.version} after the publishes, expected ${expectVersion}`);
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n: number, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  const loadavgAtStart = os.loadavg();
  const cleanups: (() => Promise<void>)[] = [];
  const onSignal = () => {
    say('interrupted: stopping servers');
    void Promise.allSettled(cleanups.map((c) => c())).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    CLK_TCK = Number((await runCommand('getconf', ['CLK_TCK'], { timeoutMs: 5000 }).catch(() => null))?.stdout.trim()) || 100;
    const gen = await pickLoadGen();
    say(`load generator: ${gen}; GET runs of ${DURATION_MS} ms after ${WARMUP_MS} ms warm-up; ${TAGS} publishes`);
    say('building trustgate');
    const build = await buildTrustgate();

    say('starting reference notary-server and trustgate');
    const refSvc = await startNotaryServer();
    const ref: Server = {
      name: 'reference',
      url: refSvc.url,
      pid: await findPid(path.join(refSvc.dir, 'server-config.json')),
      stop: () => refSvc.stop(),
    };
    cleanups.push(ref.stop);
    const tg = await startTrustgateProcess(build.entry, WORKERS);
    cleanups.push(tg.stop);
    const servers = [ref, tg];
    // The single-process trustgate, for the GET comparison only.
    const tg1 = ONLY === 'publish' || WORKERS === '1' ? undefined : await startTrustgateProcess(build.entry, '1', 'trustgate-1');
    if (tg1) cleanups.push(tg1.stop);
    const getServers = tg1 ? [...servers, tg1] : servers;

    say('making the GET repositories with the notary CLI');
    for (const s of ONLY === 'publish' ? [] : getServers) {
      const cli = await makeGetRepo(s);
      cleanups.push(() => cli.cleanup());
    }

    // GET: each case runs in ROUNDS short rounds, the servers taking turns (order swapped each
    // round), so that whatever else the machine does hits both alike; medians are reported.
    const roundMs =
      gen === 'wrk' ? Math.max(1000, Math.round(DURATION_MS / ROUNDS / 1000) * 1000) : Math.max(500, Math.round(DURATION_MS / ROUNDS));
    const get: Record<string, Record<string, GetResult>> = {};
    const getRatios: Record<string, number> = {};
    if (ONLY !== 'publish') {
      // A longer first warm-up, so the first case does not measure trustgate's JIT.
      for (const s of getServers) for (const file of ['timestamp.json', 'targets.json']) await warmUp(gen, tufUrl(s, GET_GUN, file), 32);
    }
    for (const file of ONLY === 'publish' ? [] : ['timestamp.json', 'targets.json']) {
      for (const c of CONCURRENCIES) {
        const key = `${file} c${c}`;
        const runs: Record<string, (LoadResult & { cpuMs: number })[]> = Object.fromEntries(getServers.map((s) => [s.name, []]));
        for (const s of getServers) {
          await getOk(tufUrl(s, GET_GUN, file));
          await warmUp(gen, tufUrl(s, GET_GUN, file), c);
        }
        const perRound: number[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          for (const s of i % 2 ? [...getServers].reverse() : getServers)
            runs[s.name]!.push(await measure(gen, s, tufUrl(s, GET_GUN, file), c, roundMs));
          perRound.push(runs.trustgate![i]!.rps / runs.reference![i]!.rps);
        }
        get[key] = {};
        for (const s of getServers) {
          const rs = runs[s.name]!;
          const requests = rs.reduce((a, r) => a + r.requests, 0);
          const g: GetResult = {
            rps: median(rs.map((r) => r.rps)),
            rounds: rs.map((r) => Math.round(r.rps)),
            requests,
            latencyMs: { p50: median(rs.map((r) => r.latencyMs.p50)), p99: median(rs.map((r) => r.latencyMs.p99)) },
            serverCpuUsPerRequest:
              (rs.reduce((a, r) => a + r.cpuMs, 0) * 1000) / rs.reduce((a, r) => a + (r.totalRequests ?? r.requests), 0),
          };
          get[key]![s.name] = g;
          say(
            `GET ${key} ${s.name}: ${fmt(g.rps)} req/s median of [${g.rounds.join(', ')}] (p50 ${fmt(g.latencyMs.p50, 2)} ms; server CPU ${fmt(g.serverCpuUsPerRequest)} µs/request)`,
          );
        }
        getRatios[key] = median(perRound);
      }
    }

    let publish: Record<string, PublishResult> = {};
    if (ONLY !== 'get') {
      say(`pre-signing ${TAGS} targets versions (and ${WARMUP_PUBLISHES} for the warm-up)`);
      const series = await presignSeries(PUBLISH_GUN, TAGS);
      // Warm-up: the same kind of publishes to another repository on each server, so the measured
      // run sees a server in its steady state (JIT-compiled, keys read once), as in production.
      const warmup = await presignSeries(WARMUP_GUN, WARMUP_PUBLISHES);
      say(`warm-up: ${WARMUP_PUBLISHES} publishes to ${WARMUP_GUN} on each server`);
      await publishSeries(servers, warmup);

      say(`publishing ${TAGS} targets versions to each server, in turns`);
      publish = await publishSeries(servers, series);
      for (const s of servers) {
        const r = publish[s.name]!;
        await checkPublished(s, PUBLISH_GUN, r.publishes, r.publishes + 1);
        if (s.name === 'trustgate') r.serverSide = await serverPublishLatency(s);
        say(
          `${s.name}: ${fmt(r.overallPerSec, 1)} publishes/s overall, first 100 ${fmt(r.first100PerSec, 1)}/s, last 100 ${fmt(r.last100PerSec, 1)}/s, p50 ${fmt(r.latencyMs.p50, 2)} ms, server CPU ${fmt(r.serverCpuMsPerPublish, 2)} ms/publish` +
            (r.serverSide ? ` (server-side mean ${fmt(r.serverSide.meanMs!, 2)} ms)` : ''),
        );
      }
    }

    // The same publishes, with the file held at 20 tags: what a repository's growing history
    // alone costs, apart from the bytes of a growing targets file.
    let history: Record<string, PublishResult> = {};
    if (ONLY !== 'get') {
      const fixed = await presignSeries(HISTORY_GUN, TAGS, HISTORY_KEEP_TAGS);
      say(`publishing ${TAGS} targets versions of ${HISTORY_KEEP_TAGS} tags to each server, in turns`);
      history = await publishSeries(servers, fixed);
      for (const s of servers) {
        const r = history[s.name]!;
        await checkPublished(s, HISTORY_GUN, Math.min(r.publishes, HISTORY_KEEP_TAGS), r.publishes + 1);
        say(
          `${s.name}, ${HISTORY_KEEP_TAGS} tags: ${fmt(r.overallPerSec, 1)} publishes/s overall, first 100 ${fmt(r.first100PerSec, 1)}/s, last 100 ${fmt(r.last100PerSec, 1)}/s`,
        );
      }
    }

    if (ONLY) {
      process.stdout.write(JSON.stringify({ get, publish, history }, null, 2) + '\n');
      return;
    }

    // Report
    const rows: string[][] = [['metric', 'trustgate', 'reference', 'ratio (tg/ref)', 'goal']];
    const ratios: Record<string, number> = {};
    for (const [key, r] of Object.entries(get)) {
      const q = getRatios[key]!;
      ratios[`GET ${key}`] = q;
      rows.push([
        `GET ${key} (req/s)`,
        fmt(r.trustgate!.rps),
        fmt(r.reference!.rps),
        `${fmt(q, 2)}x`,
        q >= 1.5 ? '>=1.5x ok' : '>=1.5x MISSED',
      ]);
    }
    for (const [key, r] of Object.entries(get)) {
      const one = r['trustgate-1'];
      if (one)
        rows.push([
          `  GET ${key}, trustgate 1 process`,
          fmt(one.rps),
          fmt(r.reference!.rps),
          `${fmt(one.rps / r.reference!.rps, 2)}x`,
          '(default setting)',
        ]);
    }
    for (const [key, r] of Object.entries(get)) {
      const a = r.trustgate!.serverCpuUsPerRequest!;
      const b = r.reference!.serverCpuUsPerRequest!;
      ratios[`GET ${key} cpu efficiency`] = b / a;
      rows.push([`  server CPU µs/req ${key}`, fmt(a), fmt(b), `${fmt(b / a, 2)}x`, '(ref/tg)']);
    }
    const pt = publish.trustgate!;
    const pr = publish.reference!;
    for (const [label, field] of [
      ['first 100', 'first100PerSec'],
      ['last 100', 'last100PerSec'],
      ['overall', 'overallPerSec'],
    ] as const) {
      const q = pt[field] / pr[field];
      ratios[`publish ${label}`] = q;
      rows.push([`publish ${label} (/s)`, fmt(pt[field], 1), fmt(pr[field], 1), `${fmt(q, 2)}x`, q >= 1 ? '>=1x ok' : '>=1x MISSED']);
    }
    rows.push([
      'publish last100/first100',
      fmt(pt.lastOverFirst, 2),
      fmt(pr.lastOverFirst, 2),
      '',
      pt.lastOverFirst >= 0.9 ? 'flat ok' : 'slows down',
    ]);
    const ht = history.trustgate;
    const hr = history.reference;
    if (ht && hr) {
      ratios['publish 20 tags overall'] = ht.overallPerSec / hr.overallPerSec;
      rows.push([
        `  publish, ${HISTORY_KEEP_TAGS} tags kept, overall (/s)`,
        fmt(ht.overallPerSec, 1),
        fmt(hr.overallPerSec, 1),
        `${fmt(ratios['publish 20 tags overall'], 2)}x`,
        '(history only)',
      ]);
      rows.push([
        `  publish, ${HISTORY_KEEP_TAGS} tags kept, last100/first100`,
        fmt(ht.lastOverFirst, 2),
        fmt(hr.lastOverFirst, 2),
        '',
        '(history only)',
      ]);
    }
    rows.push(['publish p50 latency (ms)', fmt(pt.latencyMs.p50, 2), fmt(pr.latencyMs.p50, 2), '', '']);
    ratios['publish cpu efficiency'] = pr.serverCpuMsPerPublish / pt.serverCpuMsPerPublish;
    rows.push([
      '  server CPU ms/publish',
      fmt(pt.serverCpuMsPerPublish, 2),
      fmt(pr.serverCpuMsPerPublish, 2),
      `${fmt(ratios['publish cpu efficiency'], 2)}x`,
      '(ref/tg)',
    ]);

    const results = {
      date: new Date(started).toISOString(),
      machine: {
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model,
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
        loadavgAtStart,
        loadavgAtEnd: os.loadavg(),
      },
      settings: {
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
        concurrency: CONCURRENCIES,
        loadGenerator: gen,
        publishes: TAGS,
        getRepoTags: GET_REPO_TAGS,
        trustgate: build.how,
        trustgateWorkers: WORKERS,
        trustgateStore: 'sqlite (default, temp TRUSTGATE_DATA_DIR)',
        reference: 'notary-server, memory store, local signer',
      },
      get,
      publish,
      publishFixedSize: { tags: HISTORY_KEEP_TAGS, ...history },
      ratios,
      runSeconds: (Date.now() - started) / 1000,
    };
    const dir = path.join(ROOT, 'bench', 'results');
    await fsp.mkdir(dir, { recursive: true });
    const file = path.join(dir, `notary-${results.date.replace(/[:.]/g, '-')}.json`);
    await fsp.writeFile(file, JSON.stringify(results, null, 2) + '\n');

    const busy = Math.max(loadavgAtStart[0]!, os.loadavg()[0]!) > os.cpus().length;
    process.stdout.write(
      `\ntrustgate vs notary-server (${gen}, ${os.cpus().length} CPUs, load average ${fmt(loadavgAtStart[0]!, 1)} -> ${fmt(os.loadavg()[0]!, 1)}, ${build.how}, TRUSTGATE_WORKERS=${WORKERS})\n\n${table(rows)}\n\n` +
        (busy ? 'note: the machine was busy with other work; throughput ratios are noisy, CPU per request less so\n' : '') +
        `results: ${path.relative(ROOT, file)} (${fmt(results.runSeconds)} s)\n`,
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: Error) => say(`cleanup: ${e.message}`));
    agent.destroy();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench failed: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
