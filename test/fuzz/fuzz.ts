// The fuzz loop: one trustgate, publishes and API bodies interleaved by a seeded PRNG, every
// request checked (no 5xx; a refusal changes nothing stored). Bounded by a count and a time.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiFuzzer } from './api.js';
import { FuzzFailure, check, fingerprint, startTarget, type Fingerprint } from './harness.js';
import { Rng } from './prng.js';
import { publishFuzzer } from './publish.js';

export interface FuzzOptions {
  seed: number;
  /** Stop after this many requests. */
  iterations: number;
  /** Stop after this many seconds, whatever the count. */
  seconds: number;
  /** Share of publishes among the requests (the rest are API bodies). */
  publishShare?: number;
  /** Where failing inputs are written. */
  outDir?: string;
  log?: (line: string) => void;
  /** Record failures and go on (a long run's survey) instead of stopping at the first. */
  keepGoing?: boolean;
}

export interface FuzzStats {
  seed: number;
  requests: number;
  publishes: number;
  apiBodies: number;
  /** Answers by status code. */
  statuses: Record<string, number>;
  accepted: number;
  seconds: number;
  /** Failures seen (keepGoing only; otherwise the first one is thrown). */
  failures: string[];
}

export const defaultOutDir = () => join(tmpdir(), 'trustgate-fuzz');

export async function runFuzz(opts: FuzzOptions): Promise<FuzzStats> {
  const log = opts.log ?? (() => {});
  const outDir = opts.outDir ?? defaultOutDir();
  const rng = new Rng(opts.seed);
  log(`fuzz: seed ${opts.seed}, at most ${opts.iterations} requests or ${opts.seconds} s; failing inputs go to ${outDir}`);
  const t = await startTarget();
  const started = Date.now();
  const stats: FuzzStats = {
    seed: opts.seed,
    requests: 0,
    publishes: 0,
    apiBodies: 0,
    statuses: {},
    accepted: 0,
    seconds: 0,
    failures: [],
  };
  try {
    const pub = await publishFuzzer(t);
    const api = await apiFuzzer(t);
    const deadline = started + opts.seconds * 1000;
    let before: Fingerprint | undefined;
    let lastGun = '';
    for (let i = 0; i < opts.iterations && Date.now() < deadline; i++) {
      const isPublish = rng.chance(opts.publishShare ?? 0.5);
      const f = isPublish ? pub : api;
      const { request, mutations } = await f.next(rng);
      const gun = f.gun();
      // The snapshot after the last request is the one before this one, unless the GUN changed.
      if (!before || gun !== lastGun) before = await fingerprint(t, [gun]);
      lastGun = gun;
      let res;
      try {
        res = await check(
          t,
          { seed: opts.seed, iteration: i, kind: isPublish ? 'publish' : 'api', mutations, outDir, guns: [gun] },
          request,
          before,
        );
      } catch (e) {
        if (!(opts.keepGoing && e instanceof FuzzFailure)) throw e;
        stats.failures.push(e.message);
        log(e.message);
        before = undefined;
        continue;
      }
      stats.requests++;
      if (isPublish) stats.publishes++;
      else stats.apiBodies++;
      stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
      before = res.after;
      if (res.status < 300) {
        stats.accepted++;
        await f.accepted();
        before = undefined; // fixtures may have been made again
      }
      if (i > 0 && i % 1000 === 0)
        log(`fuzz: ${i} requests, ${Math.round((Date.now() - started) / 1000)} s, statuses ${JSON.stringify(stats.statuses)}`);
    }
  } finally {
    stats.seconds = (Date.now() - started) / 1000;
    await t.stop();
  }
  if (stats.failures.length > 0) log(`fuzz: ${stats.failures.length} failure(s); inputs in ${outDir}`);
  log(
    `fuzz: done: ${stats.requests} requests (${stats.publishes} publishes, ${stats.apiBodies} API bodies, ${stats.accepted} accepted) in ${stats.seconds.toFixed(1)} s; statuses ${JSON.stringify(stats.statuses)}`,
  );
  return stats;
}
