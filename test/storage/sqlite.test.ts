// The storage contract and concurrency races against SQLite (a temp file per test), plus races
// between separate OS processes on one database file.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../../src/storage/sqlite.js';
import { openStore } from '../../src/storage/open.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { concurrencyContract, file, sha, storeContract } from './contract.js';

let dir: string;
let n = 0;
before(async () => {
  dir = await makeTempDir('storage-sqlite');
});
after(async () => {
  await removeTempDir(dir);
});
const freshPath = () => path.join(dir, `t${++n}`, 'trustgate.db');

storeContract('sqlite', async () => new SqliteStore(freshPath()));
concurrencyContract('sqlite (two connections, one file)', async () => {
  const p = freshPath();
  return [new SqliteStore(p), new SqliteStore(p)];
});

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sqlite-worker.ts');

interface Child {
  proc: ChildProcessWithoutNullStreams;
  lines: AsyncIterator<string>;
}
function spawnWorker(dbPath: string, mode: string, arg: object): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', WORKER, dbPath, mode, JSON.stringify(arg)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  proc.once('exit', (code) => {
    if (code !== 0) process.stderr.write(`sqlite worker exited ${code}: ${err}\n`);
  });
  return { proc, lines: createInterface({ input: proc.stdout })[Symbol.asyncIterator]() };
}
async function nextLine(c: Child, what: string): Promise<string> {
  const r = await Promise.race([
    c.lines.next(),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`worker did not say ${what} in time`)), 30_000).unref()),
  ]);
  if (r.done) throw new Error(`worker exited before ${what}`);
  return r.value;
}

describe('sqlite: separate processes on one file', () => {
  test('6 processes × 25 lockstep rounds racing on one GUN: exactly one winner per round, no partial batches, only conflicts', async () => {
    const dbPath = freshPath();
    const gun = 'proc/race';
    const seed = new SqliteStore(dbPath);
    await seed.commit(gun, [file('root', 1), file('targets', 1), file('snapshot', 1), file('timestamp', 1)], new Date());
    await seed.close();

    const P = 6,
      ROUNDS = 25;
    const kids = Array.from({ length: P }, (_, id) => spawnWorker(dbPath, 'race', { id, gun }));
    try {
      for (const k of kids) assert.equal(await nextLine(k, 'ready'), 'ready');
      type R = { round: number; ok: boolean; conflict?: boolean; error?: string };
      const all: R[][] = kids.map(() => []);
      for (let round = 0; round < ROUNDS; round++) {
        const startAt = Date.now() + 30;
        for (const k of kids) k.proc.stdin.write(`go ${startAt}\n`);
        const rs = await Promise.all(kids.map(async (k) => JSON.parse(await nextLine(k, `round ${round}`)) as R));
        rs.forEach((r, i) => all[i]!.push(r));
      }
      for (const k of kids) k.proc.stdin.write('exit\n');

      const store = new SqliteStore(dbPath);
      try {
        const versions = await store.latestVersions(gun);
        const winsByVersion = new Map<number, number[]>();
        for (const [id, results] of all.entries()) {
          assert.equal(results.length, ROUNDS);
          for (const r of results) {
            if (!r.ok) {
              assert.ok(r.conflict, `process ${id} round ${r.round} failed with a non-conflict error: ${r.error}`);
              assert.equal(versions.has(`targets/w${id}-r${r.round}`), false, `loser ${id}/${r.round} left a partial write`);
              continue;
            }
            const v = r.round + 2;
            winsByVersion.set(v, [...(winsByVersion.get(v) ?? []), id]);
            assert.equal(versions.get(`targets/w${id}-r${r.round}`), 1);
            for (const role of ['targets', 'snapshot', 'timestamp']) {
              const f = await store.byVersion(gun, role, v);
              assert.equal(f?.bytes.toString(), `${role} ${id} ${v}`, `version ${v} of ${role} must be the winner's`);
            }
          }
        }
        // Every round starts from the previous round's version, so every round has exactly one winner.
        for (let v = 2; v < ROUNDS + 2; v++)
          assert.deepEqual(winsByVersion.get(v)?.length, 1, `version ${v} won by ${winsByVersion.get(v)?.join(',') ?? 'nobody'}`);
        const totalWins = [...winsByVersion.values()].flat().length;
        assert.ok(totalWins >= 1);
        // Every stored targets version above 1 belongs to exactly one reported winner.
        let stored = 0;
        for (let v = 2; v < ROUNDS + 2; v++) if (await store.byVersion(gun, 'targets', v)) stored++;
        assert.equal(stored, totalWins);
        assert.equal([...versions.keys()].filter((r) => r.startsWith('targets/w')).length, totalWins);
        const feed = await store.changes({ gun, changeId: 0, records: 1000 });
        assert.equal(feed.length, 1 + totalWins, 'one changefeed record per winning commit');
        const losses = all.flat().filter((r) => !r.ok).length;
        assert.equal(totalWins + losses, P * ROUNDS);
        assert.ok(losses > 0, 'the processes must actually have raced');
      } finally {
        await store.close();
      }
    } finally {
      for (const k of kids) k.proc.kill();
    }
  });

  test('a commit waits for another process holding the write lock instead of failing', async () => {
    const dbPath = freshPath();
    const first = await openStore({ dataDir: path.dirname(dbPath) }); // creates <dataDir>/trustgate.db
    assert.equal(first.kind, 'sqlite');
    await first.close();
    const holder = spawnWorker(dbPath, 'hold', { gun: 'held/lock', ms: 1500 });
    try {
      assert.equal(await nextLine(holder, 'locked'), 'locked');
      // A new connection opening the file while it is locked, then committing.
      const t0 = Date.now();
      const store = new SqliteStore(dbPath);
      try {
        await store.commit('wait/gun', [file('timestamp', 1, 'ts')], new Date());
        assert.ok(Date.now() - t0 >= 500, 'the commit should have had to wait for the lock');
        assert.equal((await store.latest('wait/gun', 'timestamp'))?.sha256, sha('ts'));
        assert.equal((await store.latest('held/lock', 'root'))?.version, 1, 'the other process committed first');
      } finally {
        await store.close();
      }
      assert.equal(await nextLine(holder, 'released'), 'released');
    } finally {
      holder.proc.kill();
    }
  });

  test("another process's commit is visible at once to reads of an open store", async () => {
    const dbPath = freshPath();
    const store = new SqliteStore(dbPath);
    try {
      assert.equal(await store.latest('other/proc', 'root'), undefined);
      assert.deepEqual(await store.latestVersions('other/proc'), new Map());
      const holder = spawnWorker(dbPath, 'hold', { gun: 'other/proc', ms: 0 });
      try {
        assert.equal(await nextLine(holder, 'locked'), 'locked');
        assert.equal(await nextLine(holder, 'released'), 'released');
      } finally {
        holder.proc.kill();
      }
      // No write through this connection in between: only the other process changed the file.
      assert.equal((await store.latest('other/proc', 'root'))?.version, 1);
      assert.deepEqual(await store.latestVersions('other/proc'), new Map([['root', 1]]));
    } finally {
      await store.close();
    }
  });
});
