// Several processes sharing one data directory (node:cluster workers): tokens, the audit log and
// pending changes stay one coherent state. First two instances in this process (each with its own
// memory and its own lock connection), then real child processes working at the same time.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { AuditLog, type AuditEntry } from '../../src/audit/log.js';
import { TokenStore, bootstrapAdminToken, type TokenRecord } from '../../src/auth/tokens.js';
import { PendingStore, pendingChange, type PendingChange } from '../../src/trust/pending.js';
import { StateLock, StateLockTimeout } from '../../src/state/lock.js';

const here = dirname(fileURLToPath(import.meta.url));
const WORKER = join(here, 'state-worker.ts');
const ROOT = join(here, '..', '..');

const change = (gun: string, ttlMs = 3600_000, nowMs = Date.now()): PendingChange =>
  pendingChange(
    { gun, action: 'tag.add', summary: gun, parts: [], createdKeyIds: [], retireKeyIds: [] },
    { id: 't', name: 'n' },
    nowMs,
    ttlMs,
  );

describe('two instances on one data directory in one process', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'trustgate-state-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a token made in one is accepted by the other; revoked in one, refused by the other at once', () => {
    const a = new TokenStore(join(dir, 'tok1'));
    const b = new TokenStore(join(dir, 'tok1'));
    assert.equal(b.size, 0);
    const { token, info } = a.create({ name: 'ci', scopes: ['reader'], createdBy: 'test' });
    assert.equal(b.authenticate(token)?.id, info.id);
    assert.deepEqual(b.get(info.id), info);
    const second = b.create({ name: 'ci2', scopes: ['admin'], createdBy: 'test' });
    assert.equal(a.authenticate(second.token)?.id, second.info.id);
    assert.deepEqual(
      a.activeAdmins().map((t) => t.id),
      [second.info.id],
    );
    assert.equal(a.revoke(info.id), true);
    assert.equal(b.authenticate(token), undefined);
    assert.equal(b.get(info.id), undefined);
    assert.equal(b.revoke(info.id), false, 'already revoked elsewhere');
    assert.equal(statSync(a.path).mode & 0o777, 0o600);
  });

  test('interleaved creates and revokes in both lose nothing', () => {
    const a = new TokenStore(join(dir, 'tok2'));
    const b = new TokenStore(join(dir, 'tok2'));
    const made: string[] = [];
    for (let i = 0; i < 20; i++) made.push((i % 2 ? a : b).create({ name: `t${i}`, scopes: ['reader'], createdBy: 'test' }).info.id);
    assert.deepEqual(
      a.list().map((t) => t.id),
      made,
    );
    assert.deepEqual(
      b.list().map((t) => t.id),
      made,
    );
    for (let i = 0; i < 20; i += 3) assert.equal((i % 2 ? b : a).revoke(made[i]!), true);
    const left = made.filter((_, i) => i % 3 !== 0);
    assert.deepEqual(
      a.list().map((t) => t.id),
      left,
    );
    const onDisk = JSON.parse(readFileSync(a.path, 'utf8')) as { tokens: TokenRecord[] };
    assert.deepEqual(
      onDisk.tokens.map((t) => t.id),
      left,
    );
  });

  test('the admin token is made once, whichever instance asks', () => {
    const d = join(dir, 'boot');
    const a = new TokenStore(d);
    const b = new TokenStore(d);
    const first = bootstrapAdminToken(a, d);
    assert.ok(first.token);
    assert.deepEqual(bootstrapAdminToken(b, d), {});
    assert.equal(b.authenticate(first.token)?.scopes[0], 'admin');
    assert.equal(readFileSync(join(d, 'admin-token'), 'utf8').trim(), first.token);
  });

  test('appends from both form one chain', () => {
    const a = new AuditLog(join(dir, 'audit'));
    const b = new AuditLog(join(dir, 'audit'));
    const seqs: number[] = [];
    for (let i = 0; i < 10; i++)
      seqs.push((i % 3 ? a : b).append({ actor: { id: 'x', name: 'x' }, action: 'test.append', outcome: 'success', detail: { i } }).seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(a.verify(), b.verify());
    assert.equal(b.verify().ok, true);
    assert.equal(a.query({ action: 'test' }).length, 10);
  });

  test('pending changes: puts from both kept, updates see the other, removal and expiry to one only', () => {
    const d = join(dir, 'pending');
    const a = new PendingStore(d);
    const b = new PendingStore(d);
    const p1 = change('example.com/one');
    const p2 = change('example.com/two');
    a.put(p1);
    b.put(p2);
    assert.deepEqual(
      a
        .list()
        .map((p) => p.id)
        .sort(),
      [p1.id, p2.id].sort(),
    );
    assert.equal(b.get(p1.id)?.gun, 'example.com/one');

    const updated = b.update(p1.id, (cur) => ({ ...cur, summary: 'changed in b' }));
    assert.equal(updated?.summary, 'changed in b');
    assert.equal(a.get(p1.id)?.summary, 'changed in b');

    assert.equal(a.remove(p2.id)?.id, p2.id);
    assert.equal(b.remove(p2.id), undefined, 'already removed by the other');
    assert.equal(
      b.update(p2.id, (cur) => cur),
      undefined,
      'an update does not bring a removed change back',
    );
    assert.equal(a.get(p2.id), undefined);

    const soon = change('example.com/soon', 1000, Date.now() - 5000);
    b.put(soon);
    assert.deepEqual(
      a.takeExpired().map((p) => p.id),
      [soon.id],
    );
    assert.deepEqual(b.takeExpired(), []);
    assert.deepEqual(
      b.list().map((p) => p.id),
      [p1.id],
    );
  });
});

interface Child {
  proc: ChildProcess;
  lines: AsyncIterator<string>;
  exited: Promise<number | null>;
}

function startChild(dir: string, name: string, mode: 'work' | 'hold', arg: number): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', WORKER, dir, name, mode, String(arg)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, lines, exited };
}

async function nextLine(c: Child): Promise<string> {
  const r = await c.lines.next();
  if (r.done) throw new Error('the child process ended early');
  return r.value;
}

/** Starts the children, waits until all are ready, then lets them go together. */
async function startTogether(children: Child[]): Promise<void> {
  for (const c of children) assert.equal(await nextLine(c), 'ready');
  for (const c of children) c.proc.stdin!.end('go\n'); // ended, or the child would wait on it
}

describe('child processes on one data directory', { timeout: 120_000 }, () => {
  let dir: string;
  const started: Child[] = [];
  before(() => (dir = mkdtempSync(join(tmpdir(), 'trustgate-state-mp-'))));
  after(() => {
    for (const c of started) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('4 processes appending, making tokens and pending changes at once: one chain, nothing lost, one admin token', async () => {
    const d = join(dir, 'work');
    const N = 4;
    const APPENDS = 50;
    const children = Array.from({ length: N }, (_, i) => startChild(d, `w${i}`, 'work', APPENDS));
    started.push(...children);
    await startTogether(children);
    const results = await Promise.all(
      children.map(async (c) => JSON.parse(await nextLine(c)) as { bootstrapped: boolean; tokenIds: string[]; pendingIds: string[] }),
    );
    assert.deepEqual(await Promise.all(children.map((c) => c.exited)), Array(N).fill(0));

    assert.equal(results.filter((r) => r.bootstrapped).length, 1, 'exactly one process made the admin token');
    const tokens = new TokenStore(d);
    const all = tokens.list();
    assert.equal(all.filter((t) => t.name === 'initial-admin').length, 1);
    assert.equal(tokens.authenticate(readFileSync(join(d, 'admin-token'), 'utf8').trim())?.name, 'initial-admin');
    const made = results.flatMap((r) => r.tokenIds);
    assert.equal(made.length, N * Math.ceil(APPENDS / 10));
    assert.deepEqual(
      all
        .map((t) => t.id)
        .filter((id) => made.includes(id))
        .sort(),
      [...made].sort(),
      'every token made is kept',
    );
    assert.equal(all.length, made.length + 1);

    const audit = new AuditLog(d);
    const v = audit.verify();
    assert.equal(v.ok, true, v.reason);
    assert.equal(v.entries, N * APPENDS);
    const entries = audit.query();
    assert.deepEqual(
      entries.map((e) => e.seq),
      Array.from({ length: N * APPENDS }, (_, i) => i + 1),
    );
    for (let w = 0; w < N; w++) {
      const mine = entries.filter((e: AuditEntry) => e.actor.id === `w${w}`).map((e) => e.detail!.i);
      assert.deepEqual(
        mine,
        Array.from({ length: APPENDS }, (_, i) => i),
        `w${w}'s entries, each once and in order`,
      );
    }
    assert.ok(new Set(entries.map((e) => e.actor.id)).size === N);

    const pending = new PendingStore(d);
    assert.deepEqual(
      pending
        .list()
        .map((p) => p.id)
        .sort(),
      results.flatMap((r) => r.pendingIds).sort(),
    );
    assert.ok(!existsSync(join(d, 'audit.head.tmp')));
  });

  test('a process that dies holding the lock releases it; a waiter gives up after its timeout', async () => {
    const d = join(dir, 'hold');
    const holder = startChild(d, 'holder', 'hold', 60_000);
    started.push(holder);
    await startTogether([holder]);
    assert.equal(await nextLine(holder), 'locked');

    const impatient = new StateLock(d, 200);
    const t0 = Date.now();
    assert.throws(() => impatient.run(() => 1), StateLockTimeout);
    assert.ok(Date.now() - t0 >= 150, 'waited for the timeout');

    holder.proc.kill('SIGKILL');
    await holder.exited;
    const t1 = Date.now();
    assert.equal(
      new StateLock(d, 5000).run(() => 'mine'),
      'mine',
    );
    assert.ok(Date.now() - t1 < 1000, 'the lock was free once the holder died');
    impatient.close();
  });

  test('a waiter gets the lock as soon as the holder commits', async () => {
    const d = join(dir, 'wait');
    const holder = startChild(d, 'holder', 'hold', 500);
    started.push(holder);
    await startTogether([holder]);
    assert.equal(await nextLine(holder), 'locked');
    const audit = new AuditLog(d);
    const e = audit.append({ actor: { id: 'x', name: 'x' }, action: 'test.wait', outcome: 'success' });
    assert.equal(e.seq, 1);
    assert.equal(JSON.parse(await nextLine(holder)).released, true);
    assert.equal(await holder.exited, 0);
    audit.lock.close();
  });
});
