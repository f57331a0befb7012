// V9: the built-in registry token endpoint (GET /api/v1/token). Wrong passwords cannot slow it
// for everyone, and an unknown user name takes the same path, at the same scrypt cost, as a known
// one with a wrong password.
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { hashPassword, TokenIssuer } from '../../src/auth/jwt-issuer.js';
import { createServer, DEFAULT_HTTP_TIMEOUTS } from '../../src/http/server.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { makeTestCerts, type TestCerts } from '../helpers/tls.js';
import { startTrustgate, tokenAuthEnv, type RunningTrustgate } from '../helpers/trustgate.js';

const SERVICE = 'trustgate-v9';
const ALICE_PW = 'alice-pw-V9!';
// Below hashPassword's default cost, so an unknown name checked at any other cost would show.
const COST = { N: 4096, r: 8, p: 1 };

let certs: TestCerts;
let dir: string;
let tg: RunningTrustgate;
let env: Record<string, string>;

before(async () => {
  certs = await makeTestCerts();
  dir = await makeTempDir('v9');
  await fsp.writeFile(path.join(dir, 'users'), `alice:${await hashPassword(ALICE_PW, COST)}:repository:example.com/**:pull\n`, {
    mode: 0o600,
  });
  env = tokenAuthEnv({
    certs,
    users: path.join(dir, 'users'),
    realm: 'http://127.0.0.1/api/v1/token',
    service: SERVICE,
    issuer: 'v9-issuer',
  });
  tg = await startTrustgate({ env });
});

after(async () => {
  await tg?.stop();
  await certs?.cleanup();
  if (dir) await removeTempDir(dir);
});

/** One request from the loopback address `from` (127.x.y.z: each its own client). */
function get(
  base: string,
  target: string,
  from: string,
  auth?: string,
): Promise<{ status: number; ms: number; body: string; retryAfter?: string }> {
  const u = new URL(target, base);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(u, { localAddress: from, agent: false, headers: auth ? { Authorization: auth } : {} }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          ms: performance.now() - start,
          body,
          ...(res.headers['retry-after'] ? { retryAfter: res.headers['retry-after'] } : {}),
        }),
      );
    });
    req.on('error', reject);
  });
}

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
const login = (user: string, pw: string, from: string, base = tg.url) =>
  get(base, `/api/v1/token?service=${SERVICE}&scope=repository:example.com/app:pull`, from, basic(user, pw));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const costOf = (hash: string) => hash.split('$').slice(2, 5).join('$') + `$${Buffer.from(hash.split('$')[6]!, 'base64').length}`;

test('V9: unknown and known users take the same path', async () => {
  const issuer = TokenIssuer.load(tg.app.config.auth!, () => undefined);
  // The unknown name is checked against a hash of the known users' cost (N, r, p, key length).
  assert.equal(costOf(issuer.hashFor('mallory')), costOf(issuer.hashFor('alice')));
  assert.equal(costOf(issuer.hashFor('alice')), `${COST.N}$${COST.r}$${COST.p}$32`);
  // Every credentialed request runs the KDF once and gets the same answer, whatever the name.
  const server = createServer(DEFAULT_HTTP_TIMEOUTS, undefined, (req, res) => void issuer.handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const answers: string[] = [];
    for (const [i, [user, pw]] of [
      ['alice', 'wrong'],
      ['mallory', 'wrong'],
      ['', 'wrong'],
      ['alice', ALICE_PW],
    ].entries()) {
      const before = issuer.passwordChecks;
      const r = await login(user!, pw!, `127.0.9.${i + 1}`, base);
      assert.equal(issuer.passwordChecks, before + 1, `${user || '(empty)'}: one password check`);
      answers.push(`${r.status} ${r.status === 200 ? '' : r.body}`);
    }
    assert.deepEqual(answers.slice(0, 3), Array(3).fill(answers[0]));
    assert.match(answers[0]!, /^401 /);
    assert.match(answers[3]!, /^200 /);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  // Through the app: the unknown name costs what a known one does (medians, a wide margin; each
  // request from its own address, so no failure backoff is involved).
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 9; i++) {
    known.push((await login('alice', 'wrong', `127.0.10.${i + 1}`)).ms);
    unknown.push((await login(`nobody${i}`, 'wrong', `127.0.11.${i + 1}`)).ms);
  }
  const ratio = median(unknown) / median(known);
  assert.ok(
    ratio < 3 && ratio > 1 / 3,
    `unknown/known median time ratio ${ratio.toFixed(2)} (known ${median(known).toFixed(1)} ms, unknown ${median(unknown).toFixed(1)} ms)`,
  );
});

test('V9: a wrong-password flood does not stall other requests', async () => {
  // 64 concurrent bad logins from one client, with other clients' requests in the middle.
  const flood = Array.from({ length: 64 }, (_, i) => login(`intruder${i}`, 'wrong', '127.0.20.1'));
  await new Promise((r) => setTimeout(r, 50));
  const [health, alice] = await Promise.all([get(tg.url, '/_notary_server/health', '127.0.0.1'), login('alice', ALICE_PW, '127.0.21.1')]);
  const answers = await Promise.all(flood);
  assert.equal(health.status, 200);
  assert.equal(alice.status, 200, alice.body);
  assert.ok(health.ms < 2000, `health answered after ${health.ms.toFixed(0)} ms`);
  assert.ok(alice.ms < 2000, `alice's login answered after ${alice.ms.toFixed(0)} ms`);
  // The flood is mostly refused at once: 429 with Retry-After, no KDF run.
  const limited = answers.filter((a) => a.status === 429);
  assert.ok(limited.length >= 48, `429s: ${limited.length} of 64 (${answers.map((a) => a.status).join(',')})`);
  assert.ok(limited.every((a) => a.retryAfter !== undefined && JSON.parse(a.body).errors[0].code === 'TOOMANYREQUESTS'));
  assert.ok(answers.every((a) => a.status === 401 || a.status === 429));
  // Failures keep that client waiting, and one success is not enough to get around it from there.
  for (let i = 0; i < 6; i++) await login('intruder', 'wrong', '127.0.22.1');
  const waiting = await login('alice', ALICE_PW, '127.0.22.1');
  assert.equal(waiting.status, 429);
  assert.ok(Number(waiting.retryAfter) >= 1);
  // Other clients are not held back by it.
  assert.equal((await login('alice', ALICE_PW, '127.0.22.2')).status, 200);
});

test('repeated query parameter: the token endpoint answers 400 (scope may repeat)', async () => {
  const twice = await get(tg.url, `/api/v1/token?service=${SERVICE}&service=other`, '127.0.30.1');
  assert.equal(twice.status, 400);
  assert.match(JSON.parse(twice.body).errors[0].message, /"service" is given more than once/);
  const scopes = await get(
    tg.url,
    `/api/v1/token?service=${SERVICE}&scope=repository:example.com/a:pull&scope=repository:example.com/b:pull`,
    '127.0.30.1',
    basic('alice', ALICE_PW),
  );
  assert.equal(scopes.status, 200);
});
