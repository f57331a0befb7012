// `npm run bench:proxy`: the verifying proxy against direct pulls from a real docker-registry, in one
// run on this machine. What it measures: docs/performance.md. Raw results go to
// bench/results/proxy-<time>.json (not committed).
//
//   node --import tsx bench/proxy.ts [--seconds N] [--rounds N] [--layer-mb N] [--blob-runs N] [--profile DIR]
//   node --import tsx bench/proxy.ts --load <url> <concurrency> <ms> <accept>   (internal)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { TokenStore } from '../src/auth/tokens.js';
import { makeImageLayout, MEDIA_TYPES, skopeoCopy } from '../test/helpers/oci.js';
import { freePort, waitForHttp } from '../test/helpers/ports.js';
import { makeTempDir, removeTempDir, startProcess, startRegistry } from '../test/helpers/services.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SLSA = 'https://slsa.dev/provenance/v1';
const BUILDER = 'https://bench.example.com/builder/v1';
/** The checkout whose trustgate is measured (BENCH_TRUSTGATE_DIR: another one, e.g. an older commit's worktree). */
const SERVER_ROOT = path.resolve(process.env.BENCH_TRUSTGATE_DIR ?? ROOT);

interface Load {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

/** One load run: latencies of the measured requests; `total` also counts the warm-up. */
interface Sample extends Load {
  lat: number[];
  total: number;
  /** CPU seconds the serving trustgate process used per request (all requests of the run). */
  cpuPerRequest?: number;
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : 0);

/** The load generator: `c` requests in flight over keep-alive for `ms` after a 1 s warm-up. */
async function load(url: string, c: number, ms: number, accept: string): Promise<Sample> {
  const u = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  const lat: number[] = [];
  let measuring = false;
  let stop = false;
  let errors = 0;
  let total = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = http.request({ agent, host: u.hostname, port: u.port, path: u.pathname, headers: { accept } }, (res) => {
        res.resume();
        res.on('end', () => {
          total++;
          if (measuring && !stop) {
            if (res.statusCode === 200) lat.push(performance.now() - t0);
            else errors++;
          }
          resolve();
        });
      });
      req.on('error', () => {
        if (measuring) errors++;
        resolve();
      });
      req.end();
    });
  const loops = Array.from({ length: c }, async () => {
    for (let i = 0; !stop && i < 10_000_000; i++) await one();
  });
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  const start = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  stop = true;
  const elapsed = performance.now() - start;
  await Promise.all(loops);
  agent.destroy();
  const sorted = lat.sort((a, b) => a - b);
  return {
    requests: lat.length,
    errors,
    rps: lat.length / (elapsed / 1000),
    p50: pct(sorted, 0.5),
    p99: pct(sorted, 0.99),
    lat: sorted,
    total,
  };
}

/** Runs the load generator as its own process. */
function loadProcess(url: string, c: number, ms: number, accept: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'bench/proxy.ts'), '--load', url, String(c), String(ms), accept],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Sample) : reject(new Error(`load generator exited ${code}`))));
  });
}

/** Streams a blob to nowhere, hashing it; MB/s. */
function blobRate(url: string, digest: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    http
      .get(url, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: ${res.statusCode}`));
        const h = createHash('sha256');
        let n = 0;
        res.on('data', (c: Buffer) => {
          h.update(c);
          n += c.length;
        });
        res.on('end', () => {
          if (`sha256:${h.digest('hex')}` !== digest) return reject(new Error('blob digest mismatch'));
          resolve(n / 1e6 / ((performance.now() - t0) / 1000));
        });
      })
      .on('error', reject);
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** User and system CPU seconds used so far by every thread of a process. */
function cpuSeconds(pid: number): { user: number; system: number } {
  let user = 0;
  let system = 0;
  const tick = 100; // USER_HZ on Linux
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      user += Number(f[11]) / tick;
      system += Number(f[12]) / tick;
    } catch {
      // the thread ended meanwhile
    }
  }
  return { user, system };
}

/** Requests and latencies of several load runs, pooled. */
function pool(runs: Sample[]): Load & { cpuPerRequestUs?: number } {
  const lat = runs.flatMap((r) => r.lat).sort((a, b) => a - b);
  const seconds = runs.reduce((n, r) => n + r.requests / r.rps, 0);
  const requests = runs.reduce((n, r) => n + r.requests, 0);
  const cpu = runs.filter((r) => r.cpuPerRequest !== undefined);
  return {
    requests,
    errors: runs.reduce((n, r) => n + r.errors, 0),
    rps: requests / seconds,
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    ...(cpu.length ? { cpuPerRequestUs: median(cpu.map((r) => r.cpuPerRequest!)) * 1e6 } : {}),
  };
}

const loadavg = () => os.loadavg().map((x) => Number(x.toFixed(2)));

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--load') {
    process.stdout.write(JSON.stringify(await load(args[1]!, Number(args[2]), Number(args[3]), args[4]!)) + '\n');
    return;
  }
  const opt = (name: string, def: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : def;
  };
  const seconds = opt('--seconds', 4);
  const rounds = opt('--rounds', 2);
  const layerMb = opt('--layer-mb', 256);
  const blobRuns = opt('--blob-runs', 5);
  const pi = args.indexOf('--profile');
  const profileDir = pi >= 0 ? path.resolve(args[pi + 1]!) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const nodeArgs = ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), 'src/main.ts'];
  const loadAtStart = loadavg();

  const reg = await startRegistry();
  const dir = await makeTempDir('bench-proxy');
  const port = await freePort();
  const uncachedPort = await freePort();
  const coldPort = await freePort();
  const apiPort = await freePort();
  // The built-in policy (enforce, sign pushes into targets), plus a rule requiring a SLSA provenance.
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    [
      'version: 1',
      'default: { mode: enforce, signOnPush: targets }',
      'repositories:',
      '  - pattern: "benchatt/**"',
      '    signOnPush: targets',
      '    require:',
      '      attestations:',
      `        - { predicateType: "${SLSA}", conditions: { runDetails.builder.id: "${BUILDER}" } }`,
      '',
    ].join('\n'),
  );
  const env = (proxyPort: number, extra: Record<string, string> = {}) => ({
    ...process.env,
    TRUSTGATE_LISTEN: '127.0.0.1:0',
    TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${proxyPort}`,
    TRUSTGATE_UPSTREAM: reg.url,
    TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
    TRUSTGATE_REGISTRY_NAME: `127.0.0.1:${port}`,
    TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
    TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    TRUSTGATE_KEY_PASSPHRASE: 'bench-passphrase',
    TRUSTGATE_LOG_LEVEL: 'warn',
    TRUSTGATE_POLICY: policy,
    ...extra,
  });
  // Pushes through the proxy need a token with sign access; the measured pulls go without one.
  const adminToken = new TokenStore(path.join(dir, 'data')).create({ name: 'bench', scopes: ['admin'], createdBy: 'bench' }).token;
  const creds = `admin:${adminToken}`;
  // SIGINT: trustgate exits through its own handler, so --cpu-prof can write its profile.
  const proc = startProcess(process.execPath, nodeArgs, {
    cwd: SERVER_ROOT,
    logFile: path.join(dir, 'trustgate.log'),
    env: env(port, { TRUSTGATE_LISTEN: `127.0.0.1:${apiPort}` }),
    stopSignal: 'SIGINT',
    stopTimeoutMs: 15_000,
  });
  // A second trustgate over the same trust data, without the verified-manifest cache: every
  // proxied pull fetches the manifest from the upstream by its signed digest.
  let uncachedProc: ReturnType<typeof startProcess> | undefined;
  // A third without any verdict (or manifest) cache: every pull is verified from scratch (cold).
  let coldProc: ReturnType<typeof startProcess> | undefined;
  const proxy = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${proxy}/v2/`, 60_000, { check: () => proc.assertAlive(), okStatus: (s) => s === 401 });
    uncachedProc = startProcess(process.execPath, nodeArgs, {
      cwd: SERVER_ROOT,
      logFile: path.join(dir, 'trustgate-uncached.log'),
      env: env(uncachedPort, { TRUSTGATE_MANIFEST_CACHE_MB: '0' }),
      stopSignal: 'SIGINT',
      stopTimeoutMs: 15_000,
    });
    const uncached = `http://127.0.0.1:${uncachedPort}`;
    await waitForHttp(`${uncached}/v2/`, 60_000, { check: () => uncachedProc!.assertAlive(), okStatus: (s) => s === 401 });
    coldProc = startProcess(process.execPath, nodeArgs, {
      cwd: SERVER_ROOT,
      logFile: path.join(dir, 'trustgate-cold.log'),
      env: env(coldPort, { TRUSTGATE_VERDICT_TTL_SECONDS: '0' }),
      stopSignal: 'SIGINT',
      stopTimeoutMs: 15_000,
    });
    const cold = `http://127.0.0.1:${coldPort}`;
    await waitForHttp(`${cold}/v2/`, 60_000, { check: () => coldProc!.assertAlive(), okStatus: (s) => s === 401 });
    const host = `127.0.0.1:${port}`;
    process.stderr.write(`bench: pushing images through the proxy (signed on push; ${layerMb} MB layer)\n`);
    const small = await makeImageLayout(path.join(dir, 'small'), { tag: 'v1', layers: 2 });
    await skopeoCopy(small.ref, `docker://${host}/bench/app:v1`, ['--dest-creds', creds]);
    const big = await makeImageLayout(path.join(dir, 'big'), { tag: 'big', layerBytes: layerMb * 1024 * 1024 });
    await skopeoCopy(big.ref, `docker://${host}/bench/app:big`, ['--dest-creds', creds], { timeoutMs: 600_000 });
    const accept = MEDIA_TYPES.ociManifest;
    // The attested image: signed on push, then a SLSA provenance signed through the signing API.
    const att = await makeImageLayout(path.join(dir, 'att'), { tag: 'v1', layers: 2, annotations: { attested: 'yes' } });
    await skopeoCopy(att.ref, `docker://${host}/benchatt/app:v1`, ['--dest-creds', creds]);
    const attPull = (base: string) => fetch(`${base}/v2/benchatt/app/manifests/v1`, { headers: { accept } });
    if ((await attPull(cold)).status !== 403) throw new Error('the attested rule admits a pull before the attestation');
    const signed = await fetch(`http://127.0.0.1:${apiPort}/api/v1/signing/attest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        repository: 'benchatt/app',
        digest: att.manifest.digest,
        predicateType: SLSA,
        predicate: {
          buildDefinition: { buildType: 'https://bench.example.com/build/v1', externalParameters: {} },
          runDetails: { builder: { id: BUILDER } },
        },
      }),
    });
    if (signed.status !== 201) throw new Error(`attest: ${signed.status} ${await signed.text()}`);
    for (const base of [proxy, cold]) {
      const check = await attPull(base);
      if (check.status !== 200) throw new Error(`${base} does not serve the attested manifest: ${check.status} ${await check.text()}`);
    }
    for (const base of [proxy, uncached, cold]) {
      const check = await fetch(`${base}/v2/bench/app/manifests/v1`, { headers: { accept } });
      if (check.status !== 200 || check.headers.get('docker-content-digest') !== small.manifest.digest)
        throw new Error(`${base} does not serve the signed manifest: ${check.status}`);
    }

    const manifest = (base: string, repo = 'bench/app') => `${base}/v2/${repo}/manifests/v1`;
    const runs: Record<string, Sample[]> = {};
    const pids: Record<string, number | undefined> = {
      proxy: proc.child.pid,
      attested: proc.child.pid,
      uncached: uncachedProc.child.pid,
      'cold-plain': coldProc.child.pid,
      'cold-attested': coldProc.child.pid,
    };
    const run = async (name: string, url: string, c: number) => {
      const pid = pids[name];
      const before = pid ? cpuSeconds(pid) : undefined;
      const sample = await loadProcess(url, c, seconds * 1000, accept);
      if (pid && before) {
        const after = cpuSeconds(pid);
        sample.cpuPerRequest = (after.user + after.system - before.user - before.system) / Math.max(1, sample.total);
      }
      (runs[`${name} c=${c}`] ??= []).push(sample);
    };
    for (let round = 0; round < rounds; round++) {
      for (const c of [1, 32]) {
        // Alternate which side goes first, so neither always runs on a warmer machine.
        const order: Array<[string, string]> = [
          ['proxy', manifest(proxy)],
          ['direct', manifest(reg.url)],
          ['uncached', manifest(uncached)],
          ['attested', manifest(proxy, 'benchatt/app')],
          // Cold: one connection only (at 32, identical verifications in flight run once).
          ...(c === 1
            ? ([
                ['cold-plain', manifest(cold)],
                ['cold-attested', manifest(cold, 'benchatt/app')],
              ] as Array<[string, string]>)
            : []),
        ];
        for (const [name, url] of round % 2 ? order.reverse() : order) await run(name, url, c);
      }
    }
    const results: Record<string, Load & { cpuPerRequestUs?: number }> = Object.fromEntries(
      Object.entries(runs).map(([k, v]) => [k, pool(v)]),
    );
    const layer = big.layers[0]!;
    const rates = { direct: [] as number[], proxy: [] as number[] };
    const proxyCpu: Array<{ user: number; system: number }> = [];
    const pid = proc.child.pid!;
    // One untimed pull each first, as the manifest loads warm up for a second.
    await blobRate(`${proxy}/v2/bench/app/blobs/${layer.digest}`, layer.digest);
    await blobRate(`${reg.url}/v2/bench/app/blobs/${layer.digest}`, layer.digest);
    for (let i = 0; i < blobRuns; i++) {
      const before = cpuSeconds(pid);
      rates.proxy.push(await blobRate(`${proxy}/v2/bench/app/blobs/${layer.digest}`, layer.digest));
      const after = cpuSeconds(pid);
      proxyCpu.push({ user: after.user - before.user, system: after.system - before.system });
      rates.direct.push(await blobRate(`${reg.url}/v2/bench/app/blobs/${layer.digest}`, layer.digest));
    }
    for (const [k, v] of Object.entries(results)) if (v.errors) throw new Error(`${k}: ${v.errors} failed requests`);
    const gb = layer.size / 1e9;
    const cpuPerGb = { user: median(proxyCpu.map((c) => c.user)) / gb, system: median(proxyCpu.map((c) => c.system)) / gb };
    const loadAtEnd = loadavg();

    const r1 = results['proxy c=1']!.rps / results['direct c=1']!.rps;
    const r32 = results['proxy c=32']!.rps / results['direct c=32']!.rps;
    const blob = median(rates.proxy) / median(rates.direct);
    // Each proxy run and the direct run right after it see nearly the same machine: the median of
    // those pairs' ratios is steadier than the ratio of the medians when the load moves.
    const blobPaired = median(rates.proxy.map((p, i) => p / rates.direct[i]!));
    const addedP50 = results['proxy c=1']!.p50 - results['direct c=1']!.p50;
    const u1 = results['uncached c=1']!.rps / results['direct c=1']!.rps;
    const u32 = results['uncached c=32']!.rps / results['direct c=32']!.rps;
    const uAdded = results['uncached c=1']!.p50 - results['direct c=1']!.p50;
    const fmt = (x: number[]) => x.map((v) => v.toFixed(0)).join(' ');
    const R = (k: string) => results[k]!;
    const attWarm1 = R('attested c=1').p50 / R('proxy c=1').p50;
    const attWarm32 = R('attested c=32').p50 / R('proxy c=32').p50;
    const attCold = R('cold-attested c=1').p50 / R('cold-plain c=1').p50;
    const attColdVsWarm = R('cold-attested c=1').p50 / R('proxy c=1').p50;
    const lines = [
      `load average at start ${loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')} (${os.cpus().length} CPUs); ${rounds} rounds of ${seconds} s per measurement`,
      `manifest by tag, c=1   direct ${results['direct c=1']!.rps.toFixed(0)} req/s  proxy ${results['proxy c=1']!.rps.toFixed(0)} req/s  ratio ${r1.toFixed(2)}x (goal >= 0.8x)`,
      `manifest by tag, c=32  direct ${results['direct c=32']!.rps.toFixed(0)} req/s  proxy ${results['proxy c=32']!.rps.toFixed(0)} req/s  ratio ${r32.toFixed(2)}x (goal >= 0.8x)`,
      `p50 latency, c=1       direct ${results['direct c=1']!.p50.toFixed(3)} ms  proxy ${results['proxy c=1']!.p50.toFixed(3)} ms  added ${addedP50.toFixed(3)} ms (goal < 1 ms)`,
      `without the manifest cache (each pull fetches upstream by digest and hashes it):`,
      `  c=1  ${results['uncached c=1']!.rps.toFixed(0)} req/s ratio ${u1.toFixed(2)}x, p50 ${results['uncached c=1']!.p50.toFixed(3)} ms, added ${uAdded.toFixed(3)} ms; c=32 ${results['uncached c=32']!.rps.toFixed(0)} req/s ratio ${u32.toFixed(2)}x`,
      `trustgate CPU per request (user+system): cached c=1 ${results['proxy c=1']!.cpuPerRequestUs?.toFixed(0)} us, c=32 ${results['proxy c=32']!.cpuPerRequestUs?.toFixed(0)} us; uncached c=1 ${results['uncached c=1']!.cpuPerRequestUs?.toFixed(0)} us, c=32 ${results['uncached c=32']!.cpuPerRequestUs?.toFixed(0)} us`,
      `p99 latency, c=32      direct ${results['direct c=32']!.p99.toFixed(3)} ms  proxy ${results['proxy c=32']!.p99.toFixed(3)} ms  uncached ${results['uncached c=32']!.p99.toFixed(3)} ms`,
      `blob ${(layer.size / 1e6).toFixed(0)} MB          direct ${median(rates.direct).toFixed(0)} MB/s  proxy ${median(rates.proxy).toFixed(0)} MB/s  ratio ${blob.toFixed(2)}x (goal >= 0.9x)`,
      `  runs (MB/s): direct ${fmt(rates.direct)}; proxy ${fmt(rates.proxy)}; median of paired ratios ${blobPaired.toFixed(2)}x`,
      `  proxy CPU per GB streamed: ${cpuPerGb.user.toFixed(2)} s user + ${cpuPerGb.system.toFixed(2)} s system`,
      `SLSA attestation required (manifest by tag; ratio of p50 latency to a plain signed pull):`,
      `  warm c=1   plain ${R('proxy c=1').p50.toFixed(3)} ms  attested ${R('attested c=1').p50.toFixed(3)} ms  ratio ${attWarm1.toFixed(2)}x; ${R('proxy c=1').rps.toFixed(0)} vs ${R('attested c=1').rps.toFixed(0)} req/s`,
      `  warm c=32  plain ${R('proxy c=32').p50.toFixed(3)} ms  attested ${R('attested c=32').p50.toFixed(3)} ms  ratio ${attWarm32.toFixed(2)}x; ${R('proxy c=32').rps.toFixed(0)} vs ${R('attested c=32').rps.toFixed(0)} req/s`,
      `  cold c=1   plain ${R('cold-plain c=1').p50.toFixed(3)} ms  attested ${R('cold-attested c=1').p50.toFixed(3)} ms  ratio ${attCold.toFixed(2)}x (${attColdVsWarm.toFixed(1)}x a warm plain pull); CPU per pull ${R('cold-plain c=1').cpuPerRequestUs?.toFixed(0)} vs ${R('cold-attested c=1').cpuPerRequestUs?.toFixed(0)} us`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    const out = path.join(ROOT, 'bench/results');
    mkdirSync(out, { recursive: true });
    const file = path.join(out, `proxy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        {
          loadavg: { start: loadAtStart, end: loadAtEnd, cpus: os.cpus().length },
          results,
          rounds: runs,
          blobMBps: rates,
          proxyCpuPerGb: cpuPerGb,
          proxyCpuPerBlob: proxyCpu,
          ratios: {
            manifestC1: r1,
            manifestC32: r32,
            blob,
            blobPaired,
            addedP50Ms: addedP50,
            uncachedC1: u1,
            uncachedC32: u32,
            uncachedAddedP50Ms: uAdded,
            attestedWarmP50C1: attWarm1,
            attestedWarmP50C32: attWarm32,
            attestedColdP50: attCold,
            attestedColdVsWarmPlainP50: attColdVsWarm,
          },
          seconds,
          layerMb,
        },
        (k, v) => (k === 'lat' ? undefined : v),
        2,
      ) + '\n',
    );
    process.stdout.write(`written to ${path.relative(ROOT, file)}\n`);
  } finally {
    await coldProc?.stop();
    await uncachedProc?.stop();
    await proc.stop();
    await reg.stop();
    await removeTempDir(dir);
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:proxy: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
