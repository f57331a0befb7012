// The cluster primary (TRUSTGATE_WORKERS > 1): prepares the shared state once, then forks the
// workers that serve requests, keeps their number up, merges their metrics for /metrics, and
// stops them all on SIGTERM/SIGINT. It serves no request itself (docs/cluster.md).
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/config.js';
import type { Logger } from '../observability/log.js';
import { removeLeftoverBackups } from '../storage/backup-dirs.js';
import { Metrics, type MetricsSnapshot } from '../observability/metrics.js';
import { clusterMessage, type ClusterMessage } from './messages.js';

/** A worker that dies is replaced after this long, doubled for each recent death, at most MAX. */
const RESTART_DELAY_MS = 100;
const RESTART_DELAY_MAX_MS = 5000;
/** This many deaths within the window mean workers cannot run: the primary gives up. */
const DEATH_LIMIT = 5;
const DEATH_WINDOW_MS = 30_000;
/** How long workers get after SIGTERM beyond their own shutdown timeout before they are killed. */
const STOP_GRACE_MS = 5000;
/** How long a /metrics merge waits for each worker's snapshot; a worker that is late is left out. */
const SNAPSHOT_TIMEOUT_MS = 1000;

export interface PrimaryOptions {
  workers: number;
  /** The trust server's URL, for the log. */
  url: string;
  log: Logger;
  /** Opens the app once and closes it (schema, keystore, first admin token); returns what the log names. */
  prepare(): Promise<Record<string, string>>;
}

export async function runPrimary(config: Config, opts: PrimaryOptions): Promise<void> {
  const { log } = opts;
  // The one-time preparation, before any worker exists, so workers never race on it: backup
  // copies an earlier run left behind, the store's schema, the keystore and its secret, the first
  // admin token (logged here, once).
  await removeLeftoverBackups(config.dataDir, log);
  const kinds = await opts.prepare();

  // Structured clone keeps what JSON would not (NaN in process metrics).
  cluster.setupPrimary({ serialization: 'advanced' });
  const live = new Map<number, Worker>();
  const ready = new Set<number>();
  let announced = false;
  const deaths: number[] = [];
  const restarts = new Set<NodeJS.Timeout>();
  let stopping = false;

  // Metrics: the last snapshot each worker sent, and what stopped workers had counted.
  const lastSnapshot = new Map<number, MetricsSnapshot>();
  let retired: MetricsSnapshot | undefined;
  const collections = new Map<number, { waiting: Set<number>; got: MetricsSnapshot[]; done: () => void }>();
  let nextCollection = 0;

  const send = (w: Worker, m: ClusterMessage): boolean => {
    if (!w.isConnected()) return false;
    try {
      w.send(m);
      return true;
    } catch {
      return false;
    }
  };

  const fork = () => {
    const w = cluster.fork();
    live.set(w.id, w);
  };

  /** Every live worker's snapshot (those answering within the timeout), merged with the retired counts. */
  const collect = async (): Promise<MetricsSnapshot> => {
    const id = ++nextCollection;
    const got: MetricsSnapshot[] = [];
    await new Promise<void>((resolve) => {
      const waiting = new Set<number>();
      const timer = setTimeout(() => finish(), SNAPSHOT_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        collections.delete(id);
        resolve();
      };
      collections.set(id, { waiting, got, done: finish });
      // Only workers that serve: one still starting has counted nothing and would not answer yet.
      for (const w of live.values()) if (ready.has(w.id) && send(w, { type: 'trustgate:snapshot?', id })) waiting.add(w.id);
      if (waiting.size === 0) finish();
    });
    return Metrics.merge(retired ? [...got, retired] : got);
  };

  cluster.on('message', (worker: Worker, raw: unknown) => {
    const m = clusterMessage(raw);
    if (!m) return;
    switch (m.type) {
      case 'trustgate:ready':
        ready.add(worker.id);
        if (!announced && ready.size >= opts.workers) {
          announced = true;
          log('info', 'trustgate listening', { url: opts.url, ...kinds, workers: opts.workers });
          if (m.proxy) log('info', 'registry proxy listening', m.proxy);
        } else if (announced) log('info', 'worker started', { pid: worker.process.pid });
        break;
      case 'trustgate:metrics?':
        void collect().then(
          (snapshot) => send(worker, { type: 'trustgate:metrics', id: m.id, snapshot }),
          (e: Error) => send(worker, { type: 'trustgate:metrics', id: m.id, error: e.message }),
        );
        break;
      case 'trustgate:snapshot': {
        lastSnapshot.set(worker.id, m.snapshot);
        const c = collections.get(m.id);
        if (c && c.waiting.delete(worker.id)) {
          c.got.push(m.snapshot);
          if (c.waiting.size === 0) c.done();
        }
        break;
      }
      case 'trustgate:change':
        for (const w of live.values()) if (w !== worker) send(w, m);
        break;
    }
  });

  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const t of restarts) clearTimeout(t);
    restarts.clear();
    if (live.size === 0) process.exit(code);
    for (const w of live.values()) w.process.kill('SIGTERM');
    const graceMs = config.shutdownTimeoutMs + STOP_GRACE_MS;
    setTimeout(() => {
      log('warn', `workers did not stop within ${graceMs / 1000} s: killing them`, {
        pids: [...live.values()].map((w) => w.process.pid),
      });
      for (const w of live.values()) w.process.kill('SIGKILL');
      process.exit(code);
    }, graceMs);
    cluster.on('exit', () => {
      if (live.size === 0) process.exit(code);
    });
  };

  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    live.delete(worker.id);
    ready.delete(worker.id);
    // A stopped worker's counts stay in the merge (as of its last snapshot), so counters never go back.
    const last = lastSnapshot.get(worker.id);
    lastSnapshot.delete(worker.id);
    if (last) retired = Metrics.merge(retired ? [retired, Metrics.cumulative(last)] : [Metrics.cumulative(last)]);
    for (const c of collections.values()) if (c.waiting.delete(worker.id) && c.waiting.size === 0) c.done();
    if (stopping) return;

    const now = Date.now();
    deaths.push(now);
    while (deaths.length > 0 && deaths[0]! <= now - DEATH_WINDOW_MS) deaths.shift();
    if (deaths.length >= DEATH_LIMIT) {
      log('error', `workers keep stopping (${deaths.length} within ${DEATH_WINDOW_MS / 1000} s): giving up`, {
        pid: worker.process.pid,
        code,
        signal,
      });
      stop(1);
      return;
    }
    const delay = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MS * 2 ** (deaths.length - 1));
    log('warn', 'worker stopped unexpectedly: starting another', { pid: worker.process.pid, code, signal, inMs: delay });
    const t = setTimeout(() => {
      restarts.delete(t);
      fork();
    }, delay);
    restarts.add(t);
  });

  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
  for (let i = 0; i < opts.workers; i++) fork();
}
