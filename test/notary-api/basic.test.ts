// Routes without trust data (spec §2.1 routes 1, 11, 12, 13; §2.2): ping, health, metrics,
// the catch-all 404, 405 for unknown methods, HEAD, and the key routes that do not exist.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { initRepo, raw, tufPath } from '../helpers/tuf-builder.js';
import { assertError, fixture, newGun, rawRequest, startServer, NOT_FOUND_BARE, type Server } from './support.js';

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

test('GET /v2/ answers 200 with `{}` (the CLI ping: anything but 2xx/401 sends it offline)', async () => {
  const res = await raw(s.agent.get('/v2/'));
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(fixture('v2')));
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(res.headers['content-length'], '2');
  assert.equal(res.headers['cache-control'], undefined);
});

test('GET /_notary_server/health: 200 `{}` with a JSON content type', async () => {
  const res = await raw(s.agent.get('/_notary_server/health'));
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(fixture('health')));
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
  // As the reference answers (fixture health.headers): a length, not a chunked body.
  assert.equal(res.headers['content-length'], '2');
  assert.equal(res.headers['transfer-encoding'], undefined);
});

test('GET /_notary_server/health: 503 naming the failed check when storage is down', async () => {
  const s2 = await startServer();
  try {
    const ping = s2.tg.app.store.ping.bind(s2.tg.app.store);
    s2.tg.app.store.ping = async () => {
      throw new Error('database is gone');
    };
    const res = await raw(s2.agent.get('/_notary_server/health'));
    assert.equal(res.status, 503);
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual(JSON.parse(res.body.toString()), { storage: 'unavailable' });
    assert.equal(res.headers['content-length'], String(res.body.length));
    s2.tg.app.store.ping = ping;
  } finally {
    await s2.stop();
  }
});

test('GET /metrics: notary_server_http_request_duration_microseconds with an operation label per route', async () => {
  const gun = newGun('metrics');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true }); // GetKey, UpdateTUF
  await s.agent.get(tufPath(gun, 'root.json')); // GetRole
  await s.agent.get(tufPath(gun, '1.root.json')); // GetRoleByVersion
  await s.agent.get(tufPath(gun, `root.${'0'.repeat(64)}.json`)); // GetRoleByHash
  await s.agent.post(tufPath(gun, 'timestamp.key')); // RotateKey
  await s.agent.get(`/v2/${gun}/_trust/changefeed?records=1`); // Changefeed
  await s.agent.delete(tufPath(gun)); // DeleteTUF
  assert.ok(repo);
  const res = await raw(s.agent.get('/metrics'));
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type']!, /^text\/plain; version=0\.0\.4; charset=utf-8$/);
  assert.equal(res.headers['content-length'], String(res.body.length));
  const text = res.body.toString();
  assert.match(text, /# TYPE notary_server_http_request_duration_microseconds summary/);
  for (const op of ['UpdateTUF', 'GetRoleByHash', 'GetRoleByVersion', 'GetRole', 'GetKey', 'RotateKey', 'DeleteTUF', 'Changefeed']) {
    assert.match(text, new RegExp(`notary_server_http_request_duration_microseconds_count\\{operation="${op}"\\} [1-9]`), op);
    assert.match(text, new RegExp(`notary_server_http_request_duration_microseconds\\{quantile="0.5",operation="${op}"\\}`), op);
  }
});

test('unknown routes: 404 METADATA_NOT_FOUND without detail (fixture unknown_path)', async () => {
  for (const [method, path] of [
    ['GET', '/nope'],
    ['GET', '/v2/example.com/app/_trust/tuf'], // no trailing slash
    ['GET', '/v2/example.com/app/_trust/tuf/foo.json'],
    ['GET', '/v2/example.com/app/_trust/tuf/targets//x.json'],
    ['GET', '/v2/example.com/app/_trust/tuf/targets/x/.json'],
    ['GET', '/v2/example.com/app/_trust/tuf/'],
    ['GET', '/v2/example.com/app/_trust/bogus'],
    ['POST', '/v2/'],
    ['DELETE', '/v2/example.com/app/_trust/tuf/root.json'],
    ['GET', '/v2/example.com/app/_trust/tuf/1.foo.json'],
  ] as const) {
    const res = await rawRequest(s, method, path);
    assertError(res, 404, fixture('unknown_path'));
  }
});

test('PUT on the publish URL and POST on a metadata file: bare 404 (fixtures put_update, post_to_file)', async () => {
  const gun = 'localhost:5000/library/neg';
  assertError(await rawRequest(s, 'PUT', tufPath(gun), { body: 'x' }), 404, fixture('put_update'));
  assertError(await rawRequest(s, 'POST', tufPath(gun, 'root.json'), { body: 'x' }), 404, fixture('post_to_file'));
});

test('root.key and targets.key do not exist: GET and POST answer a bare 404 (fixtures a_rootkey, a_targetskey, post_rotate_bad_role)', async () => {
  const gun = 'localhost:5000/library/app';
  assertError(await raw(s.agent.get(tufPath(gun, 'root.key'))), 404, fixture('a_rootkey'));
  assertError(await raw(s.agent.get(tufPath(gun, 'targets.key'))), 404, fixture('a_targetskey'));
  assertError(await raw(s.agent.post(tufPath(gun, 'root.key'))), 404, fixture('post_rotate_bad_role'));
  assertError(await raw(s.agent.post(tufPath(gun, 'targets.key'))), 404, NOT_FOUND_BARE);
  assertError(await raw(s.agent.delete(tufPath(gun, 'timestamp.key'))), 404, NOT_FOUND_BARE);
  assert.equal((await s.tg.app.keys.list({ gun })).filter((k) => k.role !== 'timestamp' && k.role !== 'snapshot').length, 0);
});

test('PATCH (a method no Notary route allows) answers 405 with an empty body', async () => {
  for (const path of [
    '/v2/',
    tufPath('example.com/app'),
    tufPath('example.com/app', 'root.json'),
    '/v2/_trust/changefeed',
    '/v2/example.com/app/_trust/changefeed',
  ]) {
    const res = await rawRequest(s, 'PATCH', path, { body: 'x' });
    assert.equal(res.status, 405, path);
    assert.equal(res.body.length, 0, path);
  }
});

test('PATCH on a /v2/ path that is not a Notary path is left to the other handlers (registry blob uploads use PATCH)', async () => {
  const res = await rawRequest(s, 'PATCH', '/v2/example.com/app/blobs/uploads/1234', { body: 'x' });
  assert.notEqual(res.status, 405);
});

test('HEAD on metadata hits the catch-all: 404, and HEAD /v2/ is not the ping', async () => {
  const gun = newGun('head');
  await initRepo(s.agent, gun, { serverSnapshot: true });
  assert.equal((await raw(s.agent.get(tufPath(gun, 'root.json')))).status, 200);
  for (const path of [tufPath(gun, 'root.json'), tufPath(gun, '1.root.json'), tufPath(gun, 'timestamp.key'), '/v2/']) {
    const res = await rawRequest(s, 'HEAD', path);
    assert.equal(res.status, 404, path);
    assert.equal(res.body.length, 0);
  }
});

test('health and metrics answer GET only', async () => {
  assertError(await rawRequest(s, 'POST', '/_notary_server/health', { body: '' }), 404, NOT_FOUND_BARE);
  assertError(await rawRequest(s, 'POST', '/metrics', { body: '' }), 404, NOT_FOUND_BARE);
});

test('a path with a broken percent-encoding is a bare 404, not a crash', async () => {
  assertError(await rawRequest(s, 'GET', '/v2/example.com/%zz/_trust/tuf/root.json'), 404, NOT_FOUND_BARE);
  assert.equal((await raw(s.agent.get('/v2/'))).status, 200);
});
