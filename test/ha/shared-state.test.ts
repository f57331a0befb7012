// High availability, shared state: three trustgate instances, each with its own data and keys
// directories, share one PostgreSQL (TRUSTGATE_DATABASE_URL, and the keyv keystore on it). A
// token made on one works on the others and a revocation anywhere holds everywhere at once; the
// audit chain is one chain, verified from every instance; a pending m-of-n change opened on one
// instance is completed on another; and the first admin token is made once when three instances
// start together on an empty database.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { makeTempDir, removeTempDir, startPostgres, type PostgresService } from '../helpers/services.js';
import { startTrustgate, startTrustgateProcess, type RunningTrustgate, type TrustgateProcess } from '../helpers/trustgate.js';

let pgs: PostgresService;
let databases = 0;

/** A new, empty database on the test server; resolves to its URL. */
async function newDatabase(): Promise<string> {
  const name = `ha_${process.pid}_${++databases}`;
  const c = new pg.Client({ connectionString: pgs.url });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(pgs.url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Settings of one instance of a deployment on database `url`: state, store and keys in PostgreSQL, no passphrase. */
const sharedEnv = (url: string): Record<string, string> => ({
  TRUSTGATE_DATABASE_URL: url,
  TRUSTGATE_KEYSTORE: 'keyv',
  TRUSTGATE_KEYSTORE_URL: url,
  // Unset: the key-encryption secret is generated once and shared through the database.
  TRUSTGATE_KEY_PASSPHRASE: '',
});

interface Res {
  status: number;
  body: any;
}

async function call(base: string, token: string | undefined, method: string, p: string, body?: unknown): Promise<Res> {
  const r = await fetch(`${base}/api/v1${p}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

function expectStatus(r: Res, status: number, what: string): void {
  assert.equal(r.status, status, `${what}: ${r.status} ${JSON.stringify(r.body)?.slice(0, 600)}`);
}

/** Ends every other session on the database at `url`, as a server restart would. */
async function terminateConnections(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  } finally {
    await c.end();
  }
}

before(async () => {
  pgs = await startPostgres();
});
after(async () => {
  await pgs?.stop();
});

describe('three instances on one database', () => {
  let tgs: RunningTrustgate[] = [];
  let admin: string;
  let dbUrl: string;

  before(async () => {
    const url = (dbUrl = await newDatabase());
    // Started together: the schema, the keystore secret and the first admin token are raced for.
    tgs = await Promise.all([0, 1, 2].map(() => startTrustgate({ env: sharedEnv(url) })));
    const made = tgs.map((t) => path.join(t.app.config.dataDir, 'admin-token')).filter((f) => existsSync(f));
    assert.equal(made.length, 1, 'one instance made the first admin token');
    admin = readFileSync(made[0]!, 'utf8').trim();
  });
  after(async () => {
    for (const t of tgs) await t.stop();
  });

  test('the first admin token works on every instance', async () => {
    for (const t of tgs) expectStatus(await call(t.url, admin, 'GET', '/tokens'), 200, t.url);
  });

  test('dashboard summaries and tag pages kept by one instance follow a tag another instance adds', async () => {
    const gun = 'example.com/ha/summaries';
    const g = encodeURIComponent(gun);
    const [a, b] = [tgs[0]!, tgs[1]!];
    expectStatus(await call(a.url, admin, 'POST', '/repositories', { gun, rootKey: 'keystore' }), 201, 'create');
    expectStatus(
      await call(a.url, admin, 'POST', `/repositories/${g}/tags`, { tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, size: 1 }),
      200,
      'v1',
    );
    const summary = async () => (await call(a.url, admin, 'GET', `/repositories?q=${g}`)).body.repositories[0];
    const tags = async () => (await call(a.url, admin, 'GET', `/repositories/${g}/tags`)).body;
    assert.equal((await summary()).tagCount, 1);
    assert.equal((await tags()).total, 1);
    // The other instance publishes: the first answers from the new timestamp, not what it kept.
    expectStatus(
      await call(b.url, admin, 'POST', `/repositories/${g}/tags`, { tag: 'v2', digest: `sha256:${'b'.repeat(64)}`, size: 2 }),
      200,
      'v2',
    );
    assert.equal((await summary()).tagCount, 2);
    assert.deepEqual(((await tags()).tags as Array<{ tag: string }>).map((t) => t.tag).sort(), ['v1', 'v2']);
    const expiring = await call(a.url, admin, 'GET', '/expiring?within=3650d');
    assert.ok((expiring.body.items as Array<{ gun: string }>).some((i) => i.gun === gun));
  });

  test('HA1: instances started together on an empty keyv keystore seal with one key: a key made on one signs on every other', async () => {
    const gun = 'example.com/ha/keys';
    const g = encodeURIComponent(gun);
    // Root, targets, snapshot and timestamp keys made by the first instance.
    expectStatus(await call(tgs[0]!.url, admin, 'POST', '/repositories', { gun, rootKey: 'keystore' }), 201, 'create');
    for (const [i, t] of tgs.entries()) {
      const r = await call(t.url, admin, 'POST', `/repositories/${g}/tags`, {
        tag: `t${i}`,
        digest: `sha256:${String(i).repeat(64)}`,
        size: 1,
      });
      expectStatus(r, 200, `a tag signed on ${t.url}`);
    }
  });

  test('an instance whose database connections are dropped goes on without a restart', async () => {
    await terminateConnections(dbUrl);
    for (const t of tgs) {
      // A pooled connection may fail the first statement sent on it after the drop (reads are retried).
      let r: Res | undefined;
      for (let i = 0; i < 5 && r?.status !== 200; i++) r = await call(t.url, admin, 'GET', '/tokens');
      expectStatus(r!, 200, `tokens on ${t.url} after the drop`);
      expectStatus(await call(t.url, admin, 'POST', '/tokens', { name: `after-drop-${t.port}`, scopes: ['reader'] }), 201, 'a write');
    }
  });

  test('a token made on one instance works on the others; revoked on a third, it fails everywhere within 1 s', async () => {
    const [a, b, c] = tgs as [RunningTrustgate, RunningTrustgate, RunningTrustgate];
    const made = await call(a.url, admin, 'POST', '/tokens', { name: 'ha-reader', scopes: ['reader'] });
    expectStatus(made, 201, 'create on A');
    const token = made.body.token as string;
    for (const t of [a, b, c]) {
      expectStatus(await call(t.url, token, 'GET', '/repositories'), 200, `the new token on ${t.url}`);
      // The Notary API takes it too.
      const ping = await fetch(`${t.url}/v2/`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(ping.status, 200);
    }
    const listed = await call(b.url, admin, 'GET', '/tokens');
    assert.ok(
      listed.body.tokens.some((x: { id: string }) => x.id === made.body.info.id),
      'B lists the token made on A',
    );

    expectStatus(await call(c.url, admin, 'DELETE', `/tokens/${made.body.info.id}`), 200, 'revoke on C');
    const revokedAt = Date.now();
    for (const t of [a, b, c]) {
      let status = 0;
      for (let i = 0; i < 100 && Date.now() - revokedAt < 1000; i++) {
        status = (await call(t.url, token, 'GET', '/repositories')).status;
        if (status === 401) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(status, 401, `the revoked token is refused by ${t.url} within 1 s`);
      const ping = await fetch(`${t.url}/v2/`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(ping.status, 401);
    }
    assert.ok(Date.now() - revokedAt < 1000);
    // The refusals went into the shared chain (written in the background, once per kind and window).
    let denied: unknown[] = [];
    for (let i = 0; i < 50 && denied.length === 0; i++) {
      denied = (await call(a.url, admin, 'GET', '/audit?action=auth.denied')).body.entries;
      if (denied.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(denied.length >= 1, 'refusals are audited');
  });

  test('the last admin token cannot be revoked from another instance', async () => {
    const list = await call(tgs[1]!.url, admin, 'GET', '/tokens');
    const admins = (list.body.tokens as Array<{ id: string; scopes: string[] }>).filter((t) => t.scopes.includes('admin'));
    // The test helper made an admin token on the instances without the file: revoke them first.
    const first = admins.find(
      (t) => (list.body.tokens as Array<{ id: string; name: string }>).find((x) => x.id === t.id)!.name === 'initial-admin',
    )!;
    for (const t of admins) if (t.id !== first.id) expectStatus(await call(tgs[2]!.url, admin, 'DELETE', `/tokens/${t.id}`), 200, 'revoke');
    const last = await call(tgs[1]!.url, admin, 'DELETE', `/tokens/${first.id}`);
    assert.equal(last.status, 409);
    assert.equal(last.body.error.code, 'LAST_ADMIN_TOKEN');
  });

  test('concurrent actions on three instances form one audit chain, the same and intact from each', async () => {
    const per = 12;
    await Promise.all(
      tgs.map(async (t, i) => {
        for (let k = 0; k < per; k++) {
          const r = await call(t.url, admin, 'POST', '/tokens', { name: `audit-${i}-${k}`, scopes: ['reader'] });
          expectStatus(r, 201, 'create');
        }
      }),
    );
    const views = await Promise.all(tgs.map((t) => call(t.url, admin, 'GET', '/audit')));
    const verified = await Promise.all(tgs.map((t) => call(t.url, admin, 'GET', '/audit/verify')));
    for (const v of verified) {
      expectStatus(v, 200, 'verify');
      assert.equal(v.body.ok, true, JSON.stringify(v.body));
    }
    const entries = views[0]!.body.entries as Array<{ seq: number; hash: string; action: string; detail?: { name?: string } }>;
    // Every instance sees the same chain (entries made after the first read may follow it).
    for (const v of views) {
      const other = v.body.entries as typeof entries;
      const n = Math.min(other.length, entries.length);
      assert.deepEqual(
        other.slice(0, n).map((e) => e.hash),
        entries.slice(0, n).map((e) => e.hash),
      );
    }
    assert.deepEqual(
      entries.map((e) => e.seq),
      entries.map((_, i) => i + 1),
      'sequence numbers 1..n, no gap or fork',
    );
    const created = entries.filter((e) => e.action === 'token.create' && e.detail?.name?.startsWith('audit-')).map((e) => e.detail!.name!);
    assert.equal(created.length, 3 * per, 'every instance’s actions, each once');
    assert.equal(new Set(created).size, 3 * per);
    // The heads the three instances report agree once nothing is appended.
    const heads = await Promise.all(tgs.map((t) => call(t.url, admin, 'GET', '/audit/verify')));
    assert.equal(new Set(heads.map((h) => h.body.head.hash)).size, 1);
    // Paging back (limit, before) through the shared table, a page from each instance in turn.
    const paged: number[] = [];
    let before: number | null = null;
    for (let i = 0; i < 20; i++) {
      const r = await call(
        tgs[i % tgs.length]!.url,
        admin,
        'GET',
        `/audit?action=token.create&limit=10${before ? `&before=${before}` : ''}`,
      );
      expectStatus(r, 200, 'page');
      paged.unshift(...(r.body.entries as Array<{ seq: number }>).map((e) => e.seq));
      before = r.body.nextBefore as number | null;
      if (before === null) break;
    }
    assert.deepEqual(
      paged,
      entries.filter((e) => e.action === 'token.create').map((e) => e.seq),
    );
  });

  test('m-of-n: a pending change opened on one instance is signed and published through another', async () => {
    const [a, b, c] = tgs as [RunningTrustgate, RunningTrustgate, RunningTrustgate];
    const gun = 'example.com/ha/threshold';
    const g = encodeURIComponent(gun);
    expectStatus(await call(a.url, admin, 'POST', '/repositories', { gun, rootKey: 'keystore' }), 201, 'create on A');
    const keyA = (await a.app.keys.list({ gun, role: 'targets' }))[0]!.id;
    const add = await call(a.url, admin, 'POST', `/repositories/${g}/roles/targets/keys`, { threshold: 2 });
    expectStatus(add, 200, 'second targets key');
    const keyB = add.body.keyId as string;
    const signer = async (name: string, keyId: string) =>
      (await call(a.url, admin, 'POST', '/tokens', { name, scopes: [`signer:${gun}`], keyIds: [keyId] })).body.token as string;
    const alice = await signer('alice', keyA);
    const bob = await signer('bob', keyB);

    const digest = `sha256:${'a'.repeat(64)}`;
    const proposed = await call(a.url, alice, 'POST', `/repositories/${g}/tags`, { tag: 'v1', digest, size: 42 });
    expectStatus(proposed, 202, 'alice proposes on A');
    const id = proposed.body.pending.id as string;
    assert.equal(proposed.body.pending.missing, 1);

    const seen = await call(b.url, bob, 'GET', `/pending?gun=${g}`);
    assert.deepEqual(
      seen.body.pending.map((p: { id: string }) => p.id),
      [id],
      'B sees the change opened on A',
    );
    const done = await call(b.url, bob, 'POST', `/pending/${id}/signatures`, { keyId: keyB });
    expectStatus(done, 200, 'bob signs on B');
    assert.equal(done.body.status, 'published');

    // Gone everywhere; the tag is served by every instance.
    for (const t of [a, b, c]) {
      assert.equal((await call(t.url, admin, 'GET', `/pending/${id}`)).status, 404);
      const repo = await call(t.url, admin, 'GET', `/repositories/${g}`);
      assert.deepEqual(
        repo.body.signedTags.map((x: { tag: string }) => x.tag),
        ['v1'],
      );
    }
    const audit = await call(c.url, admin, 'GET', `/audit?gun=${g}&action=pending.sign`);
    assert.deepEqual(
      audit.body.entries.map((e: { actor: { name: string }; outcome: string }) => `${e.actor.name} ${e.outcome}`),
      ['bob success'],
    );
  });

  test('m-of-n: the last signature given on two instances at once publishes the change once', async () => {
    const [a, b, c] = tgs as [RunningTrustgate, RunningTrustgate, RunningTrustgate];
    const gun = 'example.com/ha/race';
    const g = encodeURIComponent(gun);
    expectStatus(await call(a.url, admin, 'POST', '/repositories', { gun, rootKey: 'keystore' }), 201, 'create');
    const keyA = (await a.app.keys.list({ gun, role: 'targets' }))[0]!.id;
    const add = await call(a.url, admin, 'POST', `/repositories/${g}/roles/targets/keys`, { threshold: 2 });
    expectStatus(add, 200, 'second targets key');
    const keyB = add.body.keyId as string;
    const alice = (await call(a.url, admin, 'POST', '/tokens', { name: 'alice2', scopes: [`signer:${gun}`], keyIds: [keyA] })).body
      .token as string;
    const targetsVersion = async (base: string) =>
      (
        (await (await fetch(`${base}/v2/${gun}/_trust/tuf/targets.json`, { headers: { Authorization: `Bearer ${admin}` } })).json()) as {
          signed: { version: number };
        }
      ).signed.version;
    const before = await targetsVersion(a.url);
    const proposed = await call(a.url, alice, 'POST', `/repositories/${g}/tags`, {
      tag: 'v1',
      digest: `sha256:${'b'.repeat(64)}`,
      size: 7,
    });
    expectStatus(proposed, 202, 'proposed on A');
    const id = proposed.body.pending.id as string;
    const both = await Promise.all([b, c].map((t) => call(t.url, admin, 'POST', `/pending/${id}/signatures`, { keyId: keyB })));
    const statuses = both.map((r) => r.status).sort();
    assert.equal(statuses[0], 200, JSON.stringify(both.map((r) => r.body)));
    assert.ok(statuses[1] === 404 || statuses[1] === 409, `the other instance finds it gone: ${JSON.stringify(both.map((r) => r.body))}`);
    const after = (await call(c.url, admin, 'GET', `/repositories/${g}`)).body;
    assert.deepEqual(
      after.signedTags.map((x: { tag: string }) => x.tag),
      ['v1'],
    );
    assert.equal(await targetsVersion(c.url), before + 1, 'published once');
  });
});

describe('the first admin token', () => {
  test('is made once when three instance processes start together on an empty database (and HA2: none ends when its connections drop)', async () => {
    const url = await newDatabase();
    const dir = await makeTempDir('ha-boot');
    const procs: TrustgateProcess[] = [];
    try {
      const env = (i: number) => ({
        ...sharedEnv(url),
        TRUSTGATE_DATA_DIR: path.join(dir, `data${i}`),
        TRUSTGATE_KEYS_DIR: path.join(dir, `keys${i}`),
        TRUSTGATE_LOG_LEVEL: 'warn',
      });
      procs.push(...(await Promise.all([0, 1, 2].map((i) => startTrustgateProcess(env(i), path.join(dir, `tg${i}.log`))))));
      const made = procs.filter((p) => p.adminToken !== undefined);
      assert.equal(made.length, 1, 'exactly one instance wrote an admin-token file');
      const admin = made[0]!.adminToken!;
      for (const p of procs) {
        const r = await call(p.url, admin, 'GET', '/tokens');
        expectStatus(r, 200, p.url);
        assert.deepEqual(
          r.body.tokens.map((t: { name: string }) => t.name),
          ['initial-admin'],
        );
      }
      const audit = await call(procs[2]!.url, admin, 'GET', '/audit?action=token.create');
      assert.equal(audit.body.entries.length, 1, 'its creation is audited once');
      // A later start makes none either.
      const later = await startTrustgateProcess(env(3), path.join(dir, 'tg3.log'));
      procs.push(later);
      assert.equal(later.adminToken, undefined);
      assert.equal((await call(later.url, admin, 'GET', '/tokens')).body.tokens.length, 1);

      // HA2: every connection the server has is dropped (as by a restart) right after the
      // keystore was used: no instance ends, and each serves reads and writes again.
      const gun = 'example.com/ha/drop';
      expectStatus(await call(later.url, admin, 'POST', '/repositories', { gun, rootKey: 'keystore' }), 201, 'create');
      for (const p of procs) await call(p.url, admin, 'GET', `/repositories/${encodeURIComponent(gun)}/keys`);
      await terminateConnections(url);
      await new Promise((r) => setTimeout(r, 500));
      for (const p of procs) {
        p.proc.assertAlive();
        let r: Res | undefined;
        for (let i = 0; i < 5 && r?.status !== 201; i++)
          r = await call(p.url, admin, 'POST', `/repositories/${encodeURIComponent(gun)}/tags`, {
            tag: `p${p.url.split(':').at(-1)}-${i}`,
            digest: `sha256:${'c'.repeat(64)}`,
            size: 3,
          });
        assert.ok(
          r?.status === 200 || r?.status === 201,
          `a signed tag on ${p.url} after the drop: ${r?.status} ${JSON.stringify(r?.body)}`,
        );
      }
    } finally {
      for (const p of procs) await p.proc.stop();
      await removeTempDir(dir);
    }
  });
});
