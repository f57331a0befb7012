// Security issue 13, Notary API authentication: writes to trust data need a credential by
// default, on the trust port and on the proxy's trust paths alike, and every write is audited.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import request from 'supertest';
import type { AuditEntry } from '../../src/audit/log.js';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';
import { authedAgent, initRepo, publish, raw, tufPath, type Agent } from '../helpers/tuf-builder.js';
import { basicAuth, bearer, startTrustgate } from '../helpers/trustgate.js';
import { startStack, type Stack } from '../proxy/support.js';
import { newGun, startServer, type Server } from '../notary-api/support.js';
import { unchanged } from '../helpers/unchanged.js';

const UNAUTHORIZED = /"code":"UNAUTHORIZED"/;

/** A token with `scopes` on the server's own token store. */
const tokenFor = (s: { tg: Server['tg'] }, scopes: string[]) =>
  s.tg.tokenFile.create({ name: `t-${scopes.join('-')}`, scopes: scopes as never, createdBy: 'test' });

let s: Server;
let anon: Agent;
before(async () => {
  s = await startServer();
  anon = request(s.tg.url);
});
after(() => s.stop());

/** Asserts a 401 with a Bearer challenge the notary CLI and docker follow. */
function assertChallenged(res: { status: number; headers: Record<string, string>; body: Buffer }, error?: string): void {
  assert.equal(res.status, 401, res.body.toString());
  assert.match(res.body.toString(), UNAUTHORIZED);
  const h = res.headers['www-authenticate'] ?? '';
  assert.match(h, /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/api\/v1\/token",service="trustgate",scope="/);
  if (error) assert.match(h, new RegExp(`error="${error}"`));
  else assert.doesNotMatch(h, /error=/);
}

test('V2: anonymous DELETE/re-init refused on the trust port by default', async () => {
  const gun = newGun('v2');
  await initRepo(s.agent, gun);
  await unchanged(
    s,
    [gun],
    async () => {
      assertChallenged(await raw(anon.delete(tufPath(gun))));
      // A re-initialisation: another root, published without a credential.
      const other = await initRepo(s.agent, newGun('v2-other'), { publish: false });
      assertChallenged(await publish(anon, gun, other.pending));
      // Nor with a bad token, as Bearer or as Basic.
      assertChallenged(await raw(anon.delete(tufPath(gun)).set('Authorization', bearer('tgt_bogus'))), 'invalid_token');
      assertChallenged(await raw(anon.delete(tufPath(gun)).set('Authorization', basicAuth(`tgt_${'x'.repeat(43)}`))), 'invalid_token');
      assertChallenged(await publish(authedAgent(anon, 'tgt_bogus'), gun, other.pending), 'invalid_token');
    },
    { keys: false },
  );
  // The real notary CLI without credentials cannot re-initialise it either.
  const cli = await notaryCli({ server: s.tg.url });
  try {
    await unchanged(s, [gun], async () => {
      const r = await cli.run(['init', gun, '-p']);
      assert.notEqual(r.code, 0, r.stdout + r.stderr);
    });
    const d = await cli.run(['delete', gun, '--remote']);
    assert.notEqual(d.code, 0);
    assert.equal((await raw(anon.get(tufPath(gun, 'root.json')))).status, 200, 'the repository is still there');
  } finally {
    await cli.cleanup();
  }
});

test('V8: anonymous key requests create no key', async () => {
  const gun = newGun('v8');
  const reader = tokenFor(s, ['reader']).token;
  const before = (await s.tg.app.keys.list()).length;
  for (let i = 0; i < 20; i++) {
    const role = i % 2 ? 'timestamp' : 'snapshot';
    assertChallenged(await raw(anon.get(tufPath(`${gun}-${i}`, `${role}.key`))));
    assertChallenged(await raw(anon.post(tufPath(`${gun}-${i}`, `${role}.key`))));
    const r = await raw(anon.get(tufPath(`${gun}-${i}`, `${role}.key`)).set('Authorization', bearer(reader)));
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /"code":"DENIED"/);
  }
  assert.equal((await s.tg.app.keys.list()).length, before, 'no key file was made');
});

test('a reader token cannot publish (403); a signer token cannot delete; admin can', async () => {
  const gun = newGun('scopes');
  const repo = await initRepo(s.agent, gun);
  const reader = tokenFor(s, ['reader']).token;
  const signer = tokenFor(s, [`signer:${gun}`]).token;
  const elsewhere = tokenFor(s, ['signer:registry.example.com:5000/elsewhere/*']).token;
  const files = await repo.files([['targets', repo.next()]]);
  await unchanged(s, [gun], async () => {
    for (const t of [reader, elsewhere]) {
      const r = await publish(authedAgent(anon, t), gun, files);
      assert.equal(r.status, 403, r.body.toString());
      assert.match(r.body.toString(), /"code":"DENIED"/);
      assert.equal((await raw(anon.post(tufPath(gun, 'timestamp.key')).set('Authorization', bearer(t)))).status, 403);
    }
    const d = await raw(anon.delete(tufPath(gun)).set('Authorization', bearer(signer)));
    assert.equal(d.status, 403, d.body.toString());
  });
  assert.equal((await publish(authedAgent(anon, signer), gun, files)).status, 200);
  assert.equal((await raw(anon.delete(tufPath(gun)).set('Authorization', bearer(s.tg.adminToken)))).status, 200);
  assert.equal((await raw(anon.get(tufPath(gun, 'root.json')))).status, 404);
});

test('Basic and Bearer both work: a signer token publishes either way, and the ping answers 200', async () => {
  const gun = newGun('schemes');
  const { token } = tokenFor(s, [`signer:${gun}`]);
  const repo = await initRepo(authedAgent(anon, token), gun);
  const basic = anon.post(tufPath(gun)).set('Authorization', basicAuth(token, 'any-user'));
  const files = await repo.files([['targets', repo.next()]]);
  const boundary = 'b0undary';
  const body = Buffer.concat([
    ...files.flatMap(([name, bytes]) => [
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      bytes,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  const r = await raw(basic.set('Content-Type', `multipart/form-data; boundary=${boundary}`).send(body));
  assert.equal(r.status, 200, r.body.toString());
  for (const h of [bearer(token), basicAuth(token)]) assert.equal((await raw(anon.get('/v2/').set('Authorization', h))).status, 200);
  assertChallenged(await raw(anon.get('/v2/')));
  // The realm hands a checked token back, and anonymous callers a placeholder that is no credential.
  const t = await anon.get('/api/v1/token?service=trustgate&scope=repository:x:pull').set('Authorization', basicAuth(token));
  assert.equal(t.status, 200);
  assert.equal(t.body.token, token);
  assert.equal((await anon.get('/api/v1/token').set('Authorization', basicAuth('tgt_bogus'))).status, 401);
  const a = await anon.get('/api/v1/token');
  assert.equal(a.status, 200);
  assertChallenged(await raw(anon.delete(tufPath(gun)).set('Authorization', bearer(a.body.token as string))));
});

test('reads stay anonymous by default and need a token when configured', async () => {
  const gun = newGun('reads');
  await initRepo(s.agent, gun);
  assert.equal((await raw(anon.get(tufPath(gun, 'root.json')))).status, 200);
  assert.equal((await raw(anon.get(`/v2/${gun}/_trust/changefeed?records=10`))).status, 200);

  const closed = await startServer({ TRUSTGATE_AUTH_ANONYMOUS_READ: 'false' });
  try {
    const g = newGun('closed');
    await initRepo(closed.agent, g);
    const a = request(closed.tg.url);
    for (const p of [
      tufPath(g, 'root.json'),
      tufPath(g, 'timestamp.json'),
      tufPath(g, '1.root.json'),
      `/v2/${g}/_trust/changefeed?records=10`,
      '/v2/_trust/changefeed?records=10',
    ]) {
      assertChallenged(await raw(a.get(p)));
    }
    const reader = tokenFor(closed, ['reader']).token;
    const other = tokenFor(closed, ['reader:registry.example.com:5000/elsewhere/*']).token;
    assert.equal((await raw(a.get(tufPath(g, 'root.json')).set('Authorization', bearer(reader)))).status, 200);
    assert.equal((await raw(a.get(tufPath(g, 'root.json')).set('Authorization', basicAuth(reader)))).status, 200);
    assert.equal((await raw(a.get(tufPath(g, 'root.json')).set('Authorization', bearer(other)))).status, 403);
    // The notary CLI reads with NOTARY_AUTH, and is refused without it.
    const withToken = await notaryCli({ server: closed.tg.url, token: reader });
    const without = await notaryCli({ server: closed.tg.url });
    try {
      assert.deepEqual(parseNotaryList((await withToken.runOk(['list', g])).stdout), []);
      assert.notEqual((await without.run(['list', g])).code, 0);
    } finally {
      await withToken.cleanup();
      await without.cleanup();
    }
  } finally {
    await closed.stop();
  }
});

test('TRUSTGATE_AUTH=none must be asked for by name, and logs a warning at every start', async () => {
  assert.equal(loadConfig({}).authMode, 'trustgate');
  assert.equal(loadConfig({ TRUSTGATE_AUTH: 'none' }).authMode, 'none');
  assert.throws(() => loadConfig({ TRUSTGATE_AUTH: 'off' }), ConfigError);
  assert.throws(() => loadConfig({ TRUSTGATE_AUTH: 'none', TRUSTGATE_AUTH_ANONYMOUS_READ: 'false' }), ConfigError);
  for (let start = 0; start < 2; start++) {
    const tg = await startTrustgate({ env: { TRUSTGATE_AUTH: 'none' }, logs: 'warn' });
    try {
      assert.ok(
        tg.logs.some((l) => /"level":"warn"/.test(l) && /TRUSTGATE_AUTH=none/.test(l) && /anyone/.test(l)),
        tg.logs.join('\n'),
      );
    } finally {
      await tg.stop();
    }
  }
  const tg = await startTrustgate({ logs: 'warn' });
  await tg.stop();
  assert.ok(!tg.logs.some((l) => /TRUSTGATE_AUTH=none/.test(l)), 'no warning with authentication on');
});

const notaryAudit = (tg: Server['tg'], gun: string): AuditEntry[] =>
  tg.auditLog.query({ gun }).filter((e) => e.action.startsWith('notary.') || e.action === 'auth.denied');

test('V10: Notary API writes are audited with their actor', async () => {
  const gun = newGun('v10');
  const { token, info } = tokenFor(s, [`signer:${gun}`]);
  const cli = await notaryCli({ server: s.tg.url, token });
  try {
    await cli.runOk(['init', gun, '-p']);
    await cli.runOk(['addhash', gun, 'v1', '3', '--sha256', 'a'.repeat(64), '-p']);
  } finally {
    await cli.cleanup();
  }
  const adminId = s.tg.tokenFile.list().find((t) => t.scopes.includes('admin'))!;
  const admin = authedAgent(anon, s.tg.adminToken);
  assert.equal((await raw(admin.post(tufPath(gun, 'snapshot.key')))).status, 200);
  assert.equal((await raw(anon.delete(tufPath(gun)).set('Authorization', bearer('tgt_bogus')))).status, 401);
  assert.equal((await raw(admin.delete(tufPath(gun)))).status, 200);

  const entries = notaryAudit(s.tg, gun);
  const by = (action: string) => entries.filter((e) => e.action === action);
  const created = by('notary.key.create');
  assert.deepEqual(
    created.map((e) => [e.actor.id, e.role]),
    [[info.id, 'timestamp']],
    JSON.stringify(entries),
  );
  const published = by('notary.publish');
  assert.equal(published.length, 2);
  assert.ok(published.every((e) => e.actor.id === info.id && e.actor.name === info.name));
  assert.ok((published[0]!.detail!.files as string[]).includes('root@1'), JSON.stringify(published[0]));
  assert.ok(
    published.every((e) => (e.detail!.files as string[]).some((f) => f.startsWith('targets@'))),
    JSON.stringify(published),
  );
  const rotated = by('notary.key.rotate');
  assert.equal(rotated.length, 1);
  assert.equal(rotated[0]!.actor.id, adminId.id);
  assert.equal(rotated[0]!.role, 'snapshot');
  assert.ok(rotated[0]!.keyId);
  assert.deepEqual(
    by('notary.delete').map((e) => e.actor.id),
    [adminId.id],
  );
  const refused = s.tg.auditLog.query({ action: 'auth.denied' }); // one per kind a minute
  assert.ok(
    refused.some((e) => e.actor.id === 'anonymous' && e.detail?.api === 'notary' && e.detail?.reason === 'invalid_token'),
    JSON.stringify(refused),
  );
  assert.equal(s.tg.auditLog.verify().ok, true);

  // Under TRUSTGATE_AUTH=none, the actor is anonymous.
  const open = await startServer({ TRUSTGATE_AUTH: 'none' });
  try {
    const g = newGun('v10-none');
    await initRepo(request(open.tg.url), g);
    assert.equal((await raw(request(open.tg.url).delete(tufPath(g)))).status, 200);
    const e = notaryAudit(open.tg, g);
    assert.deepEqual(
      e.map((x) => [x.action, x.actor.id]),
      [
        ['notary.key.create', 'anonymous'],
        ['notary.publish', 'anonymous'],
        ['notary.delete', 'anonymous'],
      ],
    );
  } finally {
    await open.stop();
  }
});

test("V1: proxy trust paths apply the trust server's auth", async () => {
  let st: Stack | undefined;
  try {
    st = await startStack({ env: { TRUSTGATE_PROXY_AUTH: 'token' } });
    const gun = st.gun('team/app');
    const trustPort = { tg: st.tg } as Server;
    // An existing repository, published on the trust port by its signer.
    const signer = tokenFor(trustPort, [`signer:${st.host}/team/*`]).token;
    const owner = await notaryCli({ server: st.tg.url, token: signer });
    await owner.runOk(['init', gun, '-p']);
    await owner.runOk(['addhash', gun, 'v1', '3', '--sha256', 'b'.repeat(64), '-p']);
    await unchanged(st, [gun], async () => {
      const px = request(st!.px.url);
      assert.equal((await px.delete(tufPath(gun))).status, 401);
      assert.equal((await px.post(tufPath(gun, 'timestamp.key'))).status, 401);
      assert.equal((await px.get(tufPath(`${st!.host}/team/new`, 'timestamp.key'))).status, 401);
      assert.equal((await px.delete(tufPath(gun)).set('Authorization', basicAuth('tgt_bogus'))).status, 401);
      // The real notary CLI through the proxy, with a bogus NOTARY_AUTH: refused, nothing stored.
      const bogus = await notaryCli({ server: st!.px.url, token: `tgt_${'y'.repeat(43)}` });
      try {
        const evil = st!.gun('team/evil');
        assert.notEqual((await bogus.run(['init', evil, '-p'])).code, 0);
        assert.notEqual((await bogus.run(['init', gun, '-p'])).code, 0);
        await bogus.run(['add', evil, 'v1', '/etc/hostname']);
        assert.notEqual((await bogus.run(['publish', evil])).code, 0);
        assert.equal((await request(st!.tg.url).get(tufPath(evil, 'root.json'))).status, 404);
      } finally {
        await bogus.cleanup();
      }
    });
    // A valid signer token publishes through the proxy, and the reader sees it.
    const good = await notaryCli({ server: st.px.url, token: signer, trustDir: owner.trustDir });
    await good.runOk(['addhash', gun, 'v2', '3', '--sha256', 'c'.repeat(64), '-p']);
    assert.deepEqual(
      parseNotaryList((await owner.runOk(['list', gun])).stdout)
        .map((t) => t.name)
        .sort(),
      ['v1', 'v2'],
    );
    await owner.cleanup();
  } finally {
    await st?.stop();
  }
});

test('the trust port keeps anonymous reads on the synchronous path', async () => {
  const gun = newGun('sync');
  await initRepo(s.agent, gun);
  await raw(anon.get(tufPath(gun, 'timestamp.json'))); // now in memory
  // The handler answers a known file synchronously: `true`, not a promise.
  const { createNotaryHandler } = await import('../../src/notary/handler.js');
  let calls = 0;
  const h = createNotaryHandler(s.tg.app.trust, s.tg.app.metrics, {
    maxBodyBytes: 1 << 20,
    gunPrefixes: [],
    cacheMaxAge: { current: 300, consistent: 300 },
    authorize: async () => (calls++, true),
    anonymousReads: true,
  });
  const res = { writeHead: () => res, end: () => undefined } as never;
  assert.equal(h({ method: 'GET', url: tufPath(gun, 'timestamp.json'), headers: {} } as never, res), true);
  assert.equal(calls, 0);
});
