// WAL checkpoints off the event loop. better-sqlite3 is synchronous: when SQLite's automatic
// checkpoint fires inside a commit, that request's thread copies the WAL into the database and
// fsyncs it, and on this kind of disk the event loop stalls for 100-200 ms every few megabytes
// written. A worker thread with its own connection runs passive checkpoints instead, so commits
// only append to the WAL. If the thread fails, the store turns SQLite's own checkpoints back on.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the thread checkpoints (a passive checkpoint with nothing to copy costs microseconds). */
export const CHECKPOINT_INTERVAL_MS = 1000;

// The thread's code, evaluated as CommonJS so that it runs the same from dist/ and under tsx.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
db.pragma('synchronous = FULL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let timer;
const tick = () => {
  try {
    checkpoint.get();
  } catch (e) {
    // SQLITE_BUSY: another connection is checkpointing; the next tick tries again.
    if (!e || e.code !== 'SQLITE_BUSY') throw e;
  }
  timer = setTimeout(tick, workerData.intervalMs);
};
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearTimeout(timer);
  try { checkpoint.get(); } catch {}
  db.close();
  parentPort.close();
});
tick();
`;

export interface Checkpointer {
  /** Stops the thread after a last checkpoint. */
  stop(): Promise<void>;
}

/**
 * Starts checkpointing `path` in a worker thread. `onFailure` runs once if the thread dies
 * (the caller re-enables automatic checkpoints).
 */
export function startCheckpointer(path: string, busyTimeoutMs: number, onFailure: (e: Error) => void): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(THREAD_SOURCE, {
    eval: true,
    workerData: { path, driver, busyTimeoutMs, intervalMs: CHECKPOINT_INTERVAL_MS },
    // The thread needs none of the parent's loaders (tsx) or flags.
    execArgv: [],
  });
  worker.unref();
  let stopping = false;
  worker.on('error', (e) => {
    if (!stopping) onFailure(e);
  });
  worker.on('exit', (code) => {
    if (!stopping) onFailure(new Error(`WAL checkpoint thread exited with code ${code}`));
  });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        if (stopping) return resolve();
        stopping = true;
        const timer = setTimeout(() => void worker.terminate().then(() => resolve()), 2000);
        worker.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        worker.postMessage('stop');
      }),
  };
}
