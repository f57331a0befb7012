// Child process for the SQLite multi-process tests (not a test file itself).
// argv: <db path> <mode> <json>
//   race: json = { id, gun }. Prints "ready"; then for every "go <epoch ms>" line on stdin
//         commits one batch (round r → version r+2) at that instant and prints its result.
//   hold: json = { gun, ms }. Takes the write lock (BEGIN IMMEDIATE), stores root v1 of gun,
//         prints "locked", holds the lock for ms, commits, prints "released".
import Database from 'better-sqlite3';
import { createInterface } from 'node:readline';
import { SqliteStore } from '../../src/storage/sqlite.js';
import { VersionConflictError } from '../../src/storage/types.js';

const [dbPath, mode, json] = process.argv.slice(2) as [string, string, string];
const arg = JSON.parse(json) as { id: number; gun: string; ms: number };

if (mode === 'hold') {
  const db = new Database(dbPath);
  db.exec('BEGIN IMMEDIATE');
  db.prepare("INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES (?, 'root', 1, '', x'00', 0)").run(arg.gun);
  process.stdout.write('locked\n');
  setTimeout(() => {
    db.exec('COMMIT');
    db.close();
    process.stdout.write('released\n');
  }, arg.ms);
} else {
  // Lockstep: each stdin line "go <epoch ms>" runs one round; the worker spins until that
  // instant so all processes start the round together, then prints the round's result.
  const store = new SqliteStore(dbPath);
  let round = 0;
  const lines = createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  for await (const line of lines) {
    if (line === 'exit') break;
    const startAt = Number(line.split(' ')[1]);
    // Sleep most of the way, then spin the last few ms: a timer alone adds scheduler jitter.
    await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now() - 4)));
    while (Date.now() < startAt) {
      /* spin */
    }
    const v = round + 2;
    const batch = [
      // A role only this process and round has: a loser's partial write would show.
      { role: `targets/w${arg.id}-r${round}`, version: 1, bytes: Buffer.from(`only ${arg.id} ${round}`) },
      // Some bulk so that transactions last long enough to overlap.
      ...Array.from({ length: 20 }, (_, i) => ({ role: `targets/bulk${i}`, version: v, bytes: Buffer.alloc(2048, `${arg.id}`) })),
      { role: 'targets', version: v, bytes: Buffer.from(`targets ${arg.id} ${v}`) },
      { role: 'snapshot', version: v, bytes: Buffer.from(`snapshot ${arg.id} ${v}`) },
      { role: 'timestamp', version: v, bytes: Buffer.from(`timestamp ${arg.id} ${v}`) },
    ];
    let result: { round: number; ok: boolean; conflict?: boolean; error?: string };
    try {
      await store.commit(arg.gun, batch, new Date());
      result = { round, ok: true };
    } catch (e) {
      result = {
        round,
        ok: false,
        conflict: e instanceof VersionConflictError,
        error: `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`,
      };
    }
    process.stdout.write(JSON.stringify(result) + '\n');
    round++;
  }
  await store.close();
  process.exit(0);
}
