// The Notary API's route table (src/notary/routes.ts): every route declares its access, the
// dispatch hands the authorisation hook the very entry it matched, and every route that writes
// refuses an anonymous request with 401 on a running server.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, test } from 'node:test';
import request from 'supertest';
import { createNotaryHandler } from '../../src/notary/handler.js';
import { NOTARY_ROUTES, type NotaryRoute } from '../../src/notary/routes.js';
import { initRepo, multipart, raw } from '../helpers/tuf-builder.js';
import { newGun, startServer, unchanged, type Server } from './support.js';

let s: Server;
before(async () => {
  s = await startServer();
});
after(() => s.stop());

/** A concrete path for a route's template. */
const pathOf = (r: NotaryRoute, gun: string) =>
  r.path
    .replace('{gun}', gun)
    .replace('{role}.key', 'timestamp.key')
    .replace('{role}', 'targets')
    .replace('{checksum}', 'a'.repeat(64))
    .replace('{version}', '1');

const writes = NOTARY_ROUTES.filter((r) => r.permission === 'sign' || r.permission === 'admin');

test('every Notary route declares methods, operation and a permission; writes need sign or admin', () => {
  const seen = new Set<string>();
  for (const r of NOTARY_ROUTES) {
    assert.ok(r.methods.length > 0 && r.operation, r.path);
    assert.ok(['read', 'sign', 'admin', 'ping', 'none'].includes(r.permission), `${r.operation} ${r.path}: ${r.permission}`);
    for (const m of r.methods) {
      const key = `${m} ${r.path}`;
      assert.ok(!seen.has(key), `${key} is declared twice`);
      seen.add(key);
      if (m !== 'GET') assert.ok(r.permission === 'sign' || r.permission === 'admin', `${key} changes data with ${r.permission}`);
    }
    if (r.permission !== 'none' && r.permission !== 'ping') assert.ok(r.actions.length > 0, `${r.operation} declares no notary actions`);
  }
  assert.deepEqual(writes.map((r) => r.operation).sort(), ['DeleteTUF', 'GetKey', 'RotateKey', 'UpdateTUF']);
});

test('the dispatch hands the authorisation hook the entry it matched', async () => {
  const gun = newGun('table-hook');
  const seen: NotaryRoute[] = [];
  const h = createNotaryHandler(s.tg.app.trust, s.tg.app.metrics, {
    maxBodyBytes: 1 << 20,
    gunPrefixes: [],
    cacheMaxAge: { current: 300, consistent: 300 },
    authorize: async (_req, _res, _gun, route) => (seen.push(route), false),
  });
  for (const r of NOTARY_ROUTES) {
    if (r.permission === 'none') continue;
    for (const method of r.methods) {
      seen.length = 0;
      const req = { method, url: pathOf(r, gun), headers: {}, resume: () => undefined } as unknown as IncomingMessage;
      assert.equal(await h(req, {} as never), true, `${method} ${r.path}`);
      assert.equal(seen.length, 1, `${method} ${r.path}`);
      assert.equal(seen[0], r, `${method} ${r.path} matched ${seen[0]!.operation}`);
    }
  }
});

test('an anonymous request to each write route is refused with 401 and changes nothing', async () => {
  const gun = newGun('table-anon');
  const repo = await initRepo(s.agent, gun);
  const { body, contentType } = multipart(await repo.files([['targets', repo.next()]]));
  const anon = request(s.tg.url);
  await unchanged(s, [gun], async () => {
    for (const r of writes) {
      for (const method of r.methods) {
        const path = pathOf(r, gun);
        let req = anon[method.toLowerCase() as 'get' | 'post' | 'delete'](path);
        if (r.operation === 'UpdateTUF') req = req.set('Content-Type', contentType).send(body);
        const res = await raw(req);
        assert.equal(res.status, 401, `${method} ${path}: ${res.body.toString()}`);
        assert.match(res.body.toString(), /"code":"UNAUTHORIZED"/);
      }
    }
  });
});
