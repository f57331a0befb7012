// Regression tests for what the fuzzer found: each input answered 500 before its fix.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createHash } from 'node:crypto';
import { initRepo, multipart, sign } from '../helpers/tuf-builder.js';
import { outsideKey } from '../management/keys-helpers.js';
import { check, diff, fingerprint, startTarget, tufUrl, type Target } from './harness.js';
import { FUZZED_ROUTES } from './api.js';
import { routes, type RouterDeps } from '../../src/management/router.js';

let t: Target;
before(async () => {
  t = await startTarget();
});
after(() => t.stop());

const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
let n = 0;

/** Sends `req`, asserting a 400 and nothing stored changed (check() fails on a 5xx or a change). */
async function refused(gun: string, req: Parameters<typeof check>[2]) {
  const ctx = { seed: 0, iteration: ++n, kind: 'regression', mutations: [], outDir: `${t.tg.dir}/findings`, guns: [gun] };
  const res = await check(t, ctx, req, await fingerprint(t, [gun]));
  assert.equal(res.status, 400, res.body.toString());
  return res;
}

test('F1: a published role whose _type is nested 5,000 deep is refused with 400 (was 500 UPDATING), nothing stored', async () => {
  const gun = `registry.example.com:5000/findings/f1-${process.pid}`;
  const repo = await initRepo(t.authed, gun);
  // Re-signed canonically, so the signature holds and the shape check is reached.
  const body = repo.next('targets');
  const placeholder = 'DEEP-TYPE';
  (body as unknown as Record<string, unknown>)._type = placeholder;
  const signed = (await sign(body, [repo.targetsKey])).toString('utf8').replace(JSON.stringify(placeholder), nested(5000));
  const { body: mp, contentType } = multipart([
    ['targets', Buffer.from(signed)],
    ['snapshot', await repo.clientSnapshot([['targets', Buffer.from(signed)]])],
  ]);
  const res = await refused(gun, { method: 'POST', path: tufUrl(gun), headers: { 'Content-Type': contentType }, body: mp });
  assert.match(res.body.toString(), /expected _type Targets, found an object/);
});

test('F2: signing API fields nested 25,000 deep are refused with 400 (was 500 INTERNAL: JSON.stringify overflowed in the error message)', async () => {
  const gun = `registry.example.com:5000/findings/f2-${process.pid}`;
  const deep = `${'['.repeat(25000)}${']'.repeat(25000)}`;
  const bodies: Array<[string, string]> = [
    ['/api/v1/signing/revoke', `{"gun":${deep},"tag":"v1"}`],
    ['/api/v1/signing/sign', `{"gun":"${gun}","tag":"v1","digest":${nested(5000)},"size":1}`],
    ['/api/v1/signing/sign', `{"gun":"${gun}","tag":${deep},"digest":"${digest('x')}","size":1}`],
    ['/api/v1/signing/sign', `{"gun":"${gun}","tag":"v1","digest":"${digest('x')}","size":${deep}}`],
    ['/api/v1/signing/sign', `{"gun":"${gun}","tag":"v1","digest":"${digest('x')}","size":1,"role":${deep}}`],
    ['/api/v1/signing/sign', `{"gun":"${gun}","tag":"v1","digest":"${digest('x')}","size":1,"custom":{"a":${nested(5000)}}}`],
  ];
  for (const [path, text] of bodies) {
    const res = await refused(gun, { method: 'POST', path, headers: { 'Content-Type': 'application/json' }, body: Buffer.from(text) });
    assert.equal(JSON.parse(res.body.toString()).error.code, 'INVALID_REQUEST', res.body.toString());
  }
});

test('the fuzzer sends bodies to every management route that takes one, and every signing POST route', () => {
  const management = routes({} as RouterDeps)
    .filter((r) => r.body)
    .map((r) => r.action);
  const signing = ['signing.sign', 'signing.batch', 'signing.revoke', 'signing.promote', 'signing.verify'];
  for (const name of [...management, ...signing]) assert.ok(FUZZED_ROUTES.includes(name), `${name} is not fuzzed`);
});

test('the fingerprint sees what a refusal must not change: a publish, a new server key, a token, a pending change', async () => {
  const gun = `registry.example.com:5000/findings/fp-${process.pid}`;
  const repo = await initRepo(t.authed, gun);
  const changed = async (what: string, fn: () => Promise<unknown>) => {
    const a = await fingerprint(t, [gun]);
    await fn();
    assert.ok(Object.keys(diff(a, await fingerprint(t, [gun]))).length > 0, `${what} went unseen`);
  };
  await changed('a publish', async () => assert.equal((await repo.addTarget('v9', 'nine')).status, 200));
  await changed('a server key', () => t.authed.post(tufUrl(gun, 'snapshot.key')).expect(200));
  await changed('a token', () =>
    t.authed
      .post('/api/v1/tokens')
      .send({ name: 'fp', scopes: ['reader'] })
      .expect(201),
  );
  const other = `registry.example.com:5000/findings/fp2-${process.pid}`;
  await changed('another GUN', () => initRepo(t.authed, other));
  const m = `registry.example.com:5000/findings/fp3-${process.pid}`;
  await t.authed.post('/api/v1/repositories').send({ gun: m, rootKey: 'keystore' }).expect(201);
  await changed('a pending change', () =>
    t.authed
      .post(`/api/v1/repositories/${encodeURIComponent(m)}/roles/targets/keys`)
      .send({ publicKey: outsideKey().publicPem, threshold: 2 })
      .expect(202),
  );
});
