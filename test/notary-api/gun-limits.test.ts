// GUNs the server refuses (traversal, wildcards, empty segments, length, non-ASCII, encodings),
// the GUN prefix filter (spec §2.1), and the publish body limit.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { initRepo, multipart, publish, raw, tufPath } from '../helpers/tuf-builder.js';
import { assertError, newGun, rawRequest, startServer, NOT_FOUND_BARE, type RawResponse, type Server } from './support.js';
import { unchanged } from '../helpers/unchanged.js';

let s: Server;
let body: { body: Buffer; contentType: string };
before(async () => {
  s = await startServer();
  // a valid first publish for some GUN, reused as the body sent to refused GUNs
  const repo = await initRepo(s.agent, newGun('template'), { serverSnapshot: true, publish: false });
  body = multipart(repo.pending);
});
after(() => s.stop());

const INVALID_GUN = (detail: string) =>
  `{"errors":[{"code":"INVALID_GUN","message":"The server does not support actions on images of this name.","detail":${JSON.stringify(detail)}}]}\n`;

/** GUNs as they appear in the request path (already percent-encoded where needed). */
const ODD_GUNS = [
  '../x',
  'a/../b',
  '..',
  'a/./b',
  '.',
  '*',
  'a*b',
  'example.com/app*',
  'a//b',
  '/a', // leading empty segment
  'a/', // trailing empty segment
  `example.com/${'a'.repeat(300)}`,
  'example.com/caf%C3%A9',
  '%E2%80%AE',
  '%2e%2e/x',
  'a/%2e%2e/b',
  'a/%2E%2E/b',
  '..%2fx',
  'a%2f..%2fb',
  'a%20b',
  'a%00b',
  '-a',
  'a/_b',
];

test('odd GUNs: POST answers 400 INVALID_GUN, every other route a bare 404, and nothing is stored or minted', async () => {
  await unchanged(s, [], async () => {
    for (const g of ODD_GUNS) {
      const post = await rawRequest(s, 'POST', `/v2/${g}/_trust/tuf/`, { headers: { 'Content-Type': body.contentType }, body: body.body });
      assertError(post, 400, INVALID_GUN('invalid GUN'));
      for (const [method, file] of [
        ['GET', 'root.json'],
        ['GET', 'timestamp.json'],
        ['GET', '1.root.json'],
        ['GET', `root.${'a'.repeat(64)}.json`],
        ['GET', 'timestamp.key'],
        ['POST', 'snapshot.key'],
        ['DELETE', ''],
      ] as const) {
        assertError(await rawRequest(s, method, `/v2/${g}/_trust/tuf/${file}`), 404, NOT_FOUND_BARE);
      }
      assertError(await rawRequest(s, 'GET', `/v2/${g}/_trust/changefeed?records=10`), 404, NOT_FOUND_BARE);
    }
  });
});

test('`a/../b` never acts on `b`: GET, DELETE and POST through a traversal leave `b` alone', async () => {
  const gun = newGun('target');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const [host, ...rest] = gun.split('/');
  const sneaky = `${host}/x/../${rest.join('/')}`;
  const sneakyEnc = `${host}/x/%2e%2e/${rest.join('/')}`;
  await unchanged(s, [gun], async () => {
    for (const g of [sneaky, sneakyEnc]) {
      assertError(await rawRequest(s, 'GET', tufPath(g, 'root.json')), 404, NOT_FOUND_BARE);
      assertError(await rawRequest(s, 'DELETE', tufPath(g)), 404, NOT_FOUND_BARE);
      const files = multipart(await repo.files([['targets', repo.next()]]));
      assertError(
        await rawRequest(s, 'POST', tufPath(g), { headers: { 'Content-Type': files.contentType }, body: files.body }),
        400,
        INVALID_GUN('invalid GUN'),
      );
    }
  });
  assert.ok((await raw(s.agent.get(tufPath(gun, 'root.json')))).body.equals(repo.root.bytes));
});

test('GUNs real clients send are accepted: host:port, nested paths, dots, dashes, underscores, up to 255 bytes', async () => {
  for (const gun of [
    'docker.io/library/alpine',
    '127.0.0.1:4446/test/app',
    'registry.example.com:5000/a_b/c-d/e.f',
    `example.com/${'a'.repeat(243)}`,
    'localhost',
    'UPPER.example.com/Repo',
  ]) {
    const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
    assert.ok((await raw(s.agent.get(tufPath(gun, 'root.json')))).body.equals(repo.root.bytes), gun);
  }
});

test('an encoded slash in the path is a slash: /v2/a%2Fb/ is GUN a/b', async () => {
  const gun = newGun('enc');
  const repo = await initRepo(s.agent, gun, { serverSnapshot: true });
  const res = await rawRequest(s, 'GET', `/v2/${gun.replaceAll('/', '%2F')}/_trust/tuf/root.json`);
  assert.equal(res.status, 200);
  assert.ok(res.body.equals(repo.root.bytes));
});

test('TRUSTGATE_GUN_PREFIXES: outside GUNs get 400 INVALID_GUN with the prefixes on POST, a bare 404 elsewhere', async () => {
  const s2 = await startServer({ TRUSTGATE_GUN_PREFIXES: 'localhost:5000/library/pfx/,docker.io/' });
  try {
    const inside = 'localhost:5000/library/pfx/app';
    const repo = await initRepo(s2.agent, inside, { serverSnapshot: true });
    assert.equal((await repo.addTarget('x', 'y')).status, 200);
    const outside = 'localhost:5000/library/pfxx';
    await unchanged(s2, [], async () => {
      const post = await rawRequest(s2, 'POST', tufPath(outside), { headers: { 'Content-Type': body.contentType }, body: body.body });
      assertError(post, 400, INVALID_GUN('Require GUNs with prefix: [localhost:5000/library/pfx/ docker.io/]'));
      for (const file of ['root.json', 'timestamp.key', '1.root.json'])
        assertError(await raw(s2.agent.get(tufPath(outside, file))), 404, NOT_FOUND_BARE);
      assertError(await raw(s2.agent.delete(tufPath(outside))), 404, NOT_FOUND_BARE);
      assertError(await raw(s2.agent.get(`/v2/${outside}/_trust/changefeed?records=1`)), 404, NOT_FOUND_BARE);
    });
    const del = await raw(s2.agent.delete(tufPath(inside)));
    assert.equal(del.status, 200);
  } finally {
    await s2.stop();
  }
});

/** POSTs a body in chunks without a Content-Length (chunked transfer encoding). */
function postChunked(srv: Server, path: string, contentType: string, chunks: Buffer[]): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: srv.tg.port,
        method: 'POST',
        path,
        headers: { 'Content-Type': contentType, Authorization: `Bearer ${srv.tg.adminToken}` },
      },
      (res) => {
        const out: Buffer[] = [];
        res.on('data', (c: Buffer) => out.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body: Buffer.concat(out) }));
      },
    );
    req.on('error', reject);
    (async () => {
      for (const c of chunks) if (!req.write(c)) await new Promise((r) => req.once('drain', r));
      req.end();
    })().catch(reject);
  });
}

test('bodies over TRUSTGATE_MAX_BODY_BYTES: 413 with nothing stored, whether the length is declared or chunked; smaller bodies work', async () => {
  const s2 = await startServer({ TRUSTGATE_MAX_BODY_BYTES: '8192' });
  try {
    const gun = newGun('limit');
    const repo = await initRepo(s2.agent, gun, { serverSnapshot: true, publish: false });
    const ok = multipart(repo.pending);
    assert.ok(ok.body.length < 8192, `the first publish is ${ok.body.length} bytes`);
    const TOO_LARGE =
      '{"errors":[{"code":"MALFORMED_UPLOAD","message":"The body of your request is larger than this server accepts (8192 bytes)."}]}\n';
    const padded = multipart([...repo.pending, ['targets/pad', Buffer.alloc(1024 * 1024, 0x20)]]);
    await unchanged(s2, [gun], async () => {
      // declared length
      assertError(
        await rawRequest(s2, 'POST', tufPath(gun), { headers: { 'Content-Type': padded.contentType }, body: padded.body }),
        413,
        TOO_LARGE,
      );
      // chunked, in pieces
      const pieces = Array.from({ length: Math.ceil(padded.body.length / 65536) }, (_, i) =>
        padded.body.subarray(i * 65536, (i + 1) * 65536),
      );
      assertError(await postChunked(s2, tufPath(gun), padded.contentType, pieces), 413, TOO_LARGE);
      // just over the limit
      const over = multipart([...repo.pending, ['targets/pad', Buffer.alloc(8192 - ok.body.length, 0x20)]]);
      assert.ok(over.body.length > 8192);
      assertError(
        await rawRequest(s2, 'POST', tufPath(gun), { headers: { 'Content-Type': over.contentType }, body: over.body }),
        413,
        TOO_LARGE,
      );
      // through supertest as well
      assertError(await publish(s2.agent, gun, [...repo.pending, ['targets/pad', Buffer.alloc(20000, 0x20)]]), 413, TOO_LARGE);
    });
    // the server is still fine, and a body under the limit is accepted
    const res = await postChunked(s2, tufPath(gun), ok.contentType, [ok.body.subarray(0, 100), ok.body.subarray(100)]);
    assert.equal(res.status, 200, res.body.toString());
  } finally {
    await s2.stop();
  }
});
