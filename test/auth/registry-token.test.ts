// Docker registry token auth on the Notary API: challenge headers and bodies (supertest), token
// verification (issuer, audience, expiry, signing certificate, access), the built-in token
// endpoint, and the REAL notary CLI obtaining tokens with NOTARY_AUTH.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SignJWT } from 'jose';
import request from 'supertest';
import { libtrustKeyId } from '../../src/auth/jwt-keys.js';
import { hashPassword, namePattern, parseUsersFile, grantAccess } from '../../src/auth/jwt-issuer.js';
import { RegistryTokenVerifier, covers } from '../../src/auth/registry-token.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, runCommandOk } from '../helpers/services.js';
import { makeTestCerts, type TestCerts } from '../helpers/tls.js';
import { startTrustgate, tokenAuthEnv, type RunningTrustgate } from '../helpers/trustgate.js';
import { notaryCli, parseNotaryList } from '../helpers/notary-cli.js';

const SERVICE = 'trustgate-test';
const ISSUER = 'trustgate-test-issuer';
const ALICE_PW = 'alice-pw-Zq81!';
const BOB_PW = 'bob-pw-Lk55?';
const GUN = 'example.com/auth/app';

let certs: TestCerts;
let other: TestCerts;
let dir: string;
let tg: RunningTrustgate;
let base: string;
const logs: string[] = [];
const issued: string[] = [];

before(async () => {
  [certs, other] = await Promise.all([makeTestCerts(), makeTestCerts()]);
  dir = await makeTempDir('auth');
  const users = [
    '# test users',
    `alice:${await hashPassword(ALICE_PW)}:repository:example.com/auth/*:pull,push repository:example.com/auth/admin:* registry:catalog:*`,
    `bob:${await hashPassword(BOB_PW)}:repository:example.com/other/**:pull,push`,
    '',
  ].join('\n');
  await fsp.writeFile(path.join(dir, 'users'), users, { mode: 0o600 });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  tg = await startTrustgate({
    dir,
    port,
    env: {
      TRUSTGATE_LOG_LEVEL: 'debug',
      ...tokenAuthEnv({ certs, users: path.join(dir, 'users'), realm: `${base}/api/v1/token`, service: SERVICE, issuer: ISSUER }),
    },
    // Unmasked fields, so the test below sees any secret a log line would carry.
    overrides: { log: (level, msg, fields) => logs.push(JSON.stringify({ level, msg, ...fields })) },
  });
});

after(async () => {
  await tg?.stop();
  await certs?.cleanup();
  await other?.cleanup();
  if (dir) await removeTempDir(dir);
});

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

async function getToken(scope: string | string[], auth?: string): Promise<string> {
  let r = request(base).get('/api/v1/token').query({ service: SERVICE });
  for (const s of [scope].flat()) r = r.query(`scope=${encodeURIComponent(s)}`); // repeated, as clients send several
  if (auth) r = r.set('Authorization', auth);
  const res = await r;
  assert.equal(res.status, 200, res.text);
  issued.push(res.body.token);
  return res.body.token as string;
}

const decode = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

function assertChallenge(res: request.Response, scope: string, error?: string): void {
  assert.equal(res.status, 401);
  const want = `Bearer realm="${base}/api/v1/token",service="${SERVICE}",scope="${scope}"${error ? `,error="${error}"` : ''}`;
  assert.equal(res.headers['www-authenticate'], want);
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
  const [type, , actions] = [scope.slice(0, scope.indexOf(':')), '', scope.slice(scope.lastIndexOf(':') + 1)];
  const name = scope.slice(scope.indexOf(':') + 1, scope.lastIndexOf(':'));
  assert.deepEqual(JSON.parse(res.text), {
    errors: [
      {
        code: 'UNAUTHORIZED',
        message: 'authentication required',
        detail: actions.split(',').map((a) => ({ Type: type, Class: '', Name: name, Action: a })),
      },
    ],
  });
}

test('no token: every Notary route answers 401 with the Bearer challenge for its access set', async () => {
  assertChallenge(await request(base).get('/v2/'), 'registry:catalog:*');
  assertChallenge(await request(base).get('/v2/_trust/changefeed'), 'registry:catalog:*');
  assertChallenge(await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`), `repository:${GUN}:pull`);
  assertChallenge(await request(base).get(`/v2/${GUN}/_trust/tuf/2.root.json`), `repository:${GUN}:pull`);
  assertChallenge(await request(base).get(`/v2/${GUN}/_trust/changefeed`), `repository:${GUN}:pull`);
  assertChallenge(await request(base).get(`/v2/${GUN}/_trust/tuf/timestamp.key`), `repository:${GUN}:push,pull`);
  assertChallenge(await request(base).post(`/v2/${GUN}/_trust/tuf/timestamp.key`), `repository:${GUN}:*`);
  assertChallenge(await request(base).delete(`/v2/${GUN}/_trust/tuf/`), `repository:${GUN}:*`);
  assertChallenge(
    await request(base).post(`/v2/${GUN}/_trust/tuf/`).attach('files', Buffer.from('{}'), 'targets.json'),
    `repository:${GUN}:push,pull`,
  );
});

test('health and metrics need no token', async () => {
  assert.equal((await request(base).get('/_notary_server/health')).status, 200);
  assert.equal((await request(base).get('/metrics')).status, 200);
});

test('a malformed or non-bearer Authorization header gets error="invalid_token"', async () => {
  assertChallenge(
    await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`).set('Authorization', 'Bearer not.a.jwt'),
    `repository:${GUN}:pull`,
    'invalid_token',
  );
  assertChallenge(
    await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`).set('Authorization', basic('alice', ALICE_PW)),
    `repository:${GUN}:pull`,
    'invalid_token',
  );
});

test('token endpoint: grants requested actions the user may have, anonymous gets none, wrong credentials 401', async () => {
  const t = await getToken([`repository:${GUN}:pull,push`, 'registry:catalog:*'], basic('alice', ALICE_PW));
  const claims = decode(t);
  assert.equal(claims.iss, ISSUER);
  assert.equal(claims.aud, SERVICE);
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.access, [
    { type: 'repository', name: GUN, actions: ['pull', 'push'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ]);
  const header = JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()) as { alg: string; kid: string; x5c: string[] };
  assert.equal(header.alg, 'ES256');
  const cert = new X509Certificate(await fsp.readFile(certs.cert));
  assert.equal(header.kid, libtrustKeyId(cert.publicKey));
  assert.deepEqual(header.x5c, [cert.raw.toString('base64')]);

  // `*` is not granted where the user lacks it; bob has nothing under example.com/auth.
  assert.deepEqual(decode(await getToken(`repository:${GUN}:*`, basic('alice', ALICE_PW))).access, []);
  assert.deepEqual(decode(await getToken('repository:example.com/auth/admin:*', basic('alice', ALICE_PW))).access, [
    { type: 'repository', name: 'example.com/auth/admin', actions: ['*'] },
  ]);
  assert.deepEqual(decode(await getToken(`repository:${GUN}:pull`, basic('bob', BOB_PW))).access, []);
  // Anonymous: a token with no access.
  const anon = decode(await getToken(`repository:${GUN}:pull`));
  assert.equal(anon.sub, '');
  assert.deepEqual(anon.access, []);

  const wrong = await request(base)
    .get('/api/v1/token')
    .query({ service: SERVICE, scope: `repository:${GUN}:pull` })
    .set('Authorization', basic('alice', 'nope'));
  assert.equal(wrong.status, 401);
  assert.match(wrong.headers['www-authenticate']!, /^Basic /);
  assert.equal(wrong.body.token, undefined);
  const unknown = await request(base).get('/api/v1/token').query({ service: SERVICE }).set('Authorization', basic('mallory', ALICE_PW));
  assert.equal(unknown.status, 401);
  const badService = await request(base)
    .get('/api/v1/token')
    .query({ service: 'other', scope: `repository:${GUN}:pull` })
    .set('Authorization', basic('alice', ALICE_PW));
  assert.equal(badService.status, 400);
});

test('grant patterns are anchored: `*` stays within a segment, `**` spans segments, no prefix/suffix matches', () => {
  const g = parseUsersFile(`u:$scrypt$2$1$1$AA==$AA==:repository:example.com/auth/*:pull repository:reg.io:5000/**:push`).get('u')!.grants;
  const access = (name: string, a = 'pull') => grantAccess(g, [{ type: 'repository', name, actions: [a] }]).length > 0;
  assert.equal(access('example.com/auth/app'), true);
  assert.equal(access('example.com/auth/app/sub'), false);
  assert.equal(access('example.com/authx/app'), false);
  assert.equal(access('evil.com/example.com/auth/app'), false);
  assert.equal(access('example.com/auth/'), false, 'not a valid GUN');
  assert.equal(access('example.com/auth/../x'), false);
  assert.equal(access('example.com/auth/app', 'push'), false);
  assert.equal(access('reg.io:5000/a/b/c', 'push'), true);
  assert.equal(access('reg.io:5000', 'push'), false);
  assert.equal(access('reg.io:50000/a', 'push'), false);
  assert.equal(grantAccess(g, [{ type: 'registry', name: 'example.com/auth/app', actions: ['pull'] }]).length, 0, 'type must match');
  assert.equal(namePattern('a.b/*').test('aXb/c'), false, 'dots are literal');
  assert.throws(() => namePattern('a/**x'), /invalid pattern segment/);
  assert.throws(() => parseUsersFile('u:plaintext'), /expected name:\$scrypt/);
});

test('a token authorises exactly its access: pull passes, push needs push, another GUN is insufficient_scope', async () => {
  const pull = await getToken(`repository:${GUN}:pull`, basic('alice', ALICE_PW));
  const ok = await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`).set('Authorization', `Bearer ${pull}`);
  assert.equal(ok.status, 404, 'past auth: the repository does not exist yet');
  assert.equal(JSON.parse(ok.text).errors[0].code, 'METADATA_NOT_FOUND');
  assertChallenge(
    await request(base).get(`/v2/${GUN}/_trust/tuf/timestamp.key`).set('Authorization', `Bearer ${pull}`),
    `repository:${GUN}:push,pull`,
    'insufficient_scope',
  );
  assertChallenge(
    await request(base).get('/v2/example.com/auth/other/_trust/tuf/root.json').set('Authorization', `Bearer ${pull}`),
    'repository:example.com/auth/other:pull',
    'insufficient_scope',
  );
  assertChallenge(await request(base).get('/v2/').set('Authorization', `Bearer ${pull}`), 'registry:catalog:*', 'insufficient_scope');

  const catalog = await getToken('registry:catalog:*', basic('alice', ALICE_PW));
  assert.equal((await request(base).get('/v2/').set('Authorization', `Bearer ${catalog}`)).status, 200);
  const admin = await getToken('repository:example.com/auth/admin:*', basic('alice', ALICE_PW));
  const key = await request(base).get('/v2/example.com/auth/admin/_trust/tuf/timestamp.key').set('Authorization', `Bearer ${admin}`);
  assert.equal(key.status, 200, '`*` covers push,pull');
});

test('refused tokens on the Notary API are audited (a bad token, a token that lacks access); the tokenless first try is not', async () => {
  const denials = () => tg.auditLog.query({ action: 'auth.denied' }).filter((e) => e.detail?.api === 'notary');
  // Earlier tests were refused too: close their counting windows, so these refusals are written.
  tg.auditLog.flushDenials();
  const before = denials().length;
  // Docker's token flow: every client's first request has no token and gets the challenge.
  assertChallenge(await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`), `repository:${GUN}:pull`);
  assert.equal(denials().length, before, 'the challenge to a tokenless request is not an audit event');
  assertChallenge(
    await request(base).get(`/v2/${GUN}/_trust/tuf/root.json`).set('Authorization', 'Bearer not.a.jwt'),
    `repository:${GUN}:pull`,
    'invalid_token',
  );
  const pull = await getToken(`repository:${GUN}:pull`, basic('alice', ALICE_PW));
  assertChallenge(
    await request(base).post(`/v2/${GUN}/_trust/tuf/timestamp.key`).set('Authorization', `Bearer ${pull}`),
    `repository:${GUN}:*`,
    'insufficient_scope',
  );
  const [bad, scope] = denials().slice(before);
  assert.equal(denials().length, before + 2);
  assert.deepEqual(
    {
      actor: bad!.actor,
      outcome: bad!.outcome,
      gun: bad!.gun,
      reason: bad!.detail?.reason,
      needs: bad!.detail?.needs,
      method: bad!.detail?.method,
    },
    {
      actor: { id: 'anonymous', name: 'anonymous' },
      outcome: 'denied',
      gun: GUN,
      reason: 'invalid_token',
      needs: `repository:${GUN}:pull`,
      method: 'GET',
    },
  );
  // A verified token's subject names who was refused.
  assert.deepEqual(
    { actor: scope!.actor, gun: scope!.gun, reason: scope!.detail?.reason, needs: scope!.detail?.needs, method: scope!.detail?.method },
    {
      actor: { id: 'registry-token', name: 'alice' },
      gun: GUN,
      reason: 'insufficient_scope',
      needs: `repository:${GUN}:*`,
      method: 'POST',
    },
  );
  // Tokens themselves never reach the audit log.
  const raw = JSON.stringify(tg.auditLog.query({}));
  assert.ok(!raw.includes(pull) && !raw.includes('not.a.jwt'));
});

test('verifier: refuses wrong issuer, audience, expired/not-yet-valid tokens, untrusted signers, alg none/HS256; accepts kid-only', async () => {
  const key = createPrivateKey(await fsp.readFile(certs.key));
  const cert = new X509Certificate(await fsp.readFile(certs.cert));
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = { x5c: [cert.raw.toString('base64')] }, k = key) =>
    new SignJWT({ access: [{ type: 'repository', name: GUN, actions: ['pull'] }], ...claims })
      .setProtectedHeader({ alg: 'ES256', ...header })
      .sign(k);
  const good = { iss: ISSUER, aud: SERVICE, exp: now + 300, nbf: now - 5, iat: now };
  const get = async (jwt: string) => request(base).get(`/v2/${GUN}/_trust/tuf/root.json`).set('Authorization', `Bearer ${jwt}`);

  assert.equal((await get(await sign(good))).status, 404, 'the well-formed token passes');
  const scope = `repository:${GUN}:pull`;
  // A kid must name a certificate of the bundle (here the CA), not just any certificate it issued.
  assertChallenge(await get(await sign(good, { kid: libtrustKeyId(cert.publicKey) })), scope, 'invalid_token');
  const caCert = new X509Certificate(await fsp.readFile(certs.caCert));
  const caKey = createPrivateKey(await fsp.readFile(certs.caKey));
  assert.equal((await get(await sign(good, { kid: libtrustKeyId(caCert.publicKey) }, caKey))).status, 404);
  assertChallenge(await get(await sign({ ...good, iss: 'someone-else' })), scope, 'invalid_token');
  assertChallenge(await get(await sign({ ...good, aud: 'other-service' })), scope, 'invalid_token');
  assertChallenge(await get(await sign({ ...good, exp: now - 120 })), scope, 'invalid_token');
  assertChallenge(await get(await sign({ ...good, nbf: now + 600 })), scope, 'invalid_token');
  assertChallenge(await get(await sign({ ...good, exp: undefined })), scope, 'invalid_token');
  assertChallenge(await get(await sign(good, {})), scope, 'invalid_token');
  assertChallenge(await get(await sign(good, { kid: 'AAAA:BBBB' })), scope, 'invalid_token');
  // A certificate and key from another CA, presented in x5c.
  const otherCert = new X509Certificate(await fsp.readFile(other.cert));
  const otherKey = createPrivateKey(await fsp.readFile(other.key));
  assertChallenge(await get(await sign(good, { x5c: [otherCert.raw.toString('base64')] }, otherKey)), scope, 'invalid_token');
  // The trusted certificate in x5c but signed by another key.
  assertChallenge(await get(await sign(good, { x5c: [cert.raw.toString('base64')] }, otherKey)), scope, 'invalid_token');
  // The other CA's leaf followed by our CA: the chain does not verify.
  assertChallenge(
    await get(await sign(good, { x5c: [otherCert.raw.toString('base64'), caCert.raw.toString('base64')] }, otherKey)),
    scope,
    'invalid_token',
  );
  // alg none and HMAC (with the public cert as secret) are refused.
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assertChallenge(await get(`${b64({ alg: 'none', x5c: [cert.raw.toString('base64')] })}.${b64(good)}.`), scope, 'invalid_token');
  const hs = await new SignJWT(good).setProtectedHeader({ alg: 'HS256', x5c: [cert.raw.toString('base64')] }).sign(cert.raw);
  assertChallenge(await get(hs), scope, 'invalid_token');
  // A malformed access claim.
  assertChallenge(await get(await sign({ ...good, access: 'repository:*' })), scope, 'invalid_token');
});

test('verifier: RS256 tokens from an RSA certificate named by kid', async () => {
  const d = await makeTempDir('rsa-cert');
  try {
    await runCommandOk('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      path.join(d, 'k.pem'),
      '-out',
      path.join(d, 'c.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=rsa token signer',
    ]);
    const cert = new X509Certificate(await fsp.readFile(path.join(d, 'c.pem')));
    const key = createPrivateKey(await fsp.readFile(path.join(d, 'k.pem')));
    const v = new RegistryTokenVerifier({ issuer: 'i', service: 's' }, cert.toString());
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new SignJWT({ access: [{ type: 'repository', name: 'a/b', actions: ['pull', 'push'] }] })
      .setProtectedHeader({ alg: 'RS256', kid: libtrustKeyId(cert.publicKey) })
      .setIssuer('i')
      .setAudience('s')
      .setExpirationTime(now + 60)
      .sign(key);
    const { access } = await v.verify(jwt);
    assert.equal(covers(access, { type: 'repository', name: 'a/b', actions: ['push', 'pull'] }), true);
    assert.equal(covers(access, { type: 'repository', name: 'a/b', actions: ['*'] }), false);
    assert.equal(covers(access, { type: 'repository', name: 'a/bc', actions: ['pull'] }), false);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: libtrustKeyId(cert.publicKey) })
      .setIssuer('i')
      .setAudience('s')
      .setExpirationTime(now + 60)
      .sign(ec);
    await assert.rejects(v.verify(forged), /invalid token/);
  } finally {
    await removeTempDir(d);
  }
});

test('libtrust key IDs match an independent base32 of the SPKI hash', () => {
  const pub = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
  const h = createHash('sha256')
    .update(pub.export({ format: 'der', type: 'spki' }))
    .digest()
    .subarray(0, 30);
  let bits = '';
  for (const b of h) bits += b.toString(2).padStart(8, '0');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let s = '';
  for (let i = 0; i < bits.length; i += 5) s += alphabet[parseInt(bits.slice(i, i + 5), 2)];
  const id = libtrustKeyId(pub);
  assert.equal(id.replaceAll(':', ''), s);
  assert.match(id, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
});

test('real notary CLI: gets tokens with NOTARY_AUTH, publishes and lists; wrong or missing credentials and another GUN fail', async () => {
  const auth = (u: string, p: string) => ({ NOTARY_AUTH: Buffer.from(`${u}:${p}`).toString('base64') });
  const alice = await notaryCli({ server: base, env: auth('alice', ALICE_PW) });
  const reader = await notaryCli({ server: base, env: auth('alice', ALICE_PW) });
  const wrong = await notaryCli({ server: base, env: auth('alice', 'wrong-password') });
  const none = await notaryCli({ server: base });
  const bob = await notaryCli({ server: base, env: auth('bob', BOB_PW) });
  try {
    await alice.runOk(['init', GUN, '-p']);
    const file = path.join(dir, 'artifact.txt');
    await fsp.writeFile(file, 'token-protected\n');
    await alice.runOk(['add', GUN, 'v1', file]);
    await alice.runOk(['publish', GUN]);
    assert.deepEqual(
      parseNotaryList((await reader.runOk(['list', GUN])).stdout).map((t) => t.name),
      ['v1'],
    );
    assert.ok(
      logs.some((l) => l.includes('registry token issued') && l.includes('"subject":"alice"') && l.includes(`repository:${GUN}:push,pull`)),
      'the CLI fetched a push,pull token',
    );

    // Wrong password: the token endpoint refuses, so the CLI cannot read.
    const w = await wrong.run(['list', GUN]);
    assert.notEqual(w.code, 0);
    assert.doesNotMatch(w.stdout, /v1/);
    // No credentials: the anonymous token has no access and the terminal prompt hits EOF.
    const n = await none.run(['list', GUN]);
    assert.notEqual(n.code, 0);
    assert.doesNotMatch(n.stdout, /v1/);
    // bob's grants cover example.com/other/** only: publishing to alice's GUN is refused.
    await bob.runOk(['init', 'example.com/other/team/app', '-p']);
    const bobInit = await bob.run(['init', 'example.com/auth/bobs', '-p']);
    assert.notEqual(bobInit.code, 0);
    assert.ok(
      logs.some(
        (l) => l.includes('notary API access denied') && l.includes('example.com/auth/bobs') && l.includes('token lacks the access'),
      ),
      'denied with insufficient_scope',
    );
    // The server answered the publish with 401 insufficient_scope: no repository was made.
    const admin = await getToken('repository:example.com/auth/bobs:pull', basic('alice', ALICE_PW));
    assert.equal(
      (await request(base).get('/v2/example.com/auth/bobs/_trust/tuf/root.json').set('Authorization', `Bearer ${admin}`)).status,
      404,
    );

    // Rotating a server key needs `*`: alice lacks it on example.com/auth/app.
    const rot = await alice.run(['key', 'rotate', GUN, 'snapshot', '-r']);
    assert.notEqual(rot.code, 0);
  } finally {
    for (const c of [alice, reader, wrong, none, bob]) await c.cleanup();
  }
});

test('no password, token or key bytes in the logs', async () => {
  const all = logs.join('\n');
  assert.ok(logs.length > 0);
  assert.ok(!all.includes(ALICE_PW) && !all.includes(BOB_PW) && !all.includes('wrong-password'));
  for (const t of issued) assert.ok(!all.includes(t.split('.')[2]!), 'a token signature appears in the logs');
  const keyDer = createPrivateKey(await fsp.readFile(certs.key)).export({ format: 'der', type: 'pkcs8' });
  assert.ok(!all.includes(keyDer.toString('base64').slice(0, 40)));
});
