// V10 (the audit half): a change committed to the store whose audit append never happened (the
// process died in between) is audited at the next start, from the journal row the commit wrote
// in its own transaction; an entry appended before the kill is not appended again.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, renameSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import request from 'supertest';
import { AuditLog, type AuditEntry } from '../../src/audit/log.js';
import { makeTempDir, removeTempDir, startPostgres, type PostgresService } from '../helpers/services.js';
import { startTrustgate, startTrustgateProcess } from '../helpers/trustgate.js';
import { authedAgent, initRepo } from '../helpers/tuf-builder.js';

const readAudit = (data: string): AuditEntry[] =>
  readFileSync(path.join(data, 'audit.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as AuditEntry);

/** The audit log where the app keeps it: made unwritable, made writable again, read. */
interface LogAccess {
  break(): Promise<void>;
  restore(): Promise<void>;
  read(): Promise<AuditEntry[]>;
}

function fileLog(dir: string, data: string): LogAccess {
  const log = path.join(data, 'audit.jsonl');
  const aside = path.join(dir, 'audit.jsonl.aside');
  return {
    // A directory where the file was.
    break: async () => {
      renameSync(log, aside);
      mkdirSync(log);
    },
    restore: async () => {
      rmdirSync(log);
      renameSync(aside, log);
    },
    read: async () => readAudit(data),
  };
}

function pgLog(url: string): LogAccess {
  const sql = async (q: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ entry: string }>(q)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    // The table renamed away: appends fail, commits to the store do not.
    break: async () => void (await sql('ALTER TABLE state_audit RENAME TO state_audit_aside')),
    restore: async () => void (await sql('ALTER TABLE state_audit_aside RENAME TO state_audit')),
    read: async () => (await sql('SELECT entry FROM state_audit ORDER BY seq')).map((r) => JSON.parse(r.entry) as AuditEntry),
  };
}

async function commitWithoutAudit(extraEnv: Record<string, string>): Promise<void> {
  const dir = await makeTempDir('audit-journal');
  const data = path.join(dir, 'data');
  const env = {
    TRUSTGATE_DATA_DIR: data,
    TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'),
    TRUSTGATE_KEY_PASSPHRASE: 'journal-test-passphrase',
    TRUSTGATE_LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const audit = extraEnv.TRUSTGATE_DATABASE_URL ? pgLog(extraEnv.TRUSTGATE_DATABASE_URL) : fileLog(dir, data);
  const first = await startTrustgateProcess(env, path.join(dir, 'first.log'));
  let second: Awaited<ReturnType<typeof startTrustgateProcess>> | undefined;
  try {
    const gun = 'example.com/journal/app';
    const agent = authedAgent(request(first.url), first.adminToken!);
    const repo = await initRepo(agent, gun); // targets@1, audited
    assert.equal((await repo.addTarget('v2', 'two')).status, 200); // targets@2, audited
    // The audit log cannot be appended to (a directory where the file was): publishes are
    // committed and answered, but their audit appends fail, as if the process died between.
    await audit.break();
    assert.equal((await repo.addTarget('v3', 'three')).status, 200);
    assert.equal((await repo.addTarget('v4', 'four')).status, 200);
    await audit.restore();
    // Audited, and killed at once: its journal row may still be there (not acknowledged yet).
    assert.equal((await repo.addTarget('v5', 'five')).status, 200);
    first.proc.child.kill('SIGKILL');
    await first.proc.stop();
    const before = (await audit.read()).filter((e) => e.action === 'notary.publish');
    assert.deepEqual(
      before.map((e) => (e.detail!.files as string[]).find((f) => f.startsWith('targets@'))),
      ['targets@1', 'targets@2', 'targets@5'],
    );

    second = await startTrustgateProcess(env, path.join(dir, 'second.log'));
    const entries = (await audit.read()).filter((e) => e.action === 'notary.publish' && e.gun === gun);
    const versions = entries.map((e) => (e.detail!.files as string[]).find((f) => f.startsWith('targets@')));
    assert.deepEqual([...versions].sort(), ['targets@1', 'targets@2', 'targets@3', 'targets@4', 'targets@5'], JSON.stringify(entries));
    assert.deepEqual(
      entries.filter((e) => e.detail!.recovered === true).map((e) => (e.detail!.files as string[]).find((f) => f.startsWith('targets@'))),
      ['targets@3', 'targets@4'],
    );
    for (const e of entries) {
      assert.equal(e.actor.name, entries[0]!.actor.name, 'the recovered entries name the publisher');
      assert.equal(typeof e.detail!.journal, 'string');
    }
    // Every version the store holds has its entry; the chain is intact.
    const stored = await (
      await fetch(`${second.url}/v2/${gun}/_trust/tuf/targets.json`, {
        headers: { Authorization: `Bearer ${second.adminToken ?? first.adminToken}` },
      })
    ).json();
    assert.equal((stored as { signed: { version: number } }).signed.version, 5);
    const verified = await fetch(`${second.url}/api/v1/audit/verify`, {
      headers: { Authorization: `Bearer ${second.adminToken ?? first.adminToken}` },
    });
    assert.equal(((await verified.json()) as { ok: boolean }).ok, true);
    await second.proc.stop();
    second = undefined;
    // A further start finds nothing left to append.
    second = await startTrustgateProcess(env, path.join(dir, 'third.log'));
    assert.equal((await audit.read()).filter((e) => e.action === 'notary.publish' && e.gun === gun).length, 5);
  } finally {
    await first.proc.stop();
    await second?.proc.stop();
    await removeTempDir(dir);
  }
}

test('V10: a commit whose audit append never happened is audited at the next start', () => commitWithoutAudit({}));

test('every audited change of the Notary, management and signing APIs carries its journal id and leaves no row', async () => {
  const tg = await startTrustgate();
  try {
    const headers = { Authorization: `Bearer ${tg.adminToken}`, 'Content-Type': 'application/json' };
    const call = async (method: string, p: string, body?: unknown) => {
      const r = await fetch(`${tg.url}/api/v1${p}`, { method, headers, ...(body ? { body: JSON.stringify(body) } : {}) });
      assert.ok(r.status === 200 || r.status === 201, `${method} ${p}: ${r.status} ${await r.text()}`);
    };
    const gun = 'example.com/journal/managed';
    await call('POST', '/repositories', { gun, rootKey: 'keystore' });
    await call('POST', `/repositories/${encodeURIComponent(gun)}/tags`, { tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, size: 10 });
    await call('POST', `/repositories/${encodeURIComponent(gun)}/keys/targets/rotate`, {});
    await call('POST', '/signing/sign', { gun, tag: 'v2', digest: `sha256:${'b'.repeat(64)}`, size: 20 });
    await call('POST', '/signing/revoke', { gun, tag: 'v2' });
    const agent = authedAgent(request(tg.url), tg.adminToken);
    const notary = 'example.com/journal/notary';
    const repo = await initRepo(agent, notary);
    assert.equal((await repo.addTarget('v1', 'one')).status, 200);
    assert.equal((await agent.delete(`/v2/${notary}/_trust/tuf/`)).status, 200);
    await call('DELETE', `/repositories/${encodeURIComponent(gun)}`);

    await tg.app.trust.flushAcks();
    assert.deepEqual(await tg.app.store.journal(100), []);
    const changes = tg.auditLog
      .query()
      .filter((e) => e.outcome === 'success' && (e.gun === gun || e.gun === notary) && !['notary.key.create'].includes(e.action));
    assert.deepEqual(
      changes.map((e) => [e.action, typeof e.detail?.journal]),
      [
        ['repository.create', 'string'],
        ['tag.add', 'string'],
        ['key.rotate', 'string'],
        ['tag.sign', 'string'],
        ['tag.revoke', 'string'],
        ['notary.publish', 'string'],
        ['notary.publish', 'string'],
        ['notary.delete', 'string'],
        ['repository.delete', 'string'],
      ],
    );
    assert.equal(new Set(changes.map((e) => e.detail!.journal)).size, changes.length);
  } finally {
    await tg.stop();
  }
});

test('the audit log finds the journal ids of its tail, across read chunks', async () => {
  const dir = await makeTempDir('audit-journal-tail');
  try {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const log = new AuditLog(dir, () => now);
    for (let i = 0; i < 400; i++) {
      now += 1000;
      log.append({
        actor: { id: 'a', name: 'é'.repeat(i % 7) },
        action: 'notary.publish',
        outcome: 'success',
        gun: 'x/y',
        detail: { files: ['targets@1'], pad: 'p'.repeat(300), ...(i % 3 ? { journal: `j${i}` } : {}) },
      });
    }
    const since = Date.parse('2026-01-01T00:00:00Z') + 101 * 1000; // the time of entry 100, 300 entries (over 64 KiB) before the end
    const expected = Array.from({ length: 300 }, (_, k) => 100 + k)
      .filter((i) => i % 3)
      .map((i) => `j${i}`);
    assert.deepEqual([...log.journalIdsSince(since)].sort(), expected.sort());
    assert.equal(log.journalIdsSince(now + 1).size, 0);
    assert.equal(new AuditLog(path.join(dir, 'empty')).journalIdsSince(0).size, 0);
  } finally {
    await removeTempDir(dir);
  }
});

describe('PostgreSQL', () => {
  let pg: PostgresService;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });
  test('V10: a commit whose audit append never happened is audited at the next start (PostgreSQL)', () =>
    commitWithoutAudit({ TRUSTGATE_DATABASE_URL: pg.url }));
});
