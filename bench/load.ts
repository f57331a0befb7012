// GET load generator for bench/notary.ts, run as its own process so it never shares an event
// loop with the server under test. Keeps `concurrency` requests in flight over a keep-alive agent
// (maxSockets = concurrency) for a warm-up, then for `durationMs` or `maxRequests`, whichever
// comes first, and prints one JSON line with the counts and latency percentiles.
//
//   node --import tsx bench/load.ts <url> <concurrency> <durationMs> <maxRequests> [warmupMs]
import http from 'node:http';

export interface LoadResult {
  requests: number;
  /** Every answered request including the warm-up ones (for the server's CPU time per request). */
  totalRequests?: number;
  errors: number;
  non200: number;
  bytes: number;
  elapsedMs: number;
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function main(): Promise<void> {
  const [url, cArg, dArg, mArg, wArg] = process.argv.slice(2);
  if (!url || !cArg || !dArg || !mArg) throw new Error('usage: load.ts <url> <concurrency> <durationMs> <maxRequests> [warmupMs]');
  const concurrency = Number(cArg);
  const durationMs = Number(dArg);
  const maxRequests = Number(mArg);
  const warmupMs = Number(wArg ?? 500);
  const u = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  const opts: http.RequestOptions = { agent, host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'GET' };

  let measuring = false;
  let stop = false;
  let end = 0;
  let finished: () => void = () => undefined;
  const done = new Promise<void>((r) => (finished = r));
  const finish = () => {
    if (stop) return;
    stop = true;
    end = performance.now();
    finished();
  };
  let requests = 0;
  let all = 0;
  let errors = 0;
  let non200 = 0;
  let bytes = 0;
  const lat = new Float64Array(maxRequests);

  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = http.request(opts, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => {
          all++;
          if (measuring && !stop) {
            if (res.statusCode !== 200) non200++;
            if (requests < maxRequests) lat[requests] = performance.now() - t0;
            requests++;
            bytes += n;
            if (requests >= maxRequests) finish();
          }
          resolve();
        });
        res.on('error', () => {
          if (measuring) errors++;
          resolve();
        });
      });
      req.on('error', () => {
        if (measuring) errors++;
        resolve();
      });
      req.end();
    });

  const loop = async () => {
    // Bounded: at most maxRequests counted requests per loop, plus the warm-up ones.
    for (let i = 0; !stop && i < maxRequests * 2 + 1_000_000; i++) await one();
  };

  const loops = Array.from({ length: concurrency }, loop);
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const start = performance.now();
  // The bound for `requests` is checked in `one`; the clock by the timer.
  const timer = setTimeout(finish, durationMs);
  await done;
  const elapsedMs = end - start;
  clearTimeout(timer);
  await Promise.all(loops);
  agent.destroy();

  const n = Math.min(requests, maxRequests);
  const sorted = lat.slice(0, n).sort();
  const result: LoadResult = {
    requests,
    totalRequests: all,
    errors,
    non200,
    bytes,
    elapsedMs,
    rps: requests / (elapsedMs / 1000),
    latencyMs: {
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.length ? sorted[sorted.length - 1]! : 0,
    },
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e: Error) => {
  process.stderr.write(`load: ${e.message}\n`);
  process.exit(1);
});
