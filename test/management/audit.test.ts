// The audit log: every key and trust change recorded with who, what, where, when and outcome;
// queries; and a hash chain that detects edited, removed and reordered entries.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AuditLog,
  DENIAL_WINDOW_MS,
  GENESIS,
  MAX_DENIAL_KINDS,
  MAX_DENIAL_STRING,
  entryHash,
  type AuditEntry,
} from '../../src/audit/log.js';
import { exportPrivateKeyPem } from '../../src/core/crypto/pem.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { enc, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

describe('AuditLog', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'trustgate-audit-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('entries chain by hash, and a reopened log continues the chain', () => {
    const a = new AuditLog(dir);
    const e1 = a.append({ actor: { id: 't1', name: 'one' }, action: 'key.export', outcome: 'success', gun: 'a/b', keyId: 'k' });
    const e2 = a.append({ actor: { id: 't1', name: 'one' }, action: 'key.rotate', outcome: 'failure', gun: 'a/b', detail: { code: 'X' } });
    assert.equal(e1.prev, GENESIS);
    assert.equal(e2.prev, e1.hash);
    const { hash, ...rest } = e2;
    assert.equal(entryHash(rest), hash);
    const b = new AuditLog(dir);
    const e3 = b.append({ actor: { id: 't2', name: 'two' }, action: 'tag.add', outcome: 'success' });
    assert.equal(e3.seq, 3);
    assert.equal(e3.prev, e2.hash);
    assert.deepEqual(b.verify(), { ok: true, entries: 3, head: { seq: 3, hash: e3.hash } });
  });

  const tamper = (edit: (lines: string[]) => string[]) => {
    const d = mkdtempSync(join(tmpdir(), 'trustgate-audit-'));
    const log = new AuditLog(d);
    for (let i = 0; i < 5; i++) log.append({ actor: { id: 't', name: 'n' }, action: 'key.export', outcome: 'success', keyId: `k${i}` });
    assert.equal(log.verify().ok, true);
    const lines = readFileSync(log.path, 'utf8').split('\n').filter(Boolean);
    writeFileSync(log.path, edit(lines).join('\n') + '\n');
    const r = log.verify();
    rmSync(d, { recursive: true, force: true });
    return r;
  };

  test('an edited entry breaks the chain at that entry', () => {
    const r = tamper((l) => l.map((x, i) => (i === 2 ? x.replace('"outcome":"success"', '"outcome":"failure"') : x)));
    assert.equal(r.ok, false);
    assert.equal(r.brokenAt, 3);
    assert.match(r.reason!, /hash/);
  });

  test('an edited entry with a recomputed hash breaks the link of the next one', () => {
    const r = tamper((l) =>
      l.map((x, i) => {
        if (i !== 1) return x;
        const e = JSON.parse(x) as AuditEntry;
        const { hash: _h, ...rest } = { ...e, keyId: 'other' };
        return JSON.stringify({ ...rest, hash: entryHash(rest) });
      }),
    );
    assert.equal(r.ok, false);
    assert.equal(r.brokenAt, 3);
  });

  test('a removed, a reordered and a truncated tail are detected', () => {
    assert.equal(tamper((l) => l.filter((_, i) => i !== 1)).ok, false);
    assert.equal(tamper((l) => [l[0]!, l[2]!, l[1]!, l[3]!, l[4]!]).ok, false);
    const t = tamper((l) => l.slice(0, 4));
    assert.equal(t.ok, false);
    assert.match(t.reason!, /head/);
  });
});

describe('AuditLog recent queries', () => {
  test('with recent, a query reads back only as far as `since`: a log too large to read whole still answers (GET /pending asks this)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'trustgate-audit-'));
    try {
      const path = join(dir, 'audit.jsonl');
      // Years of history: more than one string can hold (V8 stops near 512 MiB), sparse on disk.
      writeFileSync(path, '');
      truncateSync(path, 600 * 1024 * 1024);
      const entry = (seq: number, time: string, action: string, gun = 'example.com/a') =>
        JSON.stringify({
          seq,
          time,
          actor: { id: 't1', name: 'ci' },
          action,
          outcome: 'success',
          gun,
          prev: '0'.repeat(64),
          hash: '1'.repeat(64),
        });
      appendFileSync(
        path,
        '\n' +
          [
            entry(1, '2026-01-01T00:00:00.000Z', 'pending.sign'),
            entry(2, '2026-03-01T00:00:00.000Z', 'tag.add'),
            entry(3, '2026-03-01T00:00:01.000Z', 'pending.sign'),
            entry(4, '2026-03-01T00:00:02.000Z', 'pending.sign', 'example.com/b'),
          ].join('\n') +
          '\n',
      );
      const log = new AuditLog(dir);
      const since = Date.parse('2026-02-01T00:00:00Z');
      const found = log.query({ action: 'pending.sign', since, recent: true });
      assert.deepEqual(
        found.map((e) => e.seq),
        [3, 4],
      );
      assert.deepEqual(
        log.query({ action: 'pending.sign', gun: 'example.com/a', since, recent: true, limit: 5 }).map((e) => e.seq),
        [3],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('AuditLog refusals', () => {
  const anon = { id: 'anonymous', name: 'anonymous' };
  const refusal = (path: string) => ({
    actor: anon,
    action: 'auth.denied',
    outcome: 'denied' as const,
    detail: { reason: 'unknown or expired token', path },
  });
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), 'trustgate-audit-'));
    const clock = { t: Date.parse('2026-01-01T00:00:00Z') };
    return { dir, clock, log: new AuditLog(dir, () => clock.t) };
  };
  const lines = (log: AuditLog) =>
    readFileSync(log.path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEntry);

  test('a flood of one kind writes one entry per window, then the count; the chain stays whole', () => {
    const { dir, clock, log } = fresh();
    try {
      assert.equal(log.appendDenial(refusal('/first'), { reason: 'unknown or expired token' })?.detail?.path, '/first');
      for (let i = 0; i < 500; i++) {
        clock.t += 10;
        assert.equal(log.appendDenial(refusal(`/p${i}`), { reason: 'unknown or expired token' }), undefined);
      }
      assert.equal(lines(log).length, 1, 'the counted refusals are not written one by one');
      // Another kind (another reason, or another actor) has its own window.
      assert.ok(log.appendDenial(refusal('/x'), { reason: 'malformed Authorization header' }));
      assert.ok(log.appendDenial({ ...refusal('/y'), actor: { id: 't1', name: 'ci' } }, { reason: 'unknown or expired token' }));
      assert.equal(lines(log).length, 3);
      // The next refusal after the window writes the count first, then itself.
      clock.t = Date.parse('2026-01-01T00:00:00Z') + DENIAL_WINDOW_MS;
      assert.equal(log.appendDenial(refusal('/late'), { reason: 'unknown or expired token' })?.detail?.path, '/late');
      const all = lines(log);
      const summary = all.find((e) => e.detail?.repeated !== undefined)!;
      assert.deepEqual(
        { actor: summary.actor, action: summary.action, outcome: summary.outcome, detail: summary.detail },
        {
          actor: anon,
          action: 'auth.denied',
          outcome: 'denied',
          detail: { reason: 'unknown or expired token', repeated: 500, from: '2026-01-01T00:00:00.010Z', to: '2026-01-01T00:00:05.000Z' },
        },
      );
      assert.equal(all.at(-1)!.detail?.path, '/late');
      // Closing writes what is still counted (the new window has none; the other kinds none either).
      log.appendDenial(refusal('/again'), { reason: 'unknown or expired token' });
      log.flushDenials();
      assert.equal(lines(log).at(-1)!.detail?.repeated, 1);
      assert.deepEqual(log.verify(), {
        ok: true,
        entries: lines(log).length,
        head: { seq: lines(log).length, hash: lines(log).at(-1)!.hash },
      });
    } finally {
      log.flushDenials();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('entries are clipped, and the number of kinds counted at once is bounded', () => {
    const { dir, clock, log } = fresh();
    try {
      const long = '/' + 'a'.repeat(10_000);
      const e = log.appendDenial(
        { ...refusal(long), gun: 'g/' + 'b'.repeat(5000), actor: { id: 'x'.repeat(1000), name: 'n' } },
        { reason: 'r' },
      )!;
      assert.equal((e.detail!.path as string).length, MAX_DENIAL_STRING + 1);
      assert.equal(e.gun!.length, MAX_DENIAL_STRING + 1);
      assert.equal(e.actor.id.length, MAX_DENIAL_STRING + 1);
      // Every kind beyond the bound shares one entry, written once per window.
      for (let i = 1; i < MAX_DENIAL_KINDS + 300; i++)
        log.appendDenial({ ...refusal('/k'), actor: { id: `t${i}`, name: `n${i}` } }, { reason: 'r' });
      const all = lines(log);
      assert.equal(all.length, MAX_DENIAL_KINDS + 1);
      assert.deepEqual(
        { actor: all.at(-1)!.actor, detail: all.at(-1)!.detail },
        { actor: { id: 'various', name: 'various' }, detail: { overflow: true } },
      );
      clock.t += DENIAL_WINDOW_MS;
      log.flushDenials(clock.t);
      assert.equal(lines(log).at(-1)!.detail?.repeated, 299);
      assert.equal(log.verify().ok, true);
    } finally {
      log.flushDenials();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('audit over the API', () => {
  let m: Mgmt;
  before(async () => (m = await startMgmt()));
  after(() => m.stop());

  test('create, sign, rotate, export, import, delete and denied use are recorded with actor, target and outcome', async () => {
    const gun = newGun('audit');
    const g = enc(gun);
    const t0 = new Date(m.now() - 1000).toISOString();
    const signerTok = await m.call('post', '/tokens', { body: { name: 'auditor-signer', scopes: [`signer:${gun}`] } });
    expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
    expectStatus(
      await m.call('post', `/repositories/${g}/tags`, { body: { tag: 'v1', digest: `sha256:${'1'.repeat(64)}`, size: 1 } }),
      200,
    );
    const rot = await m.call('post', `/repositories/${g}/keys/targets/rotate`, { body: {} });
    expectStatus(rot, 200);
    expectStatus(
      await m.call('post', `/repositories/${g}/keys/${rot.body.newKeyId}/export`, { body: { passphrase: 'audit-passphrase' } }),
      200,
    );
    const s = generateSigner('ecdsa');
    const pem = exportPrivateKeyPem(s.privateKey, { passphrase: 'audit-passphrase', role: 'targets', gun });
    expectStatus(
      await m.call('post', `/repositories/${g}/keys/import`, { body: { pem, passphrase: 'audit-passphrase', role: 'targets' } }),
      201,
    );
    expectStatus(await m.call('delete', `/repositories/${g}/keys/${s.id}`), 200);
    expectStatus(await m.call('post', `/repositories/${g}/keys/snapshot/rotate`, { body: {}, token: signerTok.body.token }), 403);
    expectStatus(await m.call('post', `/repositories/${g}/keys/nope/rotate`, { body: {} }), 400);

    const all = (await m.call('get', `/audit?gun=${g}`)).body.entries as AuditEntry[];
    const admin = (await m.call('get', '/whoami')).body as { id: string; name: string };
    const find = (action: string, outcome: string) => all.find((e) => e.action === action && e.outcome === outcome);
    for (const [action, outcome] of [
      ['repository.create', 'success'],
      ['tag.add', 'success'],
      ['key.rotate', 'success'],
      ['key.export', 'success'],
      ['key.import', 'success'],
      ['key.delete', 'success'],
      ['auth.denied', 'denied'],
      ['key.rotate', 'failure'],
    ]) {
      const e = find(action!, outcome!);
      assert.ok(e, `${action} ${outcome} is recorded`);
      assert.equal(e.gun, gun);
      assert.ok(Date.parse(e.time) >= Date.parse(t0));
    }
    assert.deepEqual(find('key.export', 'success')!.actor, { id: admin.id, name: admin.name });
    assert.equal(find('key.export', 'success')!.keyId, rot.body.newKeyId);
    assert.equal(find('key.import', 'success')!.keyId, s.id);
    assert.equal(find('auth.denied', 'denied')!.actor.name, 'auditor-signer');
    assert.equal(find('key.rotate', 'failure')!.detail!.code, 'INVALID_ROLE');

    // Filters: actor (by name or id), action prefix, time window.
    const byActor = (await m.call('get', `/audit?actor=auditor-signer`)).body.entries as AuditEntry[];
    assert.ok(byActor.length >= 1 && byActor.every((e) => e.actor.name === 'auditor-signer'));
    const keys = (await m.call('get', `/audit?gun=${g}&action=key`)).body.entries as AuditEntry[];
    assert.deepEqual([...new Set(keys.map((e) => e.action))].sort(), ['key.delete', 'key.export', 'key.import', 'key.rotate']);
    const future = new Date(m.now() + 3600_000).toISOString();
    assert.deepEqual((await m.call('get', `/audit?since=${enc(future)}`)).body.entries, []);
    assert.ok(((await m.call('get', `/audit?until=${enc(future)}&gun=${g}`)).body.entries as AuditEntry[]).length === all.length);
    assert.equal(((await m.call('get', `/audit?limit=2`)).body.entries as AuditEntry[]).length, 2);
    expectStatus(await m.call('get', '/audit?since=yesterday'), 400);
  });

  test('verify passes, and fails after a stored entry is tampered with', async () => {
    const ok = await m.call('get', '/audit/verify');
    assert.equal(ok.body.ok, true);
    assert.ok(ok.body.entries > 5);
    const path = join(m.tg.app.config.dataDir, 'audit.jsonl');
    const original = readFileSync(path, 'utf8');
    const lines = original.split('\n');
    const i = lines.findIndex((l) => l.includes('"action":"key.export"'));
    lines[i] = lines[i]!.replace('"outcome":"success"', '"outcome":"denied"');
    writeFileSync(path, lines.join('\n'));
    try {
      const bad = await m.call('get', '/audit/verify');
      expectStatus(bad, 200);
      assert.equal(bad.body.ok, false);
      assert.equal(bad.body.brokenAt, i + 1);
    } finally {
      writeFileSync(path, original);
    }
    assert.equal((await m.call('get', '/audit/verify')).body.ok, true);
  });
});
