// Streaming: a 256 MB layer pushed and pulled through the proxy, run as its own process (`node
// src/main.ts` with TRUSTGATE_UPSTREAM set, as `npm start` runs it), whose resident memory is
// sampled all along. Blobs must stream: the proxy's RSS may not grow with the layer's size.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { freePort, waitForHttp } from '../helpers/ports.js';
import { startTrustgateProcess } from '../helpers/trustgate.js';
import { makeTempDir, removeTempDir, startRegistry, type ManagedProcess, type RegistryService } from '../helpers/services.js';

const LAYER = 256 * 1024 * 1024;
const MAX_GROWTH = 150 * 1024 * 1024;

let reg: RegistryService;
let proc: ManagedProcess;
let dir: string;
let proxy: string;
/** skopeo `--dest-creds` of an admin token: pushes through the proxy need one. */
let creds: string;

const rss = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
};

/** CPU seconds (user + system, all threads) a process has used. */
const cpuSeconds = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

/** Samples the RSS of `pid` while `work` runs; returns the peak. */
async function peakDuring(pid: number, work: () => Promise<void>): Promise<number> {
  let peak = rss(pid);
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, rss(pid));
      await sleep(25);
    }
  })();
  try {
    await work();
  } finally {
    running = false;
    await sampler;
  }
  return Math.max(peak, rss(pid));
}

before(async () => {
  reg = await startRegistry();
  dir = await makeTempDir('proxy-mem');
  const port = await freePort();
  const started = await startTrustgateProcess(
    {
      TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${port}`,
      TRUSTGATE_UPSTREAM: reg.url,
      TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true',
      TRUSTGATE_DATA_DIR: path.join(dir, 'data'),
      TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
      TRUSTGATE_KEY_PASSPHRASE: 'memory-test-passphrase',
      TRUSTGATE_LOG_LEVEL: 'warn',
    },
    path.join(dir, 'trustgate.log'),
  );
  proc = started.proc;
  creds = `admin:${started.adminToken}`;
  proxy = `127.0.0.1:${port}`;
  await waitForHttp(`http://${proxy}/v2/`, 60_000, { check: () => proc.assertAlive(), okStatus: (s) => s === 401 });
});
after(async () => {
  await proc?.stop();
  await reg?.stop();
  await removeTempDir(dir);
});

test('a 256 MB layer streams through the proxy both ways in bounded memory', async () => {
  const pid = proc.child.pid!;
  // Warm up (module loading, first signing, keys) before taking the baseline.
  const small = await makeImageLayout(path.join(dir, 'small'), { tag: 'warm' });
  await skopeoCopy(small.ref, `docker://${proxy}/mem/app:warm`, ['--dest-creds', creds]);
  await fetch(`http://${proxy}/v2/mem/app/blobs/${small.layers[0]!.digest}`).then((r) => r.arrayBuffer());
  await sleep(200);
  const baseline = rss(pid);

  const img = await makeImageLayout(path.join(dir, 'big'), { tag: 'big', layerBytes: LAYER });
  const layer = img.layers[0]!;
  assert.ok(layer.size > LAYER);
  const pushPeak = await peakDuring(pid, async () => {
    await skopeoCopy(img.ref, `docker://${proxy}/mem/app:big`, ['--dest-creds', creds], { timeoutMs: 300_000 });
  });

  let pulled = 0;
  const hash = createHash('sha256');
  const cpuBefore = cpuSeconds(pid);
  const pullPeak = await peakDuring(pid, async () => {
    const res = await fetch(`http://${proxy}/v2/mem/app/blobs/${layer.digest}`);
    assert.equal(res.status, 200);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      pulled += chunk.length;
    }
  });
  const pullCpu = cpuSeconds(pid) - cpuBefore;
  assert.equal(pulled, layer.size);
  assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);

  // A client that goes away mid-blob: the proxy aborts upstream and keeps serving.
  const ac = new AbortController();
  const res = await fetch(`http://${proxy}/v2/mem/app/blobs/${layer.digest}`, { signal: ac.signal });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let got = 0;
  while (got < 8 * 1024 * 1024) got += (await reader.read()).value?.length ?? 0;
  ac.abort();
  await sleep(300);
  proc.assertAlive();
  const m = await fetch(`http://${proxy}/v2/mem/app/manifests/big`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('docker-content-digest'), img.manifest.digest);

  const growth = Math.max(pushPeak, pullPeak) - baseline;
  process.stdout.write(
    `# proxy RSS baseline ${(baseline / 2 ** 20).toFixed(0)} MiB, push peak +${((pushPeak - baseline) / 2 ** 20).toFixed(0)} MiB, pull peak +${((pullPeak - baseline) / 2 ** 20).toFixed(0)} MiB for a ${(layer.size / 2 ** 20).toFixed(0)} MiB layer; pull used ${pullCpu.toFixed(2)} s of proxy CPU\n`,
  );
  assert.ok(
    growth < MAX_GROWTH,
    `proxy RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB while streaming a ${(layer.size / 2 ** 20).toFixed(0)} MiB layer`,
  );
});
