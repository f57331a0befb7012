// The storage contract and concurrency races against a real PostgreSQL 15 (one server for this
// file, a fresh database per test), plus failure modes only a network database has.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { PostgresStore } from '../../src/storage/postgres.js';
import { openStore } from '../../src/storage/open.js';
import { VersionConflictError } from '../../src/storage/types.js';
import { startPostgres, type PostgresService } from '../helpers/services.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/util.js';
import { concurrencyContract, file, sha, storeContract } from './contract.js';

let svc: PostgresService;
let admin: pg.Pool;
let n = 0;

before(async () => {
  svc = await startPostgres();
  admin = new pg.Pool({ connectionString: svc.url, max: 2 });
  // pool.end() resolves before its sockets close; the server stopping then must not be uncaught.
  admin.on('error', () => undefined);
});
after(async () => {
  await admin?.end();
  await svc?.stop();
});

/** A new empty database; its URL. */
async function freshDb(): Promise<string> {
  const name = `tg_${process.pid}_${++n}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(svc.url);
  u.pathname = `/${name}`;
  return u.toString();
}

storeContract('postgres', async () => PostgresStore.open(await freshDb()));
concurrencyContract('postgres (two pools, one database)', async () => {
  const url = await freshDb();
  return [await PostgresStore.open(url), await PostgresStore.open(url)];
});

describe('postgres: failure modes', () => {
  test('openStore picks PostgreSQL for a database URL', async () => {
    const s = await openStore({ databaseUrl: await freshDb(), dataDir: '/nonexistent' });
    try {
      assert.equal(s.kind, 'postgres');
      await s.commit('open/x', [file('root', 1)], new Date());
      assert.equal((await s.latest('open/x', 'root'))?.version, 1);
    } finally {
      await s.close();
    }
  });

  test('eight processes starting together on an empty database all create or find the schema', async () => {
    const url = await freshDb();
    const stores = await Promise.all(Array.from({ length: 8 }, () => PostgresStore.open(url)));
    try {
      await stores[0]!.commit('schema/race', [file('root', 1)], new Date());
      for (const s of stores) assert.equal((await s.latest('schema/race', 'root'))?.version, 1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('an unreachable server fails open() instead of hanging', async () => {
    const port = await freePort();
    const t0 = Date.now();
    await assert.rejects(PostgresStore.open(`postgres://postgres@127.0.0.1:${port}/x`, { connectionTimeoutMillis: 3000 }));
    assert.ok(Date.now() - t0 < 10_000);
  });

  test('an idle pooled connection killed by the server does not crash the process; the pool recovers', async () => {
    const url = await freshDb();
    const dbName = new URL(url).pathname.slice(1);
    const errors: Error[] = [];
    const s = await PostgresStore.open(url, { onError: (e) => errors.push(e) });
    try {
      // Several idle connections in the pool.
      await Promise.all(Array.from({ length: 4 }, (_, i) => s.commit(`idle/${i}`, [file('timestamp', 1)], new Date())));
      const killed = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [dbName]);
      assert.ok(killed.rowCount! >= 1);
      // Reads right away may land on a connection whose death the pool has not yet seen.
      for (let i = 0; i < 4; i++) assert.equal((await s.latest(`idle/${i}`, 'timestamp'))?.version, 1);
      await until('the pool to report the dropped connections', async () => errors.length >= 1, 10_000, { intervalMs: 20 });
      assert.match(errors[0]!.message, /terminat/i);
      await s.ping();
      await s.commit('idle/0', [file('timestamp', 2)], new Date());
      assert.equal((await s.latest('idle/0', 'timestamp'))?.version, 2);
    } finally {
      await s.close();
    }
  });

  test('a connection killed mid-transaction fails that commit only; nothing is stored, the process and store survive', async () => {
    const url = await freshDb();
    const dbName = new URL(url).pathname.slice(1);
    const errors: Error[] = [];
    const s = await PostgresStore.open(url, { onError: (e) => errors.push(e) });
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      const gun = 'kill/mid-tx';
      // Hold the GUN's commit lock so the store's transaction waits inside it.
      await blocker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [gun]);
      const pending = s.commit(gun, [file('root', 1), file('timestamp', 1)], new Date());
      pending.catch(() => undefined);
      const pid = await until(
        'the commit to wait on the lock',
        async () => {
          const r = await admin.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            [dbName],
          );
          return r.rows[0]?.pid;
        },
        10_000,
        { intervalMs: 20 },
      );
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await assert.rejects(pending, (e: Error) => !(e instanceof VersionConflictError));
      await blocker.query('SELECT pg_advisory_unlock_all()');
      assert.equal(await s.latest(gun, 'root'), undefined);
      assert.deepEqual(await s.changes({ changeId: 0, records: 10 }), []);
      // The broken connection was not handed back out: ten commits in a row all work.
      for (let v = 1; v <= 10; v++) await s.commit(gun, [file('timestamp', v)], new Date());
      assert.equal((await s.latest(gun, 'timestamp'))?.version, 10);
    } finally {
      await blocker.end();
      await s.close();
    }
  });

  test('changefeed ids become visible in order: a cursor never skips a commit that finished later', async () => {
    // Commit A (GUN a) stores its timestamp, then waits on a row lock; meanwhile commit B (GUN b)
    // finishes. A reader that has seen B's id must still find A's record after that id.
    const url = await freshDb();
    const dbName = new URL(url).pathname.slice(1);
    const s = await PostgresStore.open(url);
    const x = new pg.Client({ connectionString: url });
    await x.connect();
    try {
      await x.query('BEGIN');
      await x.query(
        "INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES ('order/a', 'targets/zzz', 5, '', '\\x00', now())",
      );
      const tsA = file('timestamp', 1);
      const a = s.commit('order/a', [tsA, file('targets/zzz', 5)], new Date());
      a.catch(() => undefined);
      await until(
        'A to wait on the row lock',
        async () => {
          const r = await admin.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'transactionid'",
            [dbName],
          );
          return r.rowCount! > 0;
        },
        10_000,
        { intervalMs: 20 },
      );
      const tsB = file('timestamp', 1);
      await s.commit('order/b', [tsB], new Date());
      const seen = await s.changes({ changeId: 0, records: 100 });
      assert.deepEqual(
        seen.map((c) => c.sha256),
        [sha(tsB.bytes)],
        'A has not committed yet',
      );
      const cursor = seen.at(-1)!.id;

      await x.query('ROLLBACK');
      await a;
      const next = await s.changes({ changeId: cursor, records: 100 });
      assert.deepEqual(
        next.map((c) => [c.gun, c.sha256]),
        [['order/a', sha(tsA.bytes)]],
        'A must appear after the cursor',
      );
    } finally {
      await x.end();
      await s.close();
    }
  });

  test('changefeed ids become visible in order even when a commit stalls between its insert and COMMIT', async () => {
    // A trigger makes commit A wait right after its changefeed row got an id, inside the
    // transaction (as a slow COMMIT or network would). Commit B of another GUN runs meanwhile.
    // If B's later id became visible first, a reader holding B's id as cursor would skip A.
    const url = await freshDb();
    const dbName = new URL(url).pathname.slice(1);
    const s = await PostgresStore.open(url);
    const x = new pg.Client({ connectionString: url });
    await x.connect();
    try {
      await x.query(`CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.gun = 'order/slow' THEN PERFORM pg_advisory_xact_lock(424242); END IF; RETURN NEW; END $$`);
      await x.query('CREATE TRIGGER stall AFTER INSERT ON changefeed FOR EACH ROW EXECUTE FUNCTION stall()');
      await x.query('SELECT pg_advisory_lock(424242)');
      const a = s.commit('order/slow', [file('timestamp', 1)], new Date());
      a.catch(() => undefined);
      await until(
        'A to stall in its trigger',
        async () => {
          const r = await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'advisory'", [dbName]);
          return r.rowCount! > 0;
        },
        10_000,
        { intervalMs: 20 },
      );
      const b = s.commit('order/fast', [file('timestamp', 1)], new Date());
      b.catch(() => undefined);
      await sleep(300);
      const first = await s.changes({ changeId: 0, records: 100 });
      const cursor = first.at(-1)?.id ?? 0;
      await x.query('SELECT pg_advisory_unlock(424242)');
      await Promise.all([a, b]);
      const rest = await s.changes({ changeId: cursor, records: 100 });
      assert.deepEqual(
        [...first, ...rest].map((c) => c.gun).sort(),
        ['order/fast', 'order/slow'],
        `a reader that saw ${JSON.stringify(first.map((c) => [c.id, c.gun]))} then read after id ${cursor} got ${JSON.stringify(rest.map((c) => [c.id, c.gun]))}`,
      );
    } finally {
      await x.end();
      await s.close();
    }
  });

  test('a unique violation under the advisory lock still surfaces as a version conflict', async () => {
    // Rows written behind the store's back (another tool, a restore) can still collide on the
    // primary key; the caller must see VERSION, not a 500.
    const url = await freshDb();
    const s = await PostgresStore.open(url);
    const x = new pg.Client({ connectionString: url });
    await x.connect();
    try {
      await x.query('BEGIN');
      await x.query(
        "INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) VALUES ('uv/g', 'targets', 3, '', '\\x00', now())",
      );
      const p = s.commit('uv/g', [file('targets', 3)], new Date());
      p.catch(() => undefined);
      await sleep(300);
      await x.query('COMMIT');
      await assert.rejects(p, (e) => e instanceof VersionConflictError && e.role === 'targets' && e.version === 3);
    } finally {
      await x.end();
      await s.close();
    }
  });
});
