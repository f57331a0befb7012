// The SQLite store's WAL checkpoints run in a worker thread, not inside commits: after enough
// writes the database file grows (pages were copied out of the WAL) although the store's own
// connection never checkpoints, and the data stays readable by a fresh connection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/storage/sqlite.js';
import { CHECKPOINT_INTERVAL_MS, WAL_RESTART_FRAMES } from '../../src/storage/sqlite-checkpointer.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';

let dir: string;
before(async () => {
  dir = await makeTempDir('storage-checkpointer');
});
after(async () => {
  await removeTempDir(dir);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What the WAL may reach: the restart point plus what commits add while a checkpoint runs. */
const WAL_BOUND_BYTES = WAL_RESTART_FRAMES * (4096 + 24) + 16 * 2 ** 20;

test('a thread checkpoints the WAL into the database file; commits never do', async () => {
  const dbPath = path.join(dir, 'a', 'trustgate.db');
  const store = new SqliteStore(dbPath);
  try {
    const before = statSync(dbPath).size;
    // 3 MiB in 64 KiB files: below SQLite's own automatic checkpoint point (1000 pages, ~4 MiB),
    // so if the database file grows, something other than an automatic checkpoint moved the pages.
    const blob = Buffer.alloc(64 * 1024, 7);
    for (let v = 1; v <= 48; v++) await store.commit('example.com/ckpt', [{ role: 'targets', version: v, bytes: blob }], new Date());
    let grown = false;
    for (let i = 0; i < 20 && !grown; i++) {
      await sleep(CHECKPOINT_INTERVAL_MS / 2);
      grown = statSync(dbPath).size >= before + 48 * 64 * 1024;
    }
    assert.ok(grown, `database file is still ${statSync(dbPath).size} bytes: no checkpoint ran`);
    // Everything committed is there for a new connection reading the checkpointed file.
    const db = new Database(dbPath, { readonly: true });
    try {
      const n = db.prepare('SELECT COUNT(*) AS n FROM tuf_files').get() as { n: number };
      assert.equal(n.n, 48);
    } finally {
      db.close();
    }
    assert.equal((await store.latest('example.com/ckpt', 'targets'))?.version, 48);
  } finally {
    await store.close();
  }
});

test('back-to-back commits cannot grow the WAL without bound', async () => {
  // A passive checkpoint lets the next writer start the WAL over only if it finished before that
  // writer began. Commits that never pause (a busy CI fleet signing) kept every checkpoint
  // behind, and the WAL grew with every byte ever written (60 MB after 1,000 publishes).
  const dbPath = path.join(dir, 'c', 'trustgate.db');
  const store = new SqliteStore(dbPath);
  try {
    const blob = Buffer.alloc(512 * 1024, 9);
    const n = 160; // 80 MiB through the WAL
    let maxWal = 0;
    for (let v = 1; v <= n; v++) {
      blob.writeUInt32BE(v, 0); // distinct pages, as real files are
      await store.commit('example.com/burst', [{ role: 'targets', version: v, bytes: blob }], new Date());
      maxWal = Math.max(maxWal, statSync(`${dbPath}-wal`).size);
    }
    assert.ok(
      maxWal < WAL_BOUND_BYTES,
      `the WAL reached ${(maxWal / 2 ** 20).toFixed(1)} MiB while ${(n / 2).toFixed(0)} MiB were written`,
    );
    assert.equal((await store.latest('example.com/burst', 'targets'))?.version, n);
    assert.equal((await store.byVersion('example.com/burst', 'targets', 1))?.bytes.readUInt32BE(0), 1);
  } finally {
    await store.close();
  }
});

test('close stops the checkpoint thread promptly and leaves a usable database', async () => {
  const dbPath = path.join(dir, 'b', 'trustgate.db');
  const store = new SqliteStore(dbPath);
  await store.commit('example.com/close', [{ role: 'targets', version: 1, bytes: Buffer.from('{}') }], new Date());
  const t0 = performance.now();
  await store.close();
  assert.ok(performance.now() - t0 < 2000, 'close waited for the thread too long');
  const again = new SqliteStore(dbPath);
  try {
    assert.equal((await again.latest('example.com/close', 'targets'))?.version, 1);
  } finally {
    await again.close();
  }
});
