// The SQLite store serves latest() from memory while no connection has committed. It sees a
// commit through any store of this process at once, and one by another process at its next look:
// it watches the WAL-index header in `<db>-shm` (src/storage/sqlite-wal-watch.ts) once per
// event-loop turn, and again after REUSE_MS within a turn, instead of running PRAGMA data_version
// per read.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setImmediate as nextTurn } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/storage/sqlite.js';
import { REUSE_MS, WalWatch } from '../../src/storage/sqlite-wal-watch.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';

let dir: string;
let n = 0;
before(async () => {
  dir = await makeTempDir('storage-wal-watch');
});
after(async () => {
  await removeTempDir(dir);
});
const freshPath = () => path.join(dir, `t${++n}`, 'trustgate.db');
const files = (v: number) => [
  { role: 'targets', version: v, bytes: Buffer.from(`targets ${v}`) },
  { role: 'timestamp', version: v, bytes: Buffer.from(`timestamp ${v}`) },
];

test('WalWatch: changed on the first look and after each commit by another connection, not otherwise', async () => {
  const p = freshPath();
  const store = new SqliteStore(p);
  const watch = WalWatch.open(p);
  assert.ok(watch, 'a WAL-mode database has a -shm file to watch');
  const other = new Database(p);
  try {
    assert.equal(watch.changed(), true);
    assert.equal(watch.changed(), false);
    other.prepare("INSERT INTO tuf_files VALUES ('g/x', 'root', 1, '', x'00', 0)").run();
    assert.equal(watch.changed(), true);
    assert.equal(watch.changed(), false);
    // A read by anyone is not a change.
    other.prepare('SELECT COUNT(*) FROM tuf_files').get();
    await store.latest('g/x', 'root');
    assert.equal(watch.changed(), false);
    await store.commit('g/y', files(1), new Date());
    assert.equal(watch.changed(), true);
    // frames() reads the WAL's length from the same header: it matches SQLite's own count.
    const before = watch.frames();
    const log = (other.pragma('wal_checkpoint(PASSIVE)') as { log: number }[])[0]!.log;
    assert.ok(before > 0 && before === log, `frames() says ${before}, SQLite says ${log}`);
    // That checkpoint copied every frame, so the next commit starts the WAL over.
    await store.commit('g/y', files(2), new Date());
    const after = watch.frames();
    assert.ok(after > 0 && after < before + 1, `after a fresh start the WAL holds ${after} frames (before: ${before})`);
  } finally {
    watch.close();
    other.close();
    await store.close();
  }
  assert.equal(WalWatch.open(path.join(dir, 'missing', 'x.db')), undefined);
});

test("two connections: each commit by one is seen by the other's very next latest()", async () => {
  const p = freshPath();
  const a = new SqliteStore(p);
  const b = new SqliteStore(p);
  try {
    for (let v = 1; v <= 300; v++) {
      const [writer, reader] = v % 3 === 0 ? [b, a] : [a, b];
      await writer.commit('example.com/seen', files(v), new Date());
      assert.equal((await reader.latest('example.com/seen', 'timestamp'))?.version, v, `reader stale after commit ${v}`);
      // And a second read from the memo gives the same row.
      assert.equal((await reader.latest('example.com/seen', 'targets'))?.version, v);
    }
  } finally {
    await a.close();
    await b.close();
  }
});

test('changedThisTurn: one look stands for the rest of its event-loop turn, and for reuseMs at most', async () => {
  const p = freshPath();
  const store = new SqliteStore(p);
  const other = new Database(p);
  const insert = (v: number) => other.prepare("INSERT INTO tuf_files VALUES ('g/turn', 'root', ?, '', x'00', 0)").run(v);
  // A minute: within this test's turns, only the turn ends a look.
  const slow = WalWatch.open(p, 60_000)!;
  const quick = WalWatch.open(p)!;
  try {
    assert.equal(slow.changedThisTurn(), true);
    insert(1);
    assert.equal(slow.changedThisTurn(), false, 'the same turn stands on its first look');
    assert.equal(slow.changed(), true, 'a direct look sees the commit');
    insert(2);
    await nextTurn();
    assert.equal(slow.changedThisTurn(), true, 'the next turn looks again');
    assert.equal(slow.changedThisTurn(), false);
    // Told that another process committed, it looks again within the turn.
    insert(20);
    assert.equal(slow.changedThisTurn(), false);
    slow.forgetLook();
    assert.equal(slow.changedThisTurn(), true, 'forgetLook: the next call looks');
    assert.equal(slow.changedThisTurn(), false, 'and later calls of the turn stand on that look');
    // Within one long turn, a look older than REUSE_MS is taken again.
    assert.equal(quick.changedThisTurn(), true);
    insert(3);
    const until = performance.now() + REUSE_MS + 1;
    while (performance.now() < until) {
      // busy: no turn passes
    }
    assert.equal(quick.changedThisTurn(), true, 'a look older than REUSE_MS is redone');
  } finally {
    slow.close();
    quick.close();
    other.close();
    await store.close();
  }
});

test("another process's commit shows at the next look, or at once when the store is told (committedElsewhere); this process's, at once", async () => {
  const p = freshPath();
  const writer = new SqliteStore(p);
  // A minute: only the turn, or being told, makes this reader look again.
  const reader = new SqliteStore(p, { walReuseMs: 60_000 });
  // A plain connection stands in for another process: its commits do not pass through a SqliteStore here.
  const other = new Database(p);
  const gun = 'example.com/told';
  const stamp = (v: number) => other.prepare("INSERT INTO tuf_files VALUES (?, 'timestamp', ?, '', x'00', 0)").run(gun, v);
  try {
    await writer.commit(gun, files(1), new Date());
    await nextTurn();
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 1);
    // Another store in this process: seen at once, within the turn.
    await writer.commit(gun, files(2), new Date());
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 2, 'a commit through a store of this process is seen at once');
    // Another process: the turn's look stands until the next turn, or until the store is told.
    stamp(3);
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 2, 'within the turn, the look stands');
    reader.committedElsewhere();
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 3, 'told, it looks again');
    stamp(4);
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 3);
    await nextTurn();
    assert.equal((await reader.latest(gun, 'timestamp'))?.version, 4, 'the next turn looks again');
  } finally {
    other.close();
    await writer.close();
    await reader.close();
  }
});

test("another process: each of its commits is seen by this process's next latest()", async () => {
  const p = freshPath();
  const store = new SqliteStore(p);
  const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sqlite-worker.ts');
  const gun = 'example.com/other-process';
  const child = spawn(process.execPath, ['--import', 'tsx', worker, p, 'race', JSON.stringify({ id: 0, gun })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error(`worker ended: ${err}`);
    return r.value;
  };
  try {
    assert.equal(await next(), 'ready');
    // Warm the memo so that a stale answer would be possible.
    assert.equal(await store.latest(gun, 'timestamp'), undefined);
    for (let round = 0; round < 40; round++) {
      child.stdin.write(`go ${Date.now()}\n`);
      const res = JSON.parse(await next()) as { ok: boolean; error?: string };
      assert.ok(res.ok, res.error);
      assert.equal((await store.latest(gun, 'timestamp'))?.version, round + 2, `stale after the other process's commit ${round}`);
    }
    child.stdin.write('exit\n');
  } finally {
    child.kill();
    await store.close();
  }
});
