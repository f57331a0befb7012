// Pins: the root and versions the verifier trusts per GUN are stored with the trust data, survive
// restarts and deletion of the GUN, and move only by TUF rules (a rotation signed by the pinned
// root, higher versions) or by the audited trust reset (REST and CLI). A real docker-registry,
// trustgate with its proxy, skopeo, SQLite and PostgreSQL.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Metadata, type RootBody } from '../../src/core/tuf/metadata.js';
import { Verifier } from '../../src/trust/verifier.js';
import { cli, lines } from '../cli/support.js';
import { checker } from '../management/support.js';
import { makeImageLayout, skopeoCopy, type ImageLayout } from '../helpers/oci.js';
import {
  makeTempDir,
  removeTempDir,
  startPostgres,
  startRegistry,
  type PostgresService,
  type RegistryService,
} from '../helpers/services.js';
import { denied, get, startStack, type Stack } from './support.js';

const REGISTRY = 'pins.test:5000';
const enc = encodeURIComponent;

let reg: RegistryService;
let work: string;
let n = 0;
before(async () => {
  reg = await startRegistry();
  work = await makeTempDir('proxy-pins');
});
after(async () => {
  await reg?.stop();
  await removeTempDir(work);
});

const env = (extra: Record<string, string> = {}) => ({ TRUSTGATE_REGISTRY_NAME: REGISTRY, ...extra });
const newRepo = (name: string) => `team/${name}-${++n}`;
const gunOf = (repo: string) => `${REGISTRY}/${repo}`;

interface Answer {
  status: number;
  body: any;
  headers: Record<string, string>;
}

/** A management API call; the answer is checked against openapi.yaml. */
async function api(s: PinStack, method: 'get' | 'post' | 'delete', p: string, token: string | null, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${s.tg.url}/api/v1${p}`, {
    method: method.toUpperCase(),
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  const out: Answer = { status: r.status, body: text ? JSON.parse(text) : undefined, headers: Object.fromEntries(r.headers) };
  checker().check(method, `/api/v1${p}`, out);
  return out;
}

async function ok(s: PinStack, method: 'get' | 'post' | 'delete', p: string, body?: unknown): Promise<Answer> {
  const r = await api(s, method, p, s.admin, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

interface PinStack extends Stack {
  admin: string;
}

async function stack(opts: { dir?: string; env?: Record<string, string> } = {}): Promise<PinStack> {
  const s = await startStack({ reg, env: env(opts.env), ...(opts.dir ? { dir: opts.dir } : {}) });
  return Object.assign(s, { admin: s.tg.adminToken });
}

/** An image in the upstream under `repo:tag` (pushed straight there, unsigned). */
async function upstreamImage(repo: string, tag: string): Promise<ImageLayout> {
  const img = await makeImageLayout(path.join(work, `img-${randomBytes(4).toString('hex')}`), { tag });
  await skopeoCopy(img.ref, `docker://${reg.host}/${repo}:${tag}`);
  return img;
}

/** Creates the GUN's trust data with a new root key held by trustgate. */
const createRepo = (s: PinStack, repo: string) => ok(s, 'post', '/repositories', { gun: gunOf(repo), rootKey: 'keystore' });
const signTag = (s: PinStack, repo: string, tag: string, img: ImageLayout) =>
  ok(s, 'post', `/repositories/${enc(gunOf(repo))}/tags`, { tag, digest: img.manifest.digest, size: img.manifest.size });
const pull = (s: Stack, repo: string, tag: string) => get(`${s.px.url}/v2/${repo}/manifests/${tag}`);

async function pulls(s: Stack, repo: string, tag: string, img: ImageLayout): Promise<void> {
  const r = await pull(s, repo, tag);
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.headers.get('docker-content-digest'), img.manifest.digest);
}

const rootOf = (bytes: Buffer) => Metadata.parse<RootBody>('root', bytes);

describe('pins survive deletion', () => {
  let s: PinStack;
  before(async () => {
    s = await stack();
  });
  after(() => s?.stop());

  test('pins survive deletion: a re-created repository with a new root is refused at the proxy until trust-reset', async () => {
    const repo = newRepo('recreated');
    const gun = gunOf(repo);
    const a = await upstreamImage(repo, 'v1');
    await createRepo(s, repo);
    await signTag(s, repo, 'v1', a);
    await pulls(s, repo, 'v1', a);
    const pinned = await s.tg.app.store.pin(gun);
    assert.ok(pinned, 'the first verification pins the root');
    const firstRootKeys = rootOf(pinned.root).body.roles.root.keyids;

    // A Notary DELETE of the GUN (as `notary delete --remote` sends it), then trust data under a
    // new root key, signing another image for the same tag.
    const del = await fetch(`${s.tg.url}/v2/${gun}/_trust/tuf/`, { method: 'DELETE', headers: { authorization: `Bearer ${s.admin}` } });
    assert.equal(del.status, 200, await del.text());
    assert.equal(await s.tg.app.trust.current(gun, 'root'), undefined);
    assert.ok((await s.tg.app.store.pin(gun))?.root.equals(pinned.root), 'the deletion keeps the pin');
    const b = await upstreamImage(repo, 'v1');
    await createRepo(s, repo);
    await signTag(s, repo, 'v1', b);
    const newRoot = (await s.tg.app.trust.current(gun, 'root'))!;
    assert.notDeepEqual(rootOf(newRoot.bytes).body.roles.root.keyids, firstRootKeys);

    const refused = denied(await pull(s, repo, 'v1'));
    assert.equal(refused.detail.reason, 'root-changed', refused.message);
    assert.match(refused.message, /not the one pinned at version 1.*reset its trust/);
    assert.equal(denied(await pull(s, repo, b.manifest.digest)).detail.reason, 'root-changed');
    assert.ok((await s.tg.app.store.pin(gun))?.root.equals(pinned.root), 'a refused root is not pinned');

    // The admin accepts the new root: pulls get the new image.
    const reset = await ok(s, 'post', `/repositories/${enc(gun)}/trust-reset`);
    assert.equal(reset.body.previous.rootVersion, 1);
    assert.deepEqual(reset.body.previous.rootKeyIds, firstRootKeys);
    assert.deepEqual(reset.body.pinned.rootKeyIds, rootOf(newRoot.bytes).body.roles.root.keyids);
    await pulls(s, repo, 'v1', b);
    assert.ok((await s.tg.app.store.pin(gun))?.root.equals(newRoot.bytes));
  });

  test('a root rotation signed by the pinned root moves the pin forward; pins are written only when they move', async () => {
    const repo = newRepo('rotated');
    const gun = gunOf(repo);
    const a = await upstreamImage(repo, 'v1');
    await createRepo(s, repo);
    await signTag(s, repo, 'v1', a);
    let clock = Date.now();
    const v = new Verifier(s.tg.app.trust, { now: () => (clock += 1000) });
    assert.ok((await v.verifyTag(gun, 'v1')).ok);
    const first = (await s.tg.app.store.pin(gun))!;
    // Verifying unchanged data again, by this and by a fresh verifier, writes nothing.
    assert.ok((await v.verifyTag(gun, 'v1')).ok);
    assert.ok((await new Verifier(s.tg.app.trust, { now: () => (clock += 1000) }).verifyTag(gun, 'v1')).ok);
    assert.equal((await s.tg.app.store.pin(gun))!.updatedAt.getTime(), first.updatedAt.getTime());

    await ok(s, 'post', `/repositories/${enc(gun)}/keys/root/rotate`, {});
    const verdict = await v.verifyTag(gun, 'v1');
    assert.ok(verdict.ok, verdict.message);
    const moved = (await s.tg.app.store.pin(gun))!;
    assert.equal(rootOf(moved.root).version, 2);
    assert.equal(moved.versions.root, 2);
    assert.ok(moved.versions.timestamp! > first.versions.timestamp!);
    assert.ok(moved.updatedAt.getTime() > first.updatedAt.getTime());
    await pulls(s, repo, 'v1', a);
  });
});

/** Deletes the newest row of each role with SQL, as someone with access to the database could. */
const NEWEST = ['targets', 'snapshot', 'timestamp'];

/** Pins, restarts, rolls the database back under the proxy; the proxy must deny. */
async function rollbackScenario(opts: {
  env?: Record<string, string>;
  rollBack: (gun: string, dir: string) => Promise<void>;
}): Promise<void> {
  const dir = await makeTempDir('proxy-pins-restart');
  try {
    const repo = newRepo('rolled-back');
    const gun = gunOf(repo);
    const a = await upstreamImage(repo, 'v1');
    let s = await stack({ dir, ...(opts.env ? { env: opts.env } : {}) });
    let b: ImageLayout;
    try {
      await createRepo(s, repo);
      await signTag(s, repo, 'v1', a);
      await pulls(s, repo, 'v1', a);
      b = await upstreamImage(repo, 'v1');
      await signTag(s, repo, 'v1', b);
      await pulls(s, repo, 'v1', b);
    } finally {
      await s.stop();
    }
    await opts.rollBack(gun, dir);
    s = await stack({ dir, ...(opts.env ? { env: opts.env } : {}) });
    try {
      // The store now names the first image again; the pin remembers newer versions.
      const targets = (await s.tg.app.trust.current(gun, 'targets'))!;
      assert.match(
        targets.bytes.toString(),
        new RegExp(Buffer.from(a.manifest.digest.slice(7), 'hex').toString('base64').replace(/[+/]/g, '\\$&')),
      );
      const r = denied(await pull(s, repo, 'v1'));
      assert.equal(r.detail.reason, 'rollback', r.message);
      assert.match(r.message, /older than version \d+ verified before .*reset its trust/);
      assert.equal(denied(await pull(s, repo, a.manifest.digest)).detail.reason, 'rollback');
      // An administrator who means the older data (a restore) accepts it with a trust reset.
      await ok(s, 'post', `/repositories/${enc(gun)}/trust-reset`);
      await pulls(s, repo, 'v1', a);
    } finally {
      await s.stop();
    }
  } finally {
    await removeTempDir(dir);
  }
}

describe('V11: pins and versions survive a restart', () => {
  test('V11: pins and versions survive a restart: rows deleted from the database do not roll the proxy back (SQLite)', () =>
    rollbackScenario({
      rollBack: async (gun, dir) => {
        const db = new Database(path.join(dir, 'data', 'trustgate.db'));
        try {
          for (const role of NEWEST) {
            const r = db
              .prepare(
                'DELETE FROM tuf_files WHERE gun = ? AND role = ? AND version = (SELECT MAX(version) FROM tuf_files WHERE gun = ? AND role = ?)',
              )
              .run(gun, role, gun, role);
            assert.equal(r.changes, 1);
          }
        } finally {
          db.close();
        }
      },
    }));

  describe('PostgreSQL', () => {
    let svc: PostgresService;
    before(async () => {
      svc = await startPostgres();
    });
    after(() => svc?.stop());

    test('V11: pins and versions survive a restart: rows deleted from the database do not roll the proxy back (PostgreSQL)', async () => {
      await rollbackScenario({
        env: { TRUSTGATE_DATABASE_URL: svc.url },
        rollBack: async (gun) => {
          const c = new pg.Client({ connectionString: svc.url });
          await c.connect();
          try {
            for (const role of NEWEST) {
              const r = await c.query(
                'DELETE FROM tuf_files WHERE gun = $1 AND role = $2 AND version = (SELECT MAX(version) FROM tuf_files WHERE gun = $1 AND role = $2)',
                [gun, role],
              );
              assert.equal(r.rowCount, 1);
            }
          } finally {
            await c.end();
          }
        },
      });
    });
  });
});

describe('trust-reset', () => {
  let s: PinStack;
  let reader: string;
  let signer: string;
  before(async () => {
    s = await stack();
    reader = (await ok(s, 'post', '/tokens', { name: 'reader', scopes: ['reader'] })).body.token;
    signer = (await ok(s, 'post', '/tokens', { name: 'signer', scopes: ['signer:*'] })).body.token;
  });
  after(() => s?.stop());

  /** A signed, pulled (so pinned) repository. */
  async function pinnedRepo(name: string) {
    const repo = newRepo(name);
    const img = await upstreamImage(repo, 'v1');
    await createRepo(s, repo);
    await signTag(s, repo, 'v1', img);
    await pulls(s, repo, 'v1', img);
    return { repo, gun: gunOf(repo), img, pin: (await s.tg.app.store.pin(gunOf(repo)))! };
  }
  const resets = async (gun?: string) =>
    (await ok(s, 'get', `/audit?action=repository.trust-reset${gun ? `&gun=${enc(gun)}` : ''}`)).body.entries as Array<{
      actor: { id: string; name: string };
      outcome: string;
      detail: Record<string, unknown>;
    }>;
  const samePin = async (gun: string, before: { root: Buffer; versions: Record<string, number>; updatedAt: Date } | undefined) => {
    const now = await s.tg.app.store.pin(gun);
    if (!before) return assert.equal(now, undefined, `no pin for ${gun}`);
    assert.ok(now?.root.equals(before.root), 'same root');
    assert.deepEqual(now!.versions, before.versions);
    assert.equal(now!.updatedAt.getTime(), before.updatedAt.getTime());
  };

  test('trust-reset is admin-only, audited, and re-pins', async () => {
    const { repo, gun, img, pin } = await pinnedRepo('reset');
    const path = `/repositories/${enc(gun)}/trust-reset`;
    for (const token of [reader, signer]) {
      const r = await api(s, 'post', path, token);
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'FORBIDDEN');
    }
    assert.equal((await api(s, 'post', path, null)).status, 401);
    await samePin(gun, pin);
    assert.deepEqual(await resets(gun), []);
    const refused = (await ok(s, 'get', `/audit?action=auth.denied&gun=${enc(gun)}`)).body.entries;
    assert.ok(
      refused.some((e: { detail: { attempted?: string } }) => e.detail.attempted === 'repository.trust-reset'),
      'the refusal is audited',
    );

    const keyIds = rootOf(pin.root).body.roles.root.keyids;
    const r = await ok(s, 'post', path);
    assert.deepEqual(r.body, {
      gun,
      previous: { rootVersion: 1, rootKeyIds: keyIds, versions: pin.versions },
      pinned: { rootVersion: 1, rootKeyIds: keyIds, versions: { root: 1 } },
    });
    // Re-pinned as on first use: the current root, versions from scratch, and pulls still work.
    const now = (await s.tg.app.store.pin(gun))!;
    assert.ok(now.root.equals(pin.root));
    assert.deepEqual(now.versions, { root: 1 });
    await pulls(s, repo, 'v1', img);
    assert.deepEqual((await s.tg.app.store.pin(gun))!.versions, pin.versions, 'the next verification records the versions again');

    const [entry, ...more] = await resets(gun);
    assert.equal(more.length, 0);
    assert.equal(entry!.outcome, 'success');
    const me = (await ok(s, 'get', '/whoami')).body;
    assert.deepEqual(entry!.actor, { id: me.id, name: me.name });
    assert.deepEqual(entry!.detail, {
      previousRootVersion: 1,
      previousRootKeyIds: keyIds,
      previousVersions: Object.entries(pin.versions).map(([k, v]) => `${k}=${v}`),
      rootVersion: 1,
      rootKeyIds: keyIds,
    });
  });

  test('trust-reset refuses bad input with 4xx and changes nothing: unknown GUN 404, invalid GUN 400, a body 400, non-admin 403', async () => {
    const { gun, pin } = await pinnedRepo('bad-input');
    const unknown = gunOf(newRepo('never-created'));
    const done = async () => (await resets()).filter((e) => e.outcome === 'success').length;
    const before = await done();
    const cases: Array<[string, string | null, unknown, number, string]> = [
      [`/repositories/${enc(unknown)}/trust-reset`, s.admin, undefined, 404, 'NOT_FOUND'],
      [`/repositories/${enc('not a gun')}/trust-reset`, s.admin, undefined, 400, 'INVALID_GUN'],
      [`/repositories/${enc(`${REGISTRY}/team/../x`)}/trust-reset`, s.admin, undefined, 400, 'INVALID_GUN'],
      [`/repositories/${enc(gun)}/trust-reset`, s.admin, { root: 'x' }, 400, 'INVALID_REQUEST'],
      [`/repositories/${enc(gun)}/trust-reset`, reader, undefined, 403, 'FORBIDDEN'],
      [`/repositories/${enc(unknown)}/trust-reset`, signer, undefined, 403, 'FORBIDDEN'],
    ];
    for (const [p, token, body, status, code] of cases) {
      const r = await api(s, 'post', p, token, body);
      assert.equal(r.status, status, `${p}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, p);
    }
    await samePin(gun, pin);
    await samePin(unknown, undefined);
    assert.equal(await done(), before, 'no reset was recorded');
  });

  test('trust-reset from the CLI against a running server: a deleted repository is pinned anew on first use', async () => {
    const { repo, gun, pin } = await pinnedRepo('cli');
    const admin = cli(s.tg.url, s.admin);
    const help = await admin.run(['--help']);
    assert.match(help.stdout, /repo trust-reset\s+make the proxy trust a repository's current root again/);
    assert.match((await admin.run(['help', 'repo', 'trust-reset'])).stdout, /usage: trustgate repo trust-reset REPO/);

    const usage = await admin.run(['repo', 'trust-reset']);
    assert.equal(usage.code, 2, usage.stderr);
    const denied3 = await cli(s.tg.url, reader).run(['repo', 'trust-reset', gun]);
    assert.equal(denied3.code, 3, denied3.stderr);
    assert.match(lines(denied3.stderr)[0]!, /^trustgate: denied: /);
    const missing = await admin.run(['repo', 'trust-reset', gunOf(newRepo('nothing'))]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /NOT_FOUND: .*no trust data and no pinned root/);
    await samePin(gun, pin);

    // Deleted, then reset while it has no trust data: the pin goes, and the next root is pinned on first use.
    await ok(s, 'delete', `/repositories/${enc(gun)}`);
    const r = await admin.run(['repo', 'trust-reset', gun]);
    assert.equal(r.code, 0, r.stderr);
    const keyId = rootOf(pin.root).body.roles.root.keyids[0]!.slice(0, 12);
    assert.equal(r.stdout, `reset the trust of ${gun}: was root v1 (${keyId}), now the next root it gets, on first use\n`);
    assert.equal(await s.tg.app.store.pin(gun), undefined);
    const b = await upstreamImage(repo, 'v1');
    await createRepo(s, repo);
    await signTag(s, repo, 'v1', b);
    await pulls(s, repo, 'v1', b);
    const repinned = (await s.tg.app.store.pin(gun))!;
    assert.ok(!repinned.root.equals(pin.root), 'the new root is pinned');

    const j = await admin.run(['repo', 'trust-reset', gun, '--json']);
    assert.equal(j.code, 0, j.stderr);
    const body = JSON.parse(j.stdout);
    assert.equal(body.gun, gun);
    assert.equal(body.previous.rootVersion, 1);
    assert.deepEqual(body.pinned.rootKeyIds, rootOf(repinned.root).body.roles.root.keyids);
  });
});
