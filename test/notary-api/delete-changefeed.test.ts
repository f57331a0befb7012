// DELETE /v2/<gun>/_trust/tuf/ (spec §2.9) and the changefeeds (spec §2.8). One server for the
// whole file, so the global feed holds exactly what these tests wrote.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fetchServerKey, initRepo, raw, tufPath } from '../helpers/tuf-builder.js';
import {
  assertError,
  fixture,
  fixtureHeader,
  newGun,
  rawRequest,
  startServer,
  NOT_FOUND_BARE,
  NOT_FOUND_DETAIL,
  type Server,
} from './support.js';
import { unchanged } from '../helpers/unchanged.js';
import { sha256Hex } from '../helpers/util.js';

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

interface Record_ {
  ID: string;
  CreatedAt: string;
  GUN: string;
  Version: number;
  SHA256: string;
  Category: string;
}
const RFC3339_NANO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$/;

async function feed(query: string, gun?: string): Promise<{ count: number; records: Record_[] }> {
  const res = await raw(s.agent.get(`${gun ? `/v2/${gun}` : '/v2'}/_trust/changefeed${query}`));
  assert.equal(res.status, 200, res.body.toString());
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
  const body = JSON.parse(res.body.toString());
  assert.deepEqual(Object.keys(body), ['count', 'records']);
  assert.equal(body.count, body.records.length);
  for (const r of body.records) {
    assert.deepEqual(Object.keys(r), ['ID', 'CreatedAt', 'GUN', 'Version', 'SHA256', 'Category']);
    assert.match(r.ID, /^[1-9]\d*$/);
    assert.match(r.CreatedAt, RFC3339_NANO_UTC);
  }
  return body;
}

test('DELETE removes exactly that GUN: every role and version; `a/b` leaves `a/bc` and `a/b/c`', async () => {
  const base = newGun('del');
  const [ab, abc, abSub] = [`${base}/a/b`, `${base}/a/bc`, `${base}/a/b/c`];
  const repo = await initRepo(s.agent, ab, { serverSnapshot: true });
  assert.equal((await repo.addDelegation('targets/releases', { publishRole: true })).status, 200);
  await initRepo(s.agent, abc, { serverSnapshot: true });
  await initRepo(s.agent, abSub);
  const keep = {
    abc: (await raw(s.agent.get(tufPath(abc, 'timestamp.json')))).body,
    abSub: (await raw(s.agent.get(tufPath(abSub, 'timestamp.json')))).body,
  };
  const tsKey = await fetchServerKey(s.agent, ab, 'timestamp');

  const res = await raw(s.agent.delete(tufPath(ab)));
  assert.equal(res.status, 200);
  assert.equal(res.body.length, 0);
  assert.equal(res.headers['content-length'], fixtureHeader('del_neg', 'Content-Length'));

  for (const file of [
    'root.json',
    'targets.json',
    'snapshot.json',
    'timestamp.json',
    'targets/releases.json',
    '1.root.json',
    '2.targets.json',
    '1.timestamp.json',
  ]) {
    assertError(await raw(s.agent.get(tufPath(ab, file))), 404, fixture('del_a_ts'));
  }
  assert.deepEqual(await s.tg.app.store.latestVersions(ab), new Map());
  assert.ok((await raw(s.agent.get(tufPath(abc, 'timestamp.json')))).body.equals(keep.abc));
  assert.ok((await raw(s.agent.get(tufPath(abSub, 'timestamp.json')))).body.equals(keep.abSub));

  // a deletion record, for this GUN only
  const f = await feed('?records=100', ab);
  const last = f.records.at(-1)!;
  assert.deepEqual({ ...last, ID: '', CreatedAt: '' }, { ID: '', CreatedAt: '', GUN: ab, Version: 0, SHA256: '', Category: 'deletion' });
  assert.ok(!(await feed('?records=100', abc)).records.some((r) => r.Category === 'deletion'));

  // server keys are not deleted, and the GUN can be initialised again
  assert.equal((await fetchServerKey(s.agent, ab, 'timestamp')).keyval.public, tsKey.keyval.public);
  const again = await initRepo(s.agent, ab, { serverSnapshot: true });
  assert.ok((await raw(s.agent.get(tufPath(ab, 'root.json')))).body.equals(again.root.bytes));
});

test('DELETE of a GUN with nothing stored: 200, empty body, no changefeed record', async () => {
  const gun = 'localhost:5000/library/nosuch';
  await unchanged(s, [gun], async () => {
    const res = await raw(s.agent.delete(tufPath(gun)));
    assert.equal(res.status, 200);
    assert.equal(res.body.length, 0);
  });
});

test('DELETE with an invalid GUN or without the trailing slash: bare 404', async () => {
  await unchanged(s, [], async () => {
    assertError(await rawRequest(s, 'DELETE', '/v2/a/../b/_trust/tuf/'), 404, NOT_FOUND_BARE);
    assertError(await rawRequest(s, 'DELETE', '/v2/example.com/app/_trust/tuf'), 404, NOT_FOUND_BARE);
  });
});

test('changefeed: `records` is required; bad values are INVALID_PARAMETERS with strconv details (fixtures cf_noparam, cf_bad)', async () => {
  const gun = newGun('cf-params');
  for (const prefix of ['/v2', `/v2/${gun}`]) {
    assertError(await raw(s.agent.get(`${prefix}/_trust/changefeed`)), 400, fixture('cf_noparam'));
    assertError(await raw(s.agent.get(`${prefix}/_trust/changefeed?records=`)), 400, fixture('cf_noparam'));
    assertError(await raw(s.agent.get(`${prefix}/_trust/changefeed?change_id=0&records=abc`)), 400, fixture('cf_bad'));
    assertError(
      await raw(s.agent.get(`${prefix}/_trust/changefeed?records=2147483648`)),
      400,
      '{"errors":[{"code":"INVALID_PARAMETERS","message":"The parameters provided are not valid.","detail":"invalid records parameter: strconv.ParseInt: parsing \\"2147483648\\": value out of range"}]}\n',
    );
    for (const id of ['abc', '1.5', '99999999999', '0x10']) {
      assertError(
        await raw(s.agent.get(`${prefix}/_trust/changefeed?records=10&change_id=${id}`)),
        400,
        '{"errors":[{"code":"INVALID_PARAMETERS","message":"The parameters provided are not valid.","detail":{}}]}\n',
      );
    }
  }
});

test('changefeed: one update record per stored timestamp, with its version and sha256; per-GUN feed filters on exact GUN', async () => {
  const gun = newGun('cf');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  assert.equal((await repo.addTarget('a', 'a')).status, 200);
  await initRepo(s.agent, `${gun}x`, { serverSnapshot: true });
  await initRepo(s.agent, `${gun}/sub`, { serverSnapshot: true });
  const f = await feed('?records=100', gun);
  assert.equal(f.count, 2);
  for (const [i, r] of f.records.entries()) {
    const ts = await raw(s.agent.get(tufPath(gun, `${i + 1}.timestamp.json`)));
    assert.deepEqual(
      { ...r, ID: '', CreatedAt: '' },
      { ID: '', CreatedAt: '', GUN: gun, Version: i + 1, SHA256: sha256Hex(ts.body), Category: 'update' },
    );
  }
  assert.ok(Number(f.records[1]!.ID) > Number(f.records[0]!.ID));
  assert.ok((await feed('?records=100')).records.some((r) => r.GUN === `${gun}x`));
  // an unknown GUN: an empty list, not null
  const empty = await raw(s.agent.get(`/v2/${newGun('none')}/_trust/changefeed?records=10`));
  assert.equal(empty.body.toString(), '{"count":0,"records":[]}');
});

test('changefeed: change_id and records semantics (after an id, before it, from the newest), always oldest → newest', async () => {
  const all = (await feed('?records=1000')).records;
  assert.ok(all.length >= 6, `need a few records, have ${all.length}`);
  const ids = all.map((r) => r.ID);
  assert.deepEqual(
    [...ids].sort((a, b) => Number(a) - Number(b)),
    ids,
    'oldest first',
  );
  const at = (q: string) => feed(q).then((f) => f.records.map((r) => r.ID));

  assert.deepEqual(await at('?records=2'), ids.slice(0, 2));
  assert.deepEqual(await at('?records=2&change_id='), ids.slice(0, 2));
  assert.deepEqual(await at('?records=2&change_id=0'), ids.slice(0, 2));
  assert.deepEqual(await at(`?records=2&change_id=${ids[2]}`), ids.slice(3, 5), 'after the id, the id excluded');
  assert.deepEqual(await at(`?records=-2&change_id=${ids[4]}`), ids.slice(2, 4), 'negative records: that many before the id');
  assert.deepEqual(await at('?records=2&change_id=-1'), ids.slice(-2), 'change_id -1: from the newest');
  assert.deepEqual(await at('?records=-2&change_id=-1'), ids.slice(-2));
  assert.deepEqual(await at('?records=-3'), ids.slice(-3), 'negative records without an id: the newest');
  assert.deepEqual(await at('?records=2&change_id=-7'), ids.slice(-2), 'any negative id means from the newest (Go)');
  assert.deepEqual(await at(`?records=5&change_id=${ids.at(-1)}`), []);
  assert.equal((await at('?records=0')).length, Math.min(100, ids.length), '0 means the default page of 100');
});

test('changefeed of an invalid GUN: bare 404', async () => {
  assertError(await rawRequest(s, 'GET', '/v2/a/../b/_trust/changefeed?records=1'), 404, NOT_FOUND_BARE);
  assertError(await raw(s.agent.get(`/v2/${newGun('x')}/_trust/tuf/nope.json`)), 404, NOT_FOUND_BARE);
  assertError(await raw(s.agent.get(tufPath(newGun('x'), 'root.json'))), 404, NOT_FOUND_DETAIL);
});

test('changefeed asked for in absolute form whose authority is not a valid URL host: answered like the path, never a 500', async () => {
  // The route comes from the raw path (authority stripped); the query was read with new URL() over
  // the whole target, which throws for `http://[/...` (TypeError: Invalid URL → 500 UNKNOWN).
  const want = (await raw(s.agent.get('/v2/_trust/changefeed?records=1'))).body.toString();
  const res = await rawRequest(s, 'GET', 'http://[/v2/_trust/changefeed?records=1');
  assert.equal(res.status, 200, res.body.toString());
  assert.equal(res.body.toString(), want);
});
