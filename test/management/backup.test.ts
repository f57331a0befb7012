// GET /api/v1/backup and `trustgate backup`: an online copy of the embedded store that a fresh
// trustgate, given the copy and the keys directory, serves byte for byte.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import request from 'supertest';
import { removeLeftoverBackups } from '../../src/storage/backup-dirs.js';
import { cli } from '../cli/support.js';
import { makeTempDir, removeTempDir, startPostgres, tailFile } from '../helpers/services.js';
import { startTrustgate, startTrustgateProcess, type RunningTrustgate } from '../helpers/trustgate.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from './support.js';

const binary = (res: request.Response, done: (err: Error | null, body: Buffer) => void) => {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => done(null, Buffer.concat(chunks)));
};

describe('backup of the embedded store', () => {
  let m: Mgmt;
  let work: string;
  const gun = newGun('backup');
  const tuf = (role: string) => `/v2/${gun}/_trust/tuf/${role}.json`;

  before(async () => {
    m = await startMgmt();
    work = await makeTempDir('trustgate-backup');
    expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
    for (let i = 0; i < 5; i++)
      expectStatus(
        await m.call('post', `/repositories/${enc(gun)}/tags`, {
          body: { tag: `v${i}`, digest: `sha256:${String(i).repeat(64)}`, size: 100 + i },
        }),
        200,
      );
  });
  after(async () => {
    await m.stop();
    await removeTempDir(work);
  });

  const live = async (role: string) => (await request(m.tg.url).get(tuf(role)).buffer(true).parse(binary)).body as Buffer;
  const leftovers = () => readdirSync(m.tg.app.config.dataDir).filter((f) => f.startsWith('.backup-'));
  /** The copy is removed when the answer's connection is done with it, a moment after the client has it all. */
  const noLeftovers = async () => {
    for (let i = 0; i < 100 && leftovers().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(leftovers(), [], 'the temporary copy is removed once sent');
  };

  test('an admin gets a consistent SQLite copy; a fresh trustgate serves it byte for byte', async () => {
    const res = await request(m.tg.url).get('/api/v1/backup').set('Authorization', `Bearer ${m.admin}`).buffer(true).parse(binary);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/vnd.sqlite3');
    const bytes = res.body as Buffer;
    assert.equal(Number(res.headers['content-length']), bytes.length);
    assert.equal(bytes.subarray(0, 16).toString('latin1'), 'SQLite format 3\0');
    await noLeftovers();

    const copy = join(work, 'copy.db');
    writeFileSync(copy, bytes);
    const db = new Database(copy, { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      const rows = db.prepare('SELECT COUNT(*) FROM tuf_files WHERE gun = ?').pluck().get(gun) as number;
      assert.ok(rows >= 6 * 3, `every version of every role is in the copy (${rows} rows)`);
    } finally {
      db.close();
    }
    const entry = (await m.call('get', '/audit?action=backup.create')).body.entries.at(-1) as {
      outcome: string;
      detail: { bytes: number };
    };
    assert.deepEqual({ outcome: entry.outcome, bytes: entry.detail.bytes }, { outcome: 'success', bytes: bytes.length });

    // Restore as the docs say: the copy as trustgate.db, the keys directory beside it.
    const dir = join(work, 'restored');
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data', 'trustgate.db'), bytes);
    cpSync(join(m.tg.dir, 'keys'), join(dir, 'keys'), { recursive: true });
    const restored: RunningTrustgate = await startTrustgate({ dir });
    try {
      for (const role of ['root', 'targets', 'snapshot', 'timestamp']) {
        const r = await request(restored.url).get(tuf(role)).buffer(true).parse(binary);
        assert.equal(r.status, 200, role);
        assert.ok((r.body as Buffer).equals(await live(role)), `${role}.json is the same bytes`);
      }
      // Older versions came along too.
      const v1 = await request(restored.url).get(`/v2/${gun}/_trust/tuf/1.targets.json`);
      assert.equal(v1.status, 200);
    } finally {
      await restored.stop();
    }
  });

  test('only admins may take one; a refused one writes nothing', async () => {
    const taken = () => m.tg.auditLog.query({ action: 'backup.create' }).length;
    const before = taken();
    const reader = (await m.call('post', '/tokens', { body: { name: 'backup-reader', scopes: ['reader'] } })).body.token as string;
    expectError(await m.call('get', '/backup', { token: reader }), 403, 'FORBIDDEN');
    expectError(await m.call('get', '/backup', { token: null }), 401, 'UNAUTHORIZED');
    expectError(await m.call('get', '/backup?x=1', { raw: '{"a":1}' }), 400, 'INVALID_REQUEST');
    await noLeftovers();
    assert.equal(taken(), before, 'no backup.create entry for a refused request');
  });

  test('`trustgate backup -o FILE` writes a new 0600 file and never overwrites one', async () => {
    const c = cli(m.tg.url, m.admin);
    const out = join(work, 'cli.db');
    const r = await c.run(['backup', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    const db = new Database(out, { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
    const before = readFileSync(out);
    const again = await c.run(['backup', '-o', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /it exists already/);
    assert.ok(readFileSync(out).equals(before), 'the existing file is untouched');
    const denied = await cli(m.tg.url, 'tgt_' + 'D'.repeat(43)).run(['backup', '-o', join(work, 'denied.db')]);
    assert.equal(denied.code, 3);
    assert.equal(existsSync(join(work, 'denied.db')), false, 'a refused backup writes no file');
    assert.equal((await c.run(['backup'])).code, 2);
  });
});

describe('backup on PostgreSQL', () => {
  test('answers 409 BACKUP_UNSUPPORTED (pg_dump backs PostgreSQL up) and writes nothing', async () => {
    const pg = await startPostgres();
    const tg = await startTrustgate({ env: { TRUSTGATE_DATABASE_URL: pg.url } });
    try {
      assert.equal(tg.app.store.kind, 'postgres');
      const admin = tg.adminToken;
      const r = await request(tg.url).get('/api/v1/backup').set('Authorization', `Bearer ${admin}`);
      assert.equal(r.status, 409);
      assert.equal(r.body.error.code, 'BACKUP_UNSUPPORTED');
      assert.deepEqual(
        readdirSync(tg.app.config.dataDir).filter((f) => f.startsWith('.backup-')),
        [],
      );
      assert.deepEqual(await tg.app.management.audit.query({ action: 'backup.create' }), []);
    } finally {
      await tg.stop();
      await pg.stop();
    }
  });
});

describe('backup copies left behind by a killed run', () => {
  let work: string;
  before(async () => {
    work = await makeTempDir('trustgate-backup-left');
  });
  after(async () => {
    await removeTempDir(work);
  });

  test('removeLeftoverBackups removes `.backup-*` directories and nothing else; a missing data directory is fine', async () => {
    const data = join(work, 'unit');
    mkdirSync(join(data, '.backup-aB3xZ9'), { recursive: true });
    writeFileSync(join(data, '.backup-aB3xZ9', 'trustgate.db'), 'copy');
    mkdirSync(join(data, '.backup-q'));
    writeFileSync(join(data, '.backup-file'), 'not a directory');
    mkdirSync(join(data, 'backup-x'));
    writeFileSync(join(data, 'trustgate.db'), 'the store');
    const logged: string[] = [];
    await removeLeftoverBackups(data, (_level, msg, fields) => logged.push(`${msg} ${String(fields?.dir)}`));
    assert.deepEqual(readdirSync(data).sort(), ['.backup-file', 'backup-x', 'trustgate.db']);
    assert.equal(logged.length, 2, logged.join('\n'));
    await removeLeftoverBackups(join(work, 'missing'), () => undefined);
  });

  test("`npm start`'s code, one process: a leftover copy is gone once it serves", async () => {
    const dir = join(work, 'single');
    mkdirSync(join(dir, 'data', '.backup-left2'), { recursive: true });
    writeFileSync(join(dir, 'data', '.backup-left2', 'trustgate.db'), 'copy');
    const { proc } = await startTrustgateProcess(
      {
        TRUSTGATE_DATA_DIR: join(dir, 'data'),
        TRUSTGATE_KEYS_DIR: join(dir, 'keys'),
        TRUSTGATE_KEY_PASSPHRASE: 'pw-leftover',
        TRUSTGATE_LOG_LEVEL: 'info',
      },
      join(dir, 'trustgate.log'),
    );
    try {
      assert.equal(existsSync(join(dir, 'data', '.backup-left2')), false, tailFile(proc.logFile));
      assert.match(readFileSync(proc.logFile, 'utf8'), /removed a backup copy left by an earlier run/);
    } finally {
      await proc.stop();
    }
  });
});
