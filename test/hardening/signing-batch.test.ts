// V12: a signing batch is capped (api/signing.json, 1000 items): above the cap a 400 with
// nothing stored, and a batch at the cap does not hold up other requests for long.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { bearer, fakeDigest, initRepo, newGun, startSigningServer, versions, type SigningServer } from '../signing/support.js';
import { unchanged } from '../helpers/unchanged.js';

let s: SigningServer;
before(async () => {
  s = await startSigningServer();
});
after(async () => {
  await s?.stop();
});

const items = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => ({ tag: `${prefix}-${i}`, digest: fakeDigest(`${prefix}${i}`), size: 100 + i }));

test('V12: a batch over 1000 items is a 400 and stores nothing', async () => {
  const gun = newGun('v12-over');
  await initRepo(s, gun);
  const res = await unchanged(s, gun, () =>
    s.agent
      .post('/api/v1/signing/batch')
      .set(bearer(s.adminToken))
      .send({ gun, items: items(1001, 'over') }),
  );
  assert.equal(res.status, 400, JSON.stringify(res.body).slice(0, 300));
  assert.equal(res.body.error.code, 'INVALID_REQUEST');
  assert.equal(res.body.error.field, 'items');
});

test('V12: a batch at the cap does not block a concurrent GET beyond a generous bound', async () => {
  const gun = newGun('v12-max');
  await initRepo(s, gun);
  const before = await versions(s, gun);
  let done = false;
  const batch = s.agent
    .post('/api/v1/signing/batch')
    .set(bearer(s.adminToken))
    .send({ gun, items: items(1000, 'max') })
    .then((r) => {
      done = true;
      return r;
    });
  // GETs of metadata while the batch runs: the slowest is the longest the event loop was held.
  let slowest = 0;
  let n = 0;
  while (!done && n < 500) {
    const t = performance.now();
    const r = await s.agent.get(`/v2/${gun}/_trust/tuf/root.json`);
    assert.equal(r.status, 200);
    slowest = Math.max(slowest, performance.now() - t);
    n++;
  }
  const res = await batch;
  assert.equal(res.status, 201, JSON.stringify(res.body).slice(0, 300));
  assert.equal((await versions(s, gun)).targets, before.targets! + 1);
  assert.ok(slowest < 1500, `slowest concurrent GET: ${slowest.toFixed(0)} ms over ${n} GETs`);
});

test('V12: TRUSTGATE_SIGN_MAX_BATCH sets the cap', async () => {
  const small = await startSigningServer({ env: { TRUSTGATE_SIGN_MAX_BATCH: '10' } });
  try {
    const gun = newGun('v12-env');
    await initRepo(small, gun);
    const over = await unchanged(small, gun, () =>
      small.agent
        .post('/api/v1/signing/batch')
        .set(bearer(small.adminToken))
        .send({ gun, items: items(11, 'env') }),
    );
    assert.equal(over.status, 400);
    assert.match(over.body.error.message, /at most 10 items/);
    assert.equal(
      (
        await small.agent
          .post('/api/v1/signing/batch')
          .set(bearer(small.adminToken))
          .send({ gun, items: items(10, 'env') })
      ).status,
      201,
    );
  } finally {
    await small.stop();
  }
});
