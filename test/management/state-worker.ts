// A child process for multiprocess-state.test.ts: opens the data directory's tokens, audit log and
// pending changes the way the app does (one shared state lock), says `ready`, waits for `go` on
// stdin so that all children start together, then works and prints a JSON summary.
//
//   node --import tsx state-worker.ts <dataDir> <name> work <appends>
//   node --import tsx state-worker.ts <dataDir> <name> hold <ms>     (holds the lock, then exits)
import { createInterface } from 'node:readline';
import { AuditLog } from '../../src/audit/log.js';
import { TokenStore, bootstrapAdminToken } from '../../src/auth/tokens.js';
import { PendingStore, pendingChange } from '../../src/trust/pending.js';
import { StateLock } from '../../src/state/lock.js';

const [dir, name, mode, arg] = process.argv.slice(2) as [string, string, string, string];
const lock = new StateLock(dir);
const tokens = new TokenStore(dir, Date.now, lock);
const audit = new AuditLog(dir, Date.now, lock);
const pending = new PendingStore(dir, Date.now, lock);

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function work(appends: number) {
  const boot = bootstrapAdminToken(tokens, dir);
  const tokenIds: string[] = [];
  const pendingIds: string[] = [];
  for (let i = 0; i < appends; i++) {
    audit.append({ actor: { id: name, name }, action: 'test.append', outcome: 'success', detail: { i } });
    if (i % 10 === 0) tokenIds.push(tokens.create({ name: `${name}-${i}`, scopes: ['reader'], createdBy: name }).info.id);
    if (i % 25 === 0) {
      const p = pendingChange(
        { gun: `example.com/${name}`, action: 'tag.add', summary: `${name} ${i}`, parts: [], createdKeyIds: [], retireKeyIds: [] },
        { id: name, name },
        Date.now(),
        3600_000,
      );
      pending.put(p);
      pendingIds.push(p.id);
    }
  }
  return { bootstrapped: boot.token !== undefined, tokenIds, pendingIds };
}

process.stdout.write('ready\n');
const rl = createInterface({ input: process.stdin });
rl.once('line', () => {
  rl.close();
  if (mode === 'hold') {
    lock.run(() => {
      process.stdout.write('locked\n');
      sleep(Number(arg));
    });
    process.stdout.write(JSON.stringify({ released: true }) + '\n');
  } else {
    process.stdout.write(JSON.stringify(work(Number(arg))) + '\n');
  }
  lock.close();
});
