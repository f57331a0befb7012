// Access control of the management API: 401/403, scopes, anchored GUN patterns (adversarial
// names), signer key binding, the first-start admin token, and no secret in logs or responses.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ScopeError, allows, matchGun, validatePattern, validateScope } from '../../src/auth/tokens.js';
import { exportPrivateKeyPem } from '../../src/core/crypto/pem.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { unchanged } from '../helpers/unchanged.js';
import { enc, expectError, expectStatus, startMgmt, type Mgmt } from './support.js';

describe('GUN patterns are anchored', () => {
  const cases: Array<[string, string, boolean]> = [
    ['registry.example.com/team/app', 'registry.example.com/team/app', true],
    ['registry.example.com/team/app', 'registry.example.com/team/app-evil', false],
    ['registry.example.com/team/app', 'registry.example.com/team/appx', false],
    ['registry.example.com/team/app', 'registry.example.com/team/app/sub', false],
    ['registry.example.com/team/app', 'xregistry.example.com/team/app', false],
    ['registry.example.com/team/app', 'evil.com/registry.example.com/team/app', false],
    ['a/b', 'a/b-evil', false],
    ['a/b', 'a/bx', false],
    ['a/b', 'a/b/../c', false],
    ['a/*', 'a/b', true],
    ['a/*', 'a/b/c', false],
    ['a/*', 'a/b/../c', false],
    ['a/*', 'a', false],
    ['a/b*', 'a/b', true],
    ['a/b*', 'a/bx', true],
    ['a/b*', 'a/b/x', false],
    ['a/*/c', 'a/b/c', true],
    ['a/*/c', 'a/b/x/c', false],
    ['a/**', 'a/b', true],
    ['a/**', 'a/b/c/d', true],
    ['a/**', 'a', false],
    ['a/**', 'ab/c', false],
    ['a/**', 'a/../etc', false],
    ['a.b/c', 'axb/c', false],
    ['host:5000/team/*', 'host:5000/team/app', true],
    ['host:5000/team/*', 'host:50000/team/app', false],
  ];
  for (const [pattern, gun, want] of cases) {
    test(`${pattern} ${want ? 'matches' : 'does not match'} ${gun}`, () => {
      assert.equal(allows([`signer:${pattern}`], 'sign', gun), want);
      if (!gun.includes('..')) assert.equal(matchGun(pattern, gun), want);
    });
  }
  test('invalid patterns and scopes are refused', () => {
    for (const p of ['', 'a//b', 'a/**x', 'a/x**', 'a/../b', 'a/b c', 'a/(b|c)', 'a/b$'])
      assert.throws(() => validatePattern(p), ScopeError, p);
    for (const s of ['root', 'admin:x', 'signer:', 'signer', 'writer:a/b', 'reader:a//b'])
      assert.throws(() => validateScope(s), ScopeError, s);
    assert.equal(validateScope('signer:a/*'), 'signer:a/*');
  });
  test('reader and signer grant what they say, and only admin administers', () => {
    assert.equal(allows(['reader'], 'read', 'a/b'), true);
    assert.equal(allows(['reader'], 'sign', 'a/b'), false);
    assert.equal(allows(['reader:a/*'], 'read', 'b/c'), false);
    assert.equal(allows(['signer:a/*'], 'read', 'a/b'), true);
    assert.equal(allows(['signer:a/*'], 'admin', 'a/b'), false);
    assert.equal(allows(['admin'], 'admin'), true);
  });
});

describe('the management API over HTTP', () => {
  let m: Mgmt;
  const team = 'registry.example.com/team';
  const app = `${team}/app`;
  const evil = `${team}/app-evil`;
  const sub = `${team}/app/sub`;
  const tag = (t: string) => ({ tag: t, digest: `sha256:${'e'.repeat(64)}`, size: 3 });
  const targetsKeyOf: Record<string, string> = {};

  before(async () => {
    m = await startMgmt();
    for (const gun of [app, evil, sub]) {
      expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
      targetsKeyOf[gun] = (await m.tg.app.keys.list({ gun, role: 'targets' }))[0]!.id;
    }
  });
  after(() => m.stop());

  const token = async (scopes: string[], keyIds?: string[]) => {
    const r = await m.call('post', '/tokens', {
      body: { name: `t-${scopes.join('-').replace(/[^A-Za-z0-9]/g, '')}`.slice(0, 60), scopes, ...(keyIds ? { keyIds } : {}) },
    });
    expectStatus(r, 201);
    return r.body.token as string;
  };

  test('the first-start admin token is in a 0600 file, stored only as a hash, and works', async () => {
    const file = join(m.tg.app.config.dataDir, 'admin-token');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(m.admin, /^tgt_[A-Za-z0-9_-]{43}$/);
    const stored = readFileSync(join(m.tg.app.config.dataDir, 'tokens.json'), 'utf8');
    assert.equal(statSync(join(m.tg.app.config.dataDir, 'tokens.json')).mode & 0o777, 0o600);
    assert.ok(!stored.includes(m.admin), 'tokens.json must not hold the token');
    const me = await m.call('get', '/whoami');
    expectStatus(me, 200);
    assert.deepEqual(me.body.scopes, ['admin']);
    assert.ok(
      m.logs.some((l) => l.includes('initial admin token') && l.includes(file)),
      'the log says where the token is',
    );
  });

  test('401 without a token, with a malformed header, an unknown or a revoked token; with a Bearer challenge', async () => {
    expectError(await m.call('get', '/repositories', { token: null }), 401, 'UNAUTHORIZED');
    const bad = await m.call('get', '/repositories', { token: 'tgt_' + 'A'.repeat(43) });
    expectError(bad, 401, 'UNAUTHORIZED');
    assert.match(bad.headers['www-authenticate']!, /invalid_token/);
    const basic = await (await import('supertest')).default(m.tg.url).get('/api/v1/repositories').set('Authorization', 'Basic YTpi');
    assert.equal(basic.status, 401);
    const t = await token(['reader']);
    const id = (await m.call('get', '/whoami', { token: t })).body.id as string;
    expectStatus(await m.call('delete', `/tokens/${id}`), 200);
    expectError(await m.call('get', '/repositories', { token: t }), 401, 'UNAUTHORIZED');
  });

  test('an expired token is refused', async () => {
    const r = await m.call('post', '/tokens', { body: { name: 'short', scopes: ['reader'], expiresInSeconds: 60 } });
    expectStatus(await m.call('get', '/whoami', { token: r.body.token }), 200);
    m.advance(61_000);
    try {
      expectError(await m.call('get', '/whoami', { token: r.body.token }), 401, 'UNAUTHORIZED');
    } finally {
      m.advance(-61_000);
    }
  });

  test('a reader reads but may not change anything; a pattern reader sees only its repositories', async () => {
    const reader = await token(['reader']);
    expectStatus(await m.call('get', `/repositories/${enc(app)}`, { token: reader }), 200);
    expectStatus(await m.call('get', `/repositories/${enc(app)}/keys`, { token: reader }), 200);
    expectError(await m.call('post', `/repositories/${enc(app)}/tags`, { token: reader, body: tag('r1') }), 403, 'FORBIDDEN');
    expectError(
      await m.call('post', `/repositories/${enc(app)}/keys/${targetsKeyOf[app]}/export`, {
        token: reader,
        body: { passphrase: 'long enough' },
      }),
      403,
      'FORBIDDEN',
    );
    expectError(await m.call('get', '/tokens', { token: reader }), 403, 'FORBIDDEN');
    expectError(await m.call('get', '/audit', { token: reader }), 403, 'FORBIDDEN');
    const narrow = await token([`reader:${app}`]);
    const list = await m.call('get', '/repositories', { token: narrow });
    assert.deepEqual(
      list.body.repositories.map((r: { gun: string }) => r.gun),
      [app],
    );
    expectError(await m.call('get', `/repositories/${enc(evil)}`, { token: narrow }), 403, 'FORBIDDEN');
    expectError(await m.call('get', `/repositories/${enc(sub)}`, { token: narrow }), 403, 'FORBIDDEN');
  });

  test('a signer signs in its repository only: not app-evil, not app/sub, not through ..', async () => {
    const signer = await token([`signer:${app}`], [targetsKeyOf[app]!]);
    const ok = await m.call('post', `/repositories/${enc(app)}/tags`, { token: signer, body: tag('s1') });
    expectStatus(ok, 200);
    for (const gun of [evil, sub]) {
      await unchanged(m, gun, async () =>
        expectError(await m.call('post', `/repositories/${enc(gun)}/tags`, { token: signer, body: tag('s2') }), 403, 'FORBIDDEN'),
      );
    }
    expectError(
      await m.call('post', `/repositories/${enc(`${app}/../app-evil`)}/tags`, { token: signer, body: tag('s3') }),
      400,
      'INVALID_GUN',
    );
    // Signers do not manage keys, signers or tokens.
    expectError(await m.call('post', `/repositories/${enc(app)}/keys/targets/rotate`, { token: signer, body: {} }), 403, 'FORBIDDEN');
    expectError(
      await m.call('post', `/repositories/${enc(app)}/signers`, { token: signer, body: { name: 'x', generate: true } }),
      403,
      'FORBIDDEN',
    );
    expectError(await m.call('post', '/tokens', { token: signer, body: { name: 'mine', scopes: ['admin'] } }), 403, 'FORBIDDEN');
    expectError(await m.call('post', '/repositories', { token: signer, body: { gun: `${app}2`, rootKey: 'keystore' } }), 403, 'FORBIDDEN');
  });

  test('a wildcard signer covers one segment only', async () => {
    const wild = await token([`signer:${team}/app*`]);
    expectStatus(await m.call('get', `/repositories/${enc(evil)}`, { token: wild }), 200);
    expectError(await m.call('get', `/repositories/${enc(sub)}`, { token: wild }), 403, 'FORBIDDEN');
  });

  test('a signer token may sign only with the keys it names; without any, its changes wait for others', async () => {
    const unbound = await token([`signer:${app}`]);
    const r = await m.call('post', `/repositories/${enc(app)}/tags`, { token: unbound, body: tag('u1') });
    expectStatus(r, 202);
    // It may not use the held key on the pending change either; an admin may.
    expectError(
      await m.call('post', `/pending/${r.body.pending.id}/signatures`, { token: unbound, body: { keyId: targetsKeyOf[app] } }),
      403,
      'FORBIDDEN',
    );
    const done = await m.call('post', `/pending/${r.body.pending.id}/signatures`, { body: { keyId: targetsKeyOf[app] } });
    expectStatus(done, 200);
    assert.equal(done.body.status, 'published');
    // Bound to another repository's key: useless here.
    const wrong = await token([`signer:${app}`], [targetsKeyOf[evil]!]);
    expectStatus(await m.call('post', `/repositories/${enc(app)}/tags`, { token: wrong, body: tag('u2') }), 202);
  });

  test('token creation checks scopes and key IDs; the last admin token cannot be revoked', async () => {
    await unchanged(
      m,
      [],
      async () => {
        expectError(await m.call('post', '/tokens', { body: { name: 'x', scopes: ['signer:a//b'] } }), 400, 'INVALID_REQUEST');
        expectError(await m.call('post', '/tokens', { body: { name: 'x', scopes: ['superuser'] } }), 400, 'INVALID_REQUEST');
        expectError(
          await m.call('post', '/tokens', { body: { name: 'x', scopes: ['reader'], keyIds: ['0'.repeat(64)] } }),
          404,
          'KEY_NOT_FOUND',
        );
        // A scope or key listed twice is a mistake in the request, not a wish: refused, never stored.
        expectError(await m.call('post', '/tokens', { body: { name: 'x', scopes: ['reader', 'reader'] } }), 400, 'INVALID_REQUEST');
        expectError(
          await m.call('post', '/tokens', { body: { name: 'x', scopes: ['reader'], keyIds: ['1'.repeat(64), '1'.repeat(64)] } }),
          400,
          'INVALID_REQUEST',
        );
      },
      { tokens: true },
    );
    const me = (await m.call('get', '/whoami')).body.id as string;
    expectError(await m.call('delete', `/tokens/${me}`), 409, 'LAST_ADMIN_TOKEN');
    const second = await token(['admin']);
    expectStatus(await m.call('delete', `/tokens/${me}`, { token: second }), 200);
    expectError(await m.call('get', '/whoami'), 401, 'UNAUTHORIZED');
    m.admin = second;
  });

  test('refused token use is audited with who tried what', async () => {
    // Earlier tests were refused too: close their counting windows, so these refusals are written.
    m.tg.auditLog.flushDenials();
    const reader = await token(['reader']);
    const id = (await m.call('get', '/whoami', { token: reader })).body.id as string;
    await m.call('delete', `/repositories/${enc(app)}`, { token: reader });
    await m.call('get', '/tokens', { token: 'tgt_' + 'B'.repeat(43) });
    const denied = (await m.call('get', '/audit?action=auth.denied')).body.entries as Array<{
      actor: { id: string };
      gun?: string;
      detail: Record<string, unknown>;
    }>;
    assert.ok(denied.some((e) => e.actor.id === id && e.gun === app && e.detail.attempted === 'repository.delete'));
    assert.ok(denied.some((e) => e.actor.id === 'anonymous' && e.detail.path === '/tokens'));
  });

  test('a flood of bad tokens is counted, not written entry by entry', async () => {
    const audit = m.tg.auditLog;
    audit.flushDenials();
    const count = () => audit.query({}).length;
    const before = count();
    for (let i = 0; i < 60; i++) {
      const r = await m.call('get', `/repositories/${'x'.repeat(2000)}${i}`, { token: `tgt_${String(i).padStart(43, 'C')}` });
      expectError(r, 401, 'UNAUTHORIZED');
    }
    const written = audit.query({}).slice(before);
    assert.equal(written.length, 1, 'one entry for the window');
    assert.ok(JSON.stringify(written[0]).length < 1200, 'the request path is clipped');
    audit.flushDenials();
    assert.equal(count(), before + 2);
    assert.deepEqual(audit.query({}).at(-1)!.detail, {
      ...audit.query({}).at(-1)!.detail,
      reason: 'unknown or expired token',
      repeated: 59,
    });
    assert.equal(audit.verify().ok, true);
  });

  test('no token, passphrase or key material in logs, audit or responses', async () => {
    const secretPass = 'export-secret-passphrase-7d1f';
    const created = await m.call('post', '/tokens', { body: { name: 'leak-check', scopes: ['reader'] } });
    const newToken = created.body.token as string;
    await m.call('get', '/whoami', { token: newToken });
    await m.call('get', '/whoami', { token: newToken + 'x' });
    const exp = await m.call('post', `/repositories/${enc(app)}/keys/${targetsKeyOf[app]}/export`, { body: { passphrase: secretPass } });
    expectStatus(exp, 200);
    // A wrong passphrase and a malformed key are refused without echoing them.
    const s = generateSigner('ecdsa');
    const pem = exportPrivateKeyPem(s.privateKey, { passphrase: 'import-secret-passphrase', role: 'targets', gun: app });
    const wrong = await m.call('post', `/repositories/${enc(app)}/keys/import`, {
      body: { pem, passphrase: 'wrong-secret-passphrase', role: 'targets' },
    });
    expectError(wrong, 400, 'WRONG_PASSPHRASE');
    const rawKey = s.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const body = rawKey.split('\n').slice(1, -2).join('');
    await m.call('post', `/repositories/${enc(app)}/keys/import`, { body: { pem: rawKey.replace('MI', 'XX'), role: 'targets' } });
    // Broken JSON that contains a secret: the error must not quote it.
    const broken = await m.call('post', '/tokens', { raw: `{"name":"x","scopes":["reader"],"secret":"${secretPass}"` });
    expectError(broken, 400, 'INVALID_JSON');
    assert.ok(!broken.text.includes(secretPass));
    const rawPriv = s.privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64');
    const auditText = readFileSync(join(m.tg.app.config.dataDir, 'audit.jsonl'), 'utf8');
    const pendingText = readFileSync(join(m.tg.app.config.dataDir, 'pending.json'), 'utf8');
    const haystacks = { logs: m.logs.join('\n'), audit: auditText, pending: pendingText, wrong: wrong.text };
    const secrets = {
      adminToken: m.admin,
      newToken,
      secretPass,
      importPass: 'import-secret-passphrase',
      wrongPass: 'wrong-secret-passphrase',
      exportedPem: exp.body.pem.split('\n')[5],
      rawPriv,
      body,
    };
    for (const [where, text] of Object.entries(haystacks)) {
      for (const [what, secret] of Object.entries(secrets)) assert.ok(!text.includes(secret as string), `${what} appears in ${where}`);
    }
    const tokens = await m.call('get', '/tokens');
    assert.ok(!tokens.text.includes(newToken) && !/"hash"/.test(tokens.text));
  });
});
