// The dashboard's list routes at the sizes issue 18 names: 1,000 repositories and 10,000 signed
// tags in one repository, on a real trustgate. Checks that every page is right (order, totals,
// edges, search); the times are printed as diagnostics, not asserted.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import request from 'supertest';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { enc, expectStatus, startMgmt, type Mgmt } from './support.js';

const REPOS = 1000;
const TAGS = 10_000;
const BATCH = 1000;
const prefix = `registry.example.com:5000/scale${process.pid}`;
const repoName = (i: number) => `${prefix}/repo-${String(i).padStart(4, '0')}`;
const big = `${prefix}/big`;
const hex = (i: number) => i.toString(16).padStart(64, '0');

let m: Mgmt;
let dir: string;
before(async () => {
  // Creating 1,000 repositories is 4,000 key files and as many commits, each made durable: on
  // memory-backed storage when there is some, so the setup does not wait on the disk.
  dir = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/trustgate-scale-') : await makeTempDir('scale');
  m = await startMgmt({ dir });
});
after(async () => {
  await m?.stop();
  await removeTempDir(dir);
});

/** Runs `fn` for 0..n-1, `width` at a time. */
async function inParallel(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const t = performance.now();
  const r = await fn();
  return [r, Math.round(performance.now() - t)];
};

/** Milliseconds of one GET as a client sees them (answer read, not schema-checked), and its body. */
async function clientTime(path: string): Promise<[any, number]> {
  return timed(async () => {
    const r = await request(m.tg.url).get(`/api/v1${path}`).set('Authorization', `Bearer ${m.admin}`);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    return r.body as any;
  });
}

test(`${REPOS} repositories and ${TAGS} tags: every page is right`, async (t) => {
  const [, setupMs] = await timed(() =>
    inParallel(REPOS, 8, async (i) =>
      expectStatus(await m.call('post', '/repositories', { body: { gun: repoName(i), rootKey: 'keystore' } }), 201),
    ),
  );
  expectStatus(await m.call('post', '/repositories', { body: { gun: big, rootKey: 'keystore' } }), 201);
  const [, signMs] = await timed(async () => {
    for (let b = 0; b < TAGS / BATCH; b++) {
      const items = Array.from({ length: BATCH }, (_, j) => {
        const i = b * BATCH + j;
        return { tag: `tag-${i}`, digest: `sha256:${hex(i + 1)}`, size: 100 + i };
      });
      const r = await request(m.tg.url).post('/api/v1/signing/batch').set('Authorization', `Bearer ${m.admin}`).send({ gun: big, items });
      assert.equal(r.status, 201, r.text.slice(0, 500));
    }
  });
  t.diagnostic(`setup: ${REPOS} repositories in ${setupMs} ms, ${TAGS} tags in ${TAGS / BATCH} batches in ${signMs} ms`);

  // Repositories: the first call makes every summary, later calls reuse them.
  const [coldBody, coldMs] = await clientTime('/repositories?limit=50');
  const [warmBody, warmMs] = await clientTime('/repositories?limit=50');
  const [, wholeMs] = await clientTime('/repositories');
  const [, searchMs] = await clientTime('/repositories?q=repo-09&limit=50');
  const [expiring, expiringMs] = await clientTime('/expiring?within=30d&limit=50');
  t.diagnostic(`GET /expiring at ${REPOS + 1} (from the kept summaries): ${expiringMs} ms`);
  assert.equal(expiring.total, REPOS + 1, 'every timestamp expires within 30 days');
  assert.deepEqual(warmBody, coldBody);
  const cold = await m.call('get', '/repositories?limit=50');
  const whole = await m.call('get', '/repositories');
  const search = await m.call('get', '/repositories?q=repo-09&limit=50');
  t.diagnostic(
    `GET /repositories at ${REPOS + 1}: first page of 50 cold ${coldMs} ms, warm ${warmMs} ms; all ${whole.body.repositories.length} in one answer ${wholeMs} ms; search ${searchMs} ms`,
  );
  assert.equal(cold.body.total, REPOS + 1);
  assert.deepEqual(cold.body, coldBody);
  const expected = [...Array.from({ length: REPOS }, (_, i) => repoName(i)), big].sort();
  assert.deepEqual(
    whole.body.repositories.map((r: { gun: string }) => r.gun),
    expected,
  );
  assert.deepEqual(
    cold.body.repositories.map((r: { gun: string }) => r.gun),
    expected.slice(0, 50),
  );
  // Walking the pages gives every repository once, in order.
  const walked: string[] = [];
  for (let offset = 0; offset < REPOS + 1; offset += 100) {
    const page = await m.call('get', `/repositories?offset=${offset}&limit=100`);
    assert.equal(page.body.total, REPOS + 1);
    walked.push(...page.body.repositories.map((r: { gun: string }) => r.gun));
  }
  assert.deepEqual(walked, expected);
  const last = await m.call('get', `/repositories?offset=${REPOS}&limit=100`);
  assert.equal(last.body.repositories.length, 1);
  assert.deepEqual((await m.call('get', `/repositories?offset=${REPOS + 1}&limit=100`)).body.repositories, []);
  assert.equal(search.body.total, 100, 'repo-0900 to repo-0999');
  assert.deepEqual(
    search.body.repositories.map((r: { gun: string }) => r.gun),
    expected.filter((g) => g.includes('repo-09')).slice(0, 50),
  );
  const bigSummary = whole.body.repositories.find((r: { gun: string }) => r.gun === big);
  assert.equal(bigSummary.tagCount, TAGS);
  assert.equal(bigSummary.signedTagCount, TAGS);
  assert.equal(bigSummary.targetsVersion, 1 + TAGS / BATCH);

  // Tags: pages in natural order, the last partial page, past the end, search.
  const g = enc(big);
  const [firstBody, firstMs] = await clientTime(`/repositories/${g}/tags?limit=1000`);
  const [, againMs] = await clientTime(`/repositories/${g}/tags?limit=1000`);
  const [, smallMs] = await clientTime(`/repositories/${g}/tags?offset=5000&limit=50`);
  const [, deepMs] = await clientTime(`/repositories/${g}/tags?offset=9500&limit=1000`);
  const [, qMs] = await clientTime(`/repositories/${g}/tags?q=tag-999&limit=50`);
  t.diagnostic(
    `GET /repositories/{gun}/tags at ${TAGS}: page of 1000 first ${firstMs} ms, again ${againMs} ms; page of 50 ${smallMs} ms; last page ${deepMs} ms; search ${qMs} ms`,
  );
  const first = await m.call('get', `/repositories/${g}/tags?limit=1000`);
  const deep = await m.call('get', `/repositories/${g}/tags?offset=9500&limit=1000`);
  assert.equal(first.body.total, TAGS);
  assert.deepEqual(
    first.body.tags.map((x: { tag: string }) => x.tag),
    Array.from({ length: 1000 }, (_, i) => `tag-${i}`),
  );
  assert.deepEqual(first.body, firstBody);
  assert.deepEqual(
    deep.body.tags.map((x: { tag: string; digest: string; size: number }) => [x.tag, x.digest, x.size]),
    Array.from({ length: 500 }, (_, j) => [`tag-${9500 + j}`, `sha256:${hex(9501 + j)}`, 9600 + j]),
  );
  assert.ok(first.body.tags.every((x: { signedAt: string; signedAtExact: boolean }) => x.signedAtExact && x.signedAt));
  // Tags of a later batch were signed no earlier than those of the first.
  assert.ok(Date.parse(deep.body.tags[0].signedAt) >= Date.parse(first.body.tags[0].signedAt));
  assert.deepEqual((await m.call('get', `/repositories/${g}/tags?offset=${TAGS}`)).body.tags, []);
  const found = await m.call('get', `/repositories/${g}/tags?q=tag-999`);
  assert.deepEqual(
    found.body.tags.map((x: { tag: string }) => x.tag),
    ['tag-999', ...Array.from({ length: 10 }, (_, i) => `tag-${9990 + i}`)],
  );
});
