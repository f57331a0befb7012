// WAL checkpoints in a worker thread, so a commit only appends to the WAL and never stalls the event
// loop copying and fsyncing it. Passive checkpoints cannot bound the WAL under back-to-back
// commits; the store does that past WAL_RESTART_FRAMES (docs/performance.md). If the thread fails,
// the store turns SQLite's own checkpoints back on.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the thread checkpoints (a passive checkpoint with nothing to copy costs microseconds). */
export const CHECKPOINT_INTERVAL_MS = 1000;

/** Past this many WAL frames (4 KiB pages, SQLite's own autocheckpoint point) each commit asks for a checkpoint. */
export const WAL_CHECKPOINT_FRAMES = 1000;
/** Past this many WAL frames (about 16 MiB) the store makes the WAL start over itself. */
export const WAL_RESTART_FRAMES = 4000;
/** How long the store's own RESTART checkpoint may wait for another writer or a reader. */
export const RESTART_WAIT_MS = 50;
/** What the WAL file is cut back to when it starts over. */
export const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;

// The thread's code, evaluated as CommonJS so that it runs the same from dist/ and under tsx.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
db.pragma('synchronous = FULL');
db.pragma('journal_size_limit = ' + workerData.sizeLimit);
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let timer;
let kicked = false;
const run = () => {
  try {
    passive.get();
  } catch (e) {
    // SQLITE_BUSY: another connection is checkpointing; the next tick tries again.
    if (!e || e.code !== 'SQLITE_BUSY') throw e;
  }
};
const tick = () => {
  run();
  timer = setTimeout(tick, workerData.intervalMs);
};
const afterKick = () => {
  kicked = false;
  run();
};
parentPort.on('message', (m) => {
  if (m === 'kick') {
    // Commits that queued up behind one checkpoint need only the next one.
    if (!kicked) {
      kicked = true;
      setImmediate(afterKick);
    }
    return;
  }
  if (m !== 'stop') return;
  clearTimeout(timer);
  try { passive.get(); } catch {}
  db.close();
  parentPort.close();
});
tick();
`;

export interface Checkpointer {
  /** Asks for a checkpoint now, without waiting for it (the store does this once its WAL is long). */
  kick(): void;
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
    workerData: { path, driver, busyTimeoutMs, intervalMs: CHECKPOINT_INTERVAL_MS, sizeLimit: WAL_SIZE_LIMIT_BYTES },
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
    kick: () => {
      if (!stopping) worker.postMessage('kick');
    },
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
