// `npm run bench:sign`: batch signing end to end against node's raw ECDSA P-256 sign rate, in one
// run on this machine. What it measures and its BENCH_SIGN_* knobs: docs/performance.md. Raw
// results go to bench/results/sign-<time>.json (not committed).
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForHttp } from '../test/helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand, startProcess, tailFile } from '../test/helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The checkout whose trustgate is measured (BENCH_TRUSTGATE_DIR: another one, e.g. an older commit's worktree). */
const SERVER_ROOT = path.resolve(process.env.BENCH_TRUSTGATE_DIR ?? ROOT);
const SIZES = (process.env.BENCH_SIGN_SIZES ?? '1000,10000').split(',').map((s) => Number(s.trim()));
const ROUNDS = Number(process.env.BENCH_SIGN_ROUNDS ?? 5);
if (SIZES.some((n) => !Number.isInteger(n) || n < 1 || n > 50_000)) throw new Error('BENCH_SIGN_SIZES: whole numbers from 1 to 50000');
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 50) throw new Error('BENCH_SIGN_ROUNDS: 1 to 50');

const say = (msg: string) => process.stderr.write(`[bench:sign] ${msg}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Raw ECDSA P-256 signatures per second with node:crypto (what a trustgate Signer does per signature). */
function rawEcdsaRate(ms = 2000): number {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const msg = randomBytes(256);
  for (let i = 0; i < 200; i++) sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  let n = 0;
  const t0 = performance.now();
  let now = t0;
  while (now - t0 < ms) {
    for (let i = 0; i < 100; i++) sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    n += 100;
    now = performance.now();
  }
  return n / ((now - t0) / 1000);
}

/** `openssl speed ecdsap256` sign/s, for context (node:crypto pays per-call overhead on OpenSSL 3). */
async function opensslEcdsaRate(): Promise<number | undefined> {
  const r = await runCommand('openssl', ['speed', '-seconds', '2', 'ecdsap256'], { timeoutMs: 30_000 }).catch(() => undefined);
  const m = r && /nistp256\)\s+\S+\s+\S+\s+([\d.]+)/.exec(r.stdout);
  return m ? Number(m[1]) : undefined;
}

async function buildTrustgate(): Promise<{ entry: string[]; how: string }> {
  const tsc = path.join(SERVER_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await runCommand(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: SERVER_ROOT, timeoutMs: 180_000 });
  if (r.code === 0) return { entry: [path.join(SERVER_ROOT, 'dist', 'main.js')], how: 'node dist/main.js' };
  say(`build failed, running src/main.ts through tsx instead:\n${(r.stdout + r.stderr).slice(0, 1500)}`);
  return { entry: ['--import', 'tsx', path.join(SERVER_ROOT, 'src', 'main.ts')], how: 'node --import tsx src/main.ts (build failed)' };
}

interface Server {
  url: string;
  token: string;
  pid?: number;
  stop(): Promise<void>;
}

async function startServer(entry: string[]): Promise<Server> {
  const dir = await makeTempDir('bench-sign');
  const port = await freePort();
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRUSTGATE_')));
  Object.assign(env, {
    TRUSTGATE_LISTEN: `127.0.0.1:${port}`,
    TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
    TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    TRUSTGATE_KEY_PASSPHRASE: 'bench-passphrase',
    TRUSTGATE_LOG_LEVEL: 'error',
    // Each size is measured as one batch (one publish).
    TRUSTGATE_SIGN_MAX_BATCH: String(Math.max(...SIZES)),
    NODE_ENV: 'production',
  });
  const extra = (process.env.BENCH_TRUSTGATE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const proc = startProcess(process.execPath, [...extra, ...entry], { cwd: SERVER_ROOT, env, logFile: path.join(dir, 'trustgate.log') });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/_notary_server/health`, 60_000, { check: () => proc.assertAlive(), okStatus: (s) => s === 200 });
  } catch (e) {
    const log = tailFile(proc.logFile);
    await proc.stop();
    throw new Error(`trustgate did not start: ${(e as Error).message}\n${log}`);
  }
  const token = (await fsp.readFile(path.join(dir, 'data', 'admin-token'), 'utf8')).trim();
  return {
    url,
    token,
    ...(proc.child.pid ? { pid: proc.child.pid } : {}),
    stop: async () => {
      await proc.stop();
      await removeTempDir(dir);
    },
  };
}

async function api(
  s: Server,
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown>; bytes: number }> {
  const res = await fetch(`${s.url}${p}`, {
    method,
    headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, bytes: text.length };
}

interface Round {
  tags: number;
  ms: number;
  perSecond: number;
  version: number;
  requestBytes: number;
}

async function round(s: Server, n: number, r: number): Promise<Round> {
  const gun = `bench.example/sign/n${n}-r${r}-${randomBytes(3).toString('hex')}`;
  const init = await api(s, 'POST', '/api/v1/repositories', { gun, rootKey: 'keystore' });
  if (init.status !== 201) throw new Error(`repo init: ${init.status} ${JSON.stringify(init.json)}`);
  const items = Array.from({ length: n }, (_, i) => ({
    tag: `build-${i}`,
    digest: `sha256:${createHash('sha256').update(`${gun} ${i}`).digest('hex')}`,
    size: 500 + (i % 4096),
  }));
  const body = JSON.stringify({ gun, items });
  const t0 = performance.now();
  const res = await fetch(`${s.url}/api/v1/signing/batch`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/json' },
    body,
  });
  const answer = (await res.json()) as {
    status?: string;
    published?: Array<{ role: string; version: number; tags: number }>;
    error?: unknown;
  };
  const ms = performance.now() - t0;
  if (res.status !== 201 || answer.status !== 'published')
    throw new Error(`batch of ${n}: ${res.status} ${JSON.stringify(answer).slice(0, 300)}`);
  const pub = answer.published![0]!;
  // Check what was published, as a Notary client reads it.
  const tj = await fetch(`${s.url}/v2/${gun}/_trust/tuf/targets.json`);
  const targets = (
    (await tj.json()) as { signed: { version: number; targets: Record<string, { hashes: { sha256: string }; length: number }> } }
  ).signed;
  if (targets.version !== 2 || pub.version !== 2) throw new Error(`expected targets version 2 (one publish), got ${targets.version}`);
  if (Object.keys(targets.targets).length !== n)
    throw new Error(`targets.json holds ${Object.keys(targets.targets).length} tags, expected ${n}`);
  for (const i of [0, Math.floor(n / 2), n - 1]) {
    const t = targets.targets[items[i]!.tag]!;
    if (Buffer.from(t.hashes.sha256, 'base64').toString('hex') !== items[i]!.digest.slice(7) || t.length !== items[i]!.size)
      throw new Error(`tag ${items[i]!.tag} published wrong`);
  }
  return { tags: n, ms, perSecond: n / (ms / 1000), version: targets.version, requestBytes: body.length };
}

async function main(): Promise<void> {
  say(
    `machine: ${os.cpus().length} CPU(s) ${os.cpus()[0]?.model ?? ''}, node ${process.version}, load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const build = await buildTrustgate();
  say(`trustgate: ${build.how}`);
  const rawBefore = rawEcdsaRate();
  say(`raw ECDSA P-256 sign rate (before): ${Math.round(rawBefore)}/s`);
  const s = await startServer(build.entry);
  const results: Record<number, Round[]> = {};
  try {
    // Warm-up: JIT and first-use costs are not what a CI job sees on a running server.
    for (const n of SIZES) await round(s, n, 0);
    for (const n of SIZES) {
      results[n] = [];
      for (let r = 1; r <= ROUNDS; r++) {
        const x = await round(s, n, r);
        results[n]!.push(x);
        say(
          `${n} tags, round ${r}: ${x.ms.toFixed(0)} ms, ${Math.round(x.perSecond)} signatures/s (request ${(x.requestBytes / 1024).toFixed(0)} KiB)`,
        );
      }
    }
  } finally {
    await s.stop();
  }
  const rawAfter = rawEcdsaRate();
  say(`raw ECDSA P-256 sign rate (after): ${Math.round(rawAfter)}/s`);
  const raw = (rawBefore + rawAfter) / 2;
  const openssl = await opensslEcdsaRate();
  if (openssl) say(`openssl speed ecdsap256 (C, no per-call overhead), for context: ${Math.round(openssl)}/s`);

  const summary = SIZES.map((n) => {
    const rs = results[n]!;
    const perSecond = median(rs.map((x) => x.perSecond));
    return {
      tags: n,
      rounds: rs.length,
      medianMs: median(rs.map((x) => x.ms)),
      medianSignaturesPerSecond: perSecond,
      bestSignaturesPerSecond: Math.max(...rs.map((x) => x.perSecond)),
      fractionOfRawEcdsa: perSecond / raw,
    };
  });
  const out = [
    '',
    `raw ECDSA P-256 (node:crypto, one core): ${Math.round(raw)} signatures/s (before ${Math.round(rawBefore)}, after ${Math.round(rawAfter)})`,
    '',
    'tags     median ms   signatures/s (median)   best/s     fraction of raw ECDSA   goal >= 0.50',
    ...summary.map(
      (x) =>
        `${String(x.tags).padEnd(8)} ${x.medianMs.toFixed(0).padStart(9)}   ${String(Math.round(x.medianSignaturesPerSecond)).padStart(21)}   ${String(Math.round(x.bestSignaturesPerSecond)).padStart(7)}    ${x.fractionOfRawEcdsa.toFixed(2).padStart(21)}   ${x.fractionOfRawEcdsa >= 0.5 ? 'met' : 'NOT met'}`,
    ),
    '',
    ...(openssl
      ? [
          `for context, openssl speed ecdsap256: ${Math.round(openssl)} signatures/s; batch rate / that: ${summary.map((x) => `${x.tags} tags ${(x.medianSignaturesPerSecond / openssl).toFixed(2)}`).join(', ')}`,
          '',
        ]
      : []),
  ].join('\n');
  process.stdout.write(out);
  const file = path.join(ROOT, 'bench', 'results', `sign-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadavgAtEnd: os.loadavg() },
        settings: { sizes: SIZES, rounds: ROUNDS, trustgate: build.how, store: 'sqlite (default)', keystore: 'file' },
        rawEcdsaPerSecond: { before: rawBefore, after: rawAfter, mean: raw, opensslSpeed: openssl ?? null },
        summary,
        rounds: results,
      },
      null,
      2,
    ) + '\n',
  );
  say(`wrote ${path.relative(ROOT, file)}`);
}

main().catch((e: Error) => {
  process.stderr.write(`bench:sign failed: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
