// The management API as the web dashboard uses it, on a real trustgate with its registry proxy in
// front of a real docker-registry: repository and tag pages (search, offset/limit, totals, bad
// values), when tags were signed, where keys are held, pending changes explained (diff, who
// signed, whether the caller's keys count) and approved by two tokens, audit pages, and the
// proxy's refusals recorded from real denied pulls. Every answer is checked against openapi.yaml.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { makeImageLayout, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { get, startStack, type Stack } from '../proxy/support.js';
import { outsideKey } from './keys-helpers.js';
import { checker, enc, expectError, expectStatus, type Res } from './support.js';

let s: Stack;
let dir: string;
before(async () => {
  dir = await makeTempDir('dashboard');
  s = await startStack();
});
after(async () => {
  await s?.stop();
  await removeTempDir(dir);
});

const DAY = 86_400_000;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
let n = 0;
/** A fresh GUN under this test's registry name. */
const newGun = (name: string) => `registry.example.com:5000/dash${process.pid}/${name}-${++n}`;

/** A management API call with `token` (default: admin), checked against openapi.yaml. */
async function call(method: 'get' | 'post' | 'put' | 'delete', p: string, o: { token?: string; body?: unknown } = {}): Promise<Res> {
  const url = `/api/v1${p}`;
  const agent = request(s.tg.url);
  let r = agent[method](url).set('Authorization', `Bearer ${o.token ?? s.token}`);
  if (o.body !== undefined) r = r.send(o.body as object);
  const res = await r;
  const out: Res = { status: res.status, body: res.body, headers: res.headers as Record<string, string>, text: res.text };
  checker().check(method, url, out);
  return out;
}

const createRepo = async (gun: string) => expectStatus(await call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
const addTag = async (gun: string, tag: string, d: string, size = 10, role?: string) => {
  const r = await call('post', `/repositories/${enc(gun)}/tags`, { body: { tag, digest: d, size, ...(role ? { role } : {}) } });
  expectStatus(r, 200);
  return r;
};

test('repositories: search, offset/limit and total; summaries with roles, tag counts and expiry; bad values are 400', async () => {
  const prefix = `registry.example.com:5000/dash${process.pid}/list`;
  const guns = ['alpha', 'beta', 'gamma-alpha', 'delta'].map((x) => `${prefix}/${x}`);
  for (const g of guns) await createRepo(g);
  await addTag(guns[0]!, 'v1', digest('a'));
  await addTag(guns[0]!, 'v2', digest('b'));

  const all = await call('get', `/repositories?q=${enc(prefix)}`);
  expectStatus(all, 200);
  assert.equal(all.body.total, 4);
  assert.equal(all.body.offset, 0);
  assert.equal(all.body.limit, null);
  assert.deepEqual(
    all.body.repositories.map((r: { gun: string }) => r.gun),
    [...guns].sort(),
  );
  const alpha = all.body.repositories.find((r: { gun: string }) => r.gun === guns[0]);
  assert.equal(alpha.tagCount, 2);
  assert.equal(alpha.signedTagCount, 2);
  assert.deepEqual(
    alpha.roles.map((r: { role: string; renewedAutomatically: boolean; keyCount: number }) => [r.role, r.renewedAutomatically, r.keyCount]),
    [
      ['root', false, 1],
      ['targets', false, 1],
      ['snapshot', true, 1],
      ['timestamp', true, 1],
    ],
  );
  assert.equal(alpha.nextExpiry.role, 'timestamp', 'the timestamp expires first');
  assert.equal(alpha.nextManualExpiry.role, 'targets', 'of the roles a person re-signs, targets expires first');

  // Search is a case-insensitive substring; pages cut the sorted matches.
  const q = await call('get', `/repositories?q=${enc(`${prefix}/`.toUpperCase())}ALPHA`);
  assert.deepEqual(
    q.body.repositories.map((r: { gun: string }) => r.gun),
    [guns[0]],
  );
  const alphas = await call('get', `/repositories?q=alpha&limit=1&offset=1`);
  assert.ok(alphas.body.total >= 2);
  assert.equal(alphas.body.repositories.length, 1);
  assert.equal(alphas.body.limit, 1);
  const page2 = await call('get', `/repositories?q=${enc(prefix)}&offset=2&limit=2`);
  assert.deepEqual(
    page2.body.repositories.map((r: { gun: string }) => r.gun),
    [...guns].sort().slice(2),
  );
  const past = await call('get', `/repositories?q=${enc(prefix)}&offset=10&limit=5`);
  expectStatus(past, 200);
  assert.deepEqual(past.body.repositories, []);
  assert.equal(past.body.total, 4, 'the total does not depend on the page');
  const none = await call('get', `/repositories?q=no-such-repository-anywhere`);
  assert.equal(none.body.total, 0);

  // A summary follows the repository's changes (kept per timestamp).
  await addTag(guns[0]!, 'v3', digest('c'));
  const again = await call('get', `/repositories?q=${enc(guns[0]!)}`);
  assert.equal(again.body.repositories[0].tagCount, 3);

  // A reader of one pattern sees (and counts) only what it may read.
  const reader = s.tg.token([`reader:${prefix}/a*`]);
  const mine = await call('get', `/repositories?q=${enc(prefix)}`, { token: reader });
  assert.deepEqual(
    mine.body.repositories.map((r: { gun: string }) => r.gun),
    [guns[0]],
  );
  assert.equal(mine.body.total, 1);

  for (const bad of [
    'limit=0',
    'limit=1001',
    'limit=abc',
    'limit=-1',
    'offset=-1',
    'offset=1.5',
    'q=',
    `q=${'x'.repeat(256)}`,
    'limit=1&limit=2',
  ])
    expectError(await call('get', `/repositories?${bad}`), 400, 'INVALID_REQUEST');
});

test('tags: pages in natural order, search, role filter, totals; signedAt is when the signature as it is was stored', async () => {
  const gun = newGun('tags');
  const g = enc(gun);
  await createRepo(gun);
  expectStatus(await call('post', `/repositories/${g}/delegations`, { body: { role: 'targets/qa', generate: true, paths: ['qa-'] } }), 200);
  const t0 = s.tg.now();
  await addTag(gun, 'v1', digest('a'), 11);
  s.tg.advance(DAY);
  const t1 = s.tg.now();
  await addTag(gun, 'v2', digest('b'), 12);
  await addTag(gun, 'v10', digest('c'), 13);
  s.tg.advance(DAY);
  const t2 = s.tg.now();
  await addTag(gun, 'qa-1', digest('d'), 14, 'targets/qa');
  s.tg.advance(DAY);
  const t3 = s.tg.now();
  await addTag(gun, 'v2', digest('e'), 15); // moves v2 to another digest

  const list = await call('get', `/repositories/${g}/tags`);
  expectStatus(list, 200);
  assert.equal(list.body.total, 4);
  assert.equal(list.body.limit, 100);
  const rows = list.body.tags as Array<{
    tag: string;
    digest: string;
    size: number;
    roles: string[];
    signers: string[];
    released: boolean;
    signedAt: string;
    signedAtExact: boolean;
  }>;
  assert.deepEqual(
    rows.map((t) => [t.tag, t.digest, t.size, t.roles, t.signers, t.released]),
    [
      ['qa-1', digest('d'), 14, ['targets/qa'], ['qa'], false],
      ['v1', digest('a'), 11, ['targets'], ['Repo Admin'], true],
      ['v2', digest('e'), 15, ['targets'], ['Repo Admin'], true],
      ['v10', digest('c'), 13, ['targets'], ['Repo Admin'], true],
    ],
  );
  const at = Object.fromEntries(rows.map((t) => [t.tag, Date.parse(t.signedAt)]));
  const within = (v: number, from: number, what: string) =>
    assert.ok(v >= from && v < from + 5_000, `${what}: ${new Date(v).toISOString()}`);
  within(at.v1!, t0, 'v1 signed first, unchanged since');
  within(at.v10!, t1, 'v10 signed on day 1');
  within(at['qa-1']!, t2, 'qa-1 signed in targets/qa on day 2');
  within(at.v2!, t3, 'v2 counts from when it got its current digest');
  assert.ok(rows.every((t) => t.signedAtExact));

  // Pages, search, role filter.
  const page = await call('get', `/repositories/${g}/tags?offset=1&limit=2`);
  assert.deepEqual(
    page.body.tags.map((t: { tag: string }) => t.tag),
    ['v1', 'v2'],
  );
  assert.equal(page.body.total, 4);
  const past = await call('get', `/repositories/${g}/tags?offset=4`);
  assert.deepEqual(past.body.tags, []);
  assert.equal(past.body.total, 4);
  const v1x = await call('get', `/repositories/${g}/tags?q=V1`);
  assert.deepEqual(
    v1x.body.tags.map((t: { tag: string }) => t.tag),
    ['v1', 'v10'],
  );
  const qa = await call('get', `/repositories/${g}/tags?role=${enc('targets/qa')}`);
  assert.deepEqual(
    qa.body.tags.map((t: { tag: string }) => t.tag),
    ['qa-1'],
  );

  for (const bad of ['limit=0', 'limit=1001', 'offset=x', 'q='])
    expectError(await call('get', `/repositories/${g}/tags?${bad}`), 400, 'INVALID_REQUEST');
  expectError(await call('get', `/repositories/${g}/tags?role=snapshot`), 400, 'INVALID_ROLE');
  expectError(await call('get', `/repositories/${g}/tags?role=${enc('targets/nope')}`), 404, 'ROLE_NOT_FOUND');
  expectError(await call('get', `/repositories/${enc(newGun('absent'))}/tags`), 404, 'NOT_FOUND');
  const stranger = s.tg.token(['reader:other.example.com/**']);
  expectError(await call('get', `/repositories/${g}/tags`, { token: stranger }), 403, 'FORBIDDEN');
});

test('tags: past the versions read back, signedAt is "at or before" (signedAtExact false)', async () => {
  const gun = newGun('history');
  const g = enc(gun);
  await createRepo(gun);
  await addTag(gun, 'old', digest('a'));
  // More new versions of targets than one derivation reads back (HISTORY_MAX_VERSIONS, 200).
  for (let i = 0; i < 201; i++) expectStatus(await call('post', `/repositories/${g}/resign`, { body: { roles: ['targets'] } }), 200);
  await addTag(gun, 'new', digest('b'));
  const rows = (await call('get', `/repositories/${g}/tags`)).body.tags as Array<{ tag: string; signedAt: string; signedAtExact: boolean }>;
  const by = Object.fromEntries(rows.map((r) => [r.tag, r]));
  assert.equal(by.new!.signedAtExact, true);
  assert.equal(by.old!.signedAtExact, false, 'signed before the oldest version read');
  assert.ok(Date.parse(by.old!.signedAt) <= Date.parse(by.new!.signedAt));
});

test('keys: where each is held (keystore, offline) and the threshold and expiry of its role', async () => {
  const gun = newGun('keys');
  const off = await call('post', '/repositories', { body: { gun, rootKey: 'offline', passphrase: 'offline-root-passphrase' } });
  expectStatus(off, 201);
  const keys = await call('get', `/repositories/${enc(gun)}/keys`);
  expectStatus(keys, 200);
  assert.deepEqual(
    keys.body.keys.map((k: { role: string; location: string; roleThreshold: number; roleExpires: string }) => [
      k.role,
      k.location,
      k.roleThreshold,
      typeof k.roleExpires,
    ]),
    [
      ['root', 'offline', 1, 'string'],
      ['targets', 'keystore', 1, 'string'],
      ['snapshot', 'keystore', 1, 'string'],
      ['timestamp', 'keystore', 1, 'string'],
    ],
  );
});

test('pending: a readable diff, who signed, whether the caller can add a signature; two tokens approve until it publishes', async () => {
  const gun = newGun('pending');
  const g = enc(gun);
  await createRepo(gun);
  await addTag(gun, 'keep', digest('1'));
  await addTag(gun, 'moved', digest('2'), 20);
  await addTag(gun, 'gone', digest('3'));
  // targets becomes 2-of-2 with two server-held keys, each bound to its own signer token.
  const second = await call('post', `/repositories/${g}/roles/targets/keys`, { body: { threshold: 2 } });
  expectStatus(second, 200);
  const keys = (await call('get', `/repositories/${g}/keys`)).body.keys as Array<{ id: string; role: string }>;
  const [k1, k2] = keys.filter((k) => k.role === 'targets').map((k) => k.id);
  assert.ok(k1 && k2 && k1 !== k2);
  const alice = s.tg.token([`signer:${gun}`], { keyIds: [k1], name: 'alice' });
  const bob = s.tg.token([`signer:${gun}`], { keyIds: [k2], name: 'bob' });
  const reader = s.tg.token(['reader']);

  // Alice changes three tags in one batch (signing API): it waits for a second signature.
  const batch = await request(s.tg.url)
    .post('/api/v1/signing/batch')
    .set('Authorization', `Bearer ${alice}`)
    .send({
      items: [
        { gun, tag: 'new', digest: digest('4'), size: 40 },
        { gun, tag: 'moved', digest: digest('5'), size: 50 },
      ],
    });
  assert.equal(batch.status, 202, batch.text);
  const listed = await call('get', `/pending?gun=${g}`, { token: bob });
  expectStatus(listed, 200);
  assert.equal(listed.body.pending.length, 1);
  const p = listed.body.pending[0];
  const part = p.parts.find((x: { role: string }) => x.role === 'targets');
  assert.equal(part.diff.fromVersion + 1, part.diff.toVersion);
  assert.deepEqual(part.diff.targets, {
    added: [{ tag: 'new', digest: digest('4'), size: 40 }],
    removed: [],
    changed: [{ tag: 'moved', from: { tag: 'moved', digest: digest('2'), size: 20 }, to: { tag: 'moved', digest: digest('5'), size: 50 } }],
  });
  assert.deepEqual(part.diff.roles, []);
  assert.deepEqual(p.signedBy, [{ keyId: k1, roles: ['targets'], by: { id: p.createdBy.id, name: 'alice' } }]);
  assert.deepEqual(p.caller, { canSign: true, keyIds: [k2] }, "bob's key still counts");
  const asAlice = await call('get', `/pending/${p.id}`, { token: alice });
  assert.deepEqual(asAlice.body.caller, { canSign: false, keyIds: [] }, "alice's key has signed already");
  const asReader = await call('get', `/pending/${p.id}`, { token: reader });
  assert.equal(asReader.body.caller.canSign, false);
  const asAdmin = await call('get', `/pending/${p.id}`);
  assert.deepEqual(asAdmin.body.caller, { canSign: true, keyIds: [k2] }, 'an admin may use every held key');
  // A reader may not sign, whatever it sees.
  expectError(await call('post', `/pending/${p.id}/signatures`, { token: reader, body: { keyId: k2 } }), 403, 'FORBIDDEN');

  // Bob approves: it publishes.
  const signed = await call('post', `/pending/${p.id}/signatures`, { token: bob, body: { keyId: k2 } });
  expectStatus(signed, 200);
  assert.equal(signed.body.status, 'published');
  const tags = (await call('get', `/repositories/${g}/tags`)).body.tags.map((t: { tag: string; digest: string }) => [t.tag, t.digest]);
  assert.deepEqual(tags, [
    ['gone', digest('3')],
    ['keep', digest('1')],
    ['moved', digest('5')],
    ['new', digest('4')],
  ]);

  // A removal is explained the same way.
  const removal = await call('delete', `/repositories/${g}/tags/gone`, { token: alice });
  expectStatus(removal, 202);
  const rm = (await call('get', `/pending/${removal.body.pending.id}`)).body;
  assert.deepEqual(rm.parts[0].diff.targets.removed, [{ tag: 'gone', digest: digest('3'), size: 10 }]);
  expectStatus(await call('delete', `/pending/${rm.id}`), 200);
  const threshold = await call('put', `/repositories/${g}/roles/targets/threshold`, { body: { threshold: 1 } });
  expectStatus(threshold, 200);
});

test('pending: a root change shows the keys and threshold it changes', async () => {
  const gun = newGun('pending-root');
  const g = enc(gun);
  await createRepo(gun);
  const bob = outsideKey();
  const pend = await call('post', `/repositories/${g}/roles/targets/keys`, { body: { publicKey: bob.publicPem, threshold: 2 } });
  expectStatus(pend, 202);
  const p = (await call('get', `/pending/${pend.body.pending.id}`)).body;
  const root = p.parts.find((x: { role: string }) => x.role === 'root');
  assert.deepEqual(root.diff.roles, [
    { role: 'targets', change: 'changed', keyIdsAdded: [bob.id], keyIdsRemoved: [], threshold: { from: 1, to: 2 } },
  ]);
  assert.deepEqual(root.diff.targets, { added: [], removed: [], changed: [] });
  assert.equal(root.diff.fromVersion, 1);
  assert.equal(root.diff.toVersion, 2);
  // The admin signed root and targets when it opened the change; bob's outside key is what is missing.
  assert.ok(p.signedBy.every((x: { by: { name: string } }) => x.by.name === p.createdBy.name));
  assert.deepEqual(p.caller, { canSign: false, keyIds: [] }, 'the missing key is not held by the server');
  expectStatus(await call('delete', `/pending/${p.id}`), 200);
});

test('expiring: soonest first, a page at a time; manual=true leaves out what the server renews itself', async () => {
  const gun = newGun('expiring');
  await createRepo(gun);
  const all = await call('get', '/expiring?within=5000d');
  expectStatus(all, 200);
  assert.equal(all.body.total, all.body.items.length);
  assert.equal(all.body.limit, null);
  type Item = { gun: string; role: string; expires: string; renewedAutomatically: boolean };
  const items = all.body.items as Item[];
  assert.ok(
    items.every((x, i) => i === 0 || Date.parse(x.expires) >= Date.parse(items[i - 1]!.expires)),
    'soonest first',
  );
  assert.deepEqual(
    items.filter((x) => x.gun === gun).map((x) => [x.role, x.renewedAutomatically]),
    [
      ['timestamp', true],
      ['targets', false],
      ['snapshot', true],
      ['root', false],
    ],
  );
  const manual = await call('get', '/expiring?within=5000d&manual=true');
  assert.ok((manual.body.items as Item[]).every((x) => !x.renewedAutomatically));
  assert.deepEqual(
    (manual.body.items as Item[]).filter((x) => x.gun === gun).map((x) => x.role),
    ['targets', 'root'],
  );
  const page = await call('get', '/expiring?within=5000d&offset=1&limit=2');
  assert.deepEqual(page.body.items, items.slice(1, 3));
  assert.equal(page.body.total, all.body.total);
  for (const bad of ['manual=yes', 'limit=0', 'limit=1001', 'offset=-1', 'within=soon'])
    expectError(await call('get', `/expiring?${bad}`), 400, 'INVALID_REQUEST');
});

test('audit: pages back with before/nextBefore, filters by outcome; bad values are 400; verify says when it checked', async () => {
  const gun = newGun('audit');
  await createRepo(gun);
  for (let i = 0; i < 5; i++) await addTag(gun, `t${i}`, digest(String(i)));
  const everything = (await call('get', `/audit?gun=${enc(gun)}`)).body;
  assert.equal(everything.nextBefore, null);
  const seqs = everything.entries.map((e: { seq: number }) => e.seq);
  assert.equal(seqs.length, 6);
  // Newest first pages of 4: the newest four, then the rest.
  const p1 = (await call('get', `/audit?gun=${enc(gun)}&limit=4`)).body;
  assert.deepEqual(
    p1.entries.map((e: { seq: number }) => e.seq),
    seqs.slice(2),
  );
  assert.equal(p1.nextBefore, seqs[2]);
  const p2 = (await call('get', `/audit?gun=${enc(gun)}&limit=4&before=${p1.nextBefore}`)).body;
  assert.deepEqual(
    p2.entries.map((e: { seq: number }) => e.seq),
    seqs.slice(0, 2),
  );
  assert.equal(p2.nextBefore, null);
  const exact = (await call('get', `/audit?gun=${enc(gun)}&limit=6`)).body;
  assert.equal(exact.nextBefore, null, 'no older page when the limit takes every match');
  const empty = (await call('get', `/audit?gun=${enc(gun)}&before=1`)).body;
  assert.deepEqual(empty.entries, []);

  // A refusal, then only refusals.
  const reader = s.tg.token([`reader:${gun}`]);
  expectError(
    await call('post', `/repositories/${enc(gun)}/tags`, { token: reader, body: { tag: 'x', digest: digest('9'), size: 1 } }),
    403,
    'FORBIDDEN',
  );
  await s.tg.app.management.audit.flushDenials();
  const denied = (await call('get', `/audit?outcome=denied&gun=${enc(gun)}`)).body.entries;
  assert.ok(denied.length >= 1);
  assert.ok(denied.every((e: { outcome: string }) => e.outcome === 'denied'));

  for (const bad of ['before=0', 'before=x', 'outcome=maybe', 'limit=0', 'limit=100001'])
    expectError(await call('get', `/audit?${bad}`), 400, 'INVALID_REQUEST');
  const verify = await call('get', '/audit/verify');
  expectStatus(verify, 200);
  assert.equal(verify.body.ok, true);
  assert.ok(Math.abs(Date.parse(verify.body.checkedAt) - s.tg.now()) < 60_000);
});

test('proxy denials: real denied pulls are recorded with reasons and counts, with the verdict-cache hit rate', async () => {
  const before = (await call('get', '/proxy/denials')).body;
  assert.equal(before.enabled, true);
  assert.equal(before.capacity, 1000);
  // An image pushed straight to the upstream, around the proxy: nothing signs it.
  const img = await makeImageLayout(path.join(dir, 'unsigned'), { tag: 'v1' });
  await skopeoCopy(img.ref, `docker://${s.reg.host}/dash/unsigned:v1`);
  const gun = s.gun('dash/unsigned');
  // First the repository has no trust data at all; then it has, without this tag.
  for (let i = 0; i < 2; i++) assert.equal((await get(`${s.px.url}/v2/dash/unsigned/manifests/v1`)).status, 403);
  await createRepo(gun);
  await addTag(gun, 'other', digest('f'));
  for (let i = 0; i < 2; i++) assert.equal((await get(`${s.px.url}/v2/dash/unsigned/manifests/v1`)).status, 403);
  assert.equal((await get(`${s.px.url}/v2/dash/unsigned/manifests/${img.manifest.digest}`)).status, 403);

  const r = await call('get', '/proxy/denials');
  expectStatus(r, 200);
  const d = r.body;
  assert.equal(d.total, before.total + 5);
  assert.equal(d.counts['no-trust-data'], (before.counts['no-trust-data'] ?? 0) + 2);
  assert.equal(d.counts['not-signed'], (before.counts['not-signed'] ?? 0) + 3);
  assert.deepEqual(
    d.denials
      .slice(0, 5)
      .map((x: { repository: string; reference: string; reason: string; outcome: string; gun: string; actor: string }) => [
        x.repository,
        x.reference,
        x.reason,
        x.outcome,
        x.gun,
        x.actor,
      ]),
    [
      ['dash/unsigned', img.manifest.digest, 'not-signed', 'denied', gun, 'anonymous'],
      ['dash/unsigned', 'v1', 'not-signed', 'denied', gun, 'anonymous'],
      ['dash/unsigned', 'v1', 'not-signed', 'denied', gun, 'anonymous'],
      ['dash/unsigned', 'v1', 'no-trust-data', 'denied', gun, 'anonymous'],
      ['dash/unsigned', 'v1', 'no-trust-data', 'denied', gun, 'anonymous'],
    ],
  );
  assert.match(d.denials[1].message, /v1/);
  assert.ok(
    d.denials.every((x: { time: string }, i: number) => i === 0 || x.time <= d.denials[i - 1].time),
    'newest first',
  );
  // The cache answered the repeated pulls: the rate is the proxy cache's own counters.
  assert.equal(d.verdictCache.kind, 'memory');
  assert.equal(d.verdictCache.hits, s.px.cache.hits);
  assert.equal(d.verdictCache.misses, s.px.cache.misses);
  assert.ok(d.verdictCache.hits >= 2, JSON.stringify(d.verdictCache));
  assert.equal(d.verdictCache.hitRate, d.verdictCache.hits / (d.verdictCache.hits + d.verdictCache.misses));

  const noTrust = await call('get', '/proxy/denials?reason=no-trust-data');
  assert.equal(noTrust.body.denials.length, d.counts['no-trust-data']);
  assert.ok(noTrust.body.denials.every((x: { reason: string }) => x.reason === 'no-trust-data'));
  const one = await call('get', '/proxy/denials?limit=1&reason=not-signed');
  assert.equal(one.body.denials.length, 1);
  for (const bad of ['limit=0', 'limit=1001', 'reason=']) expectError(await call('get', `/proxy/denials?${bad}`), 400, 'INVALID_REQUEST');

  // Refusals name every repository: a reader of all of them may look, a narrower token may not.
  expectStatus(await call('get', '/proxy/denials', { token: s.tg.token(['reader']) }), 200);
  expectError(await call('get', '/proxy/denials', { token: s.tg.token(['reader:registry.example.com/**']) }), 403, 'FORBIDDEN');
  expectError(await call('get', '/proxy/denials', { token: s.tg.token(['signer:**']) }), 403, 'FORBIDDEN');
});

test('a reader gets 403 on the admin and write routes the dashboard offers, and changes nothing', async () => {
  const gun = newGun('reader');
  await createRepo(gun);
  const reader = s.tg.token(['reader']);
  const g = enc(gun);
  for (const [method, p, body] of [
    ['get', '/audit', undefined],
    ['get', '/audit/verify', undefined],
    ['get', '/tokens', undefined],
    ['post', '/repositories', { gun: newGun('nope'), rootKey: 'keystore' }],
    ['delete', `/repositories/${g}`, undefined],
    ['post', `/repositories/${g}/tags`, { tag: 'x', digest: digest('a'), size: 1 }],
    ['delete', `/repositories/${g}/tags/x`, undefined],
    ['post', `/repositories/${g}/signers`, { name: 'eve', publicKeys: [outsideKey().publicPem] }],
    ['post', `/repositories/${g}/keys/targets/rotate`, {}],
  ] as const)
    expectError(await call(method, p, { token: reader, ...(body ? { body } : {}) }), 403, 'FORBIDDEN');
  // What it may read, it reads.
  expectStatus(await call('get', `/repositories/${g}/tags`, { token: reader }), 200);
  expectStatus(await call('get', `/repositories/${g}/keys`, { token: reader }), 200);
  const inspect = await call('get', `/repositories/${g}`);
  assert.deepEqual(inspect.body.allTags, []);
});

test('every answer on the dashboard origin says nosniff: signer-written metadata (text/plain) never runs as a script', async () => {
  const gun = newGun('nosniff');
  await createRepo(gun);
  const agent = request(s.tg.url);
  for (const p of [`/v2/${gun}/_trust/tuf/root.json`, `/v2/${gun}/_trust/tuf/nope.json`, '/api/v1/whoami', '/v2/', '/metrics']) {
    const r = await agent.get(p).set('Authorization', `Bearer ${s.token}`);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', `${p} (${r.status} ${r.headers['content-type']})`);
  }
});
