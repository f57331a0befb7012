// The signing block of openapi.yaml against the server: it documents exactly the routes the
// signing router serves, every request sent here is valid for its documented schema, and every
// answer (successes and errors) matches the schema documented for its status.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import YAML from 'yaml';
import type { ValidateFunction } from 'ajv/dist/2020.js';
import { generateSigner } from '../../src/core/crypto/signer.js';
import { loadApiSchemas, refUri } from '../management/openapi.js';
import { addDelegation, bearer, fakeDigest, initRepo, newGun, startSigningServer, type SigningServer } from './support.js';

const doc: any = YAML.parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));
const ajv = loadApiSchemas();
const cache = new Map<string, ValidateFunction>();
const validator = (ref: string) => {
  let v = cache.get(ref);
  if (!v) {
    v = ajv.getSchema(refUri(ref));
    assert.ok(v, `no schema ${ref}`);
    cache.set(ref, v);
  }
  return v;
};
const deref = (v: any): any =>
  v?.$ref?.startsWith('#/')
    ? deref(
        v.$ref
          .slice(2)
          .split('/')
          .reduce((o: any, k: string) => o?.[k], doc),
      )
    : v;
const seen = new Set<string>();

let s: SigningServer;
before(async () => {
  s = await startSigningServer();
});
after(() => s.stop());

/** Sends a request, checks the body against the request schema and the answer against the documented one. */
async function call(
  method: 'get' | 'post',
  path: string,
  opts: { body?: unknown; query?: Record<string, string>; token?: string | null; invalid?: boolean } = {},
) {
  const op = doc.paths[path]?.[method];
  assert.ok(op, `${method} ${path} is not in openapi.yaml`);
  if (opts.body !== undefined) {
    const ref = op.requestBody.content['application/json'].schema.$ref;
    const v = validator(ref);
    if (opts.invalid) assert.ok(!v(opts.body), `the bad request for ${method} ${path} should not match ${ref} either`);
    else assert.ok(v(opts.body), `request for ${method} ${path} does not match ${ref}: ${ajv.errorsText(v.errors)}`);
  }
  let req = s.agent[method](`/api/v1${path}`).set('Accept', 'application/json');
  if (opts.token !== null) req = req.set(bearer(opts.token ?? s.adminToken));
  if (opts.query) req = req.query(opts.query);
  const res = opts.body !== undefined ? await req.send(opts.body as object) : await req;
  const r = deref(op.responses[String(res.status)]);
  assert.ok(r, `${method} ${path} does not document status ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
  const ref = r.content['application/json'].schema.$ref;
  const v = validator(ref);
  assert.ok(
    v(res.body),
    `${method} ${path} ${res.status} does not match ${ref}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(res.body).slice(0, 800)}`,
  );
  assert.equal(res.headers['cache-control'], 'no-store');
  seen.add(`${method} ${path} ${res.status}`);
  return res;
}

test('openapi.yaml documents exactly the routes the signing router serves', () => {
  const documented: string[] = [];
  for (const [path, item] of Object.entries<Record<string, { tags?: string[] }>>(doc.paths)) {
    for (const m of ['get', 'post', 'put', 'delete']) if (item[m]?.tags?.includes('signing')) documented.push(`${m} ${path}`);
  }
  const served: string[] = [];
  for (const layer of (s.tg.app.signing.router as any).stack as Array<{ route?: { path: string; methods: Record<string, boolean> } }>) {
    if (!layer.route) continue;
    for (const m of Object.keys(layer.route.methods)) served.push(`${m} ${layer.route.path}`);
  }
  assert.deepEqual(documented.sort(), served.sort());
  for (const p of Object.keys(doc.paths).filter((p) => p.startsWith('/signing'))) {
    for (const op of Object.values<{ tags?: string[] }>(doc.paths[p])) assert.deepEqual(op.tags, ['signing'], `${p} is tagged signing`);
  }
});

test('every answer of the signing routes matches its documented schema', async () => {
  const gun = newGun('oas');
  await initRepo(s, gun);
  const d = fakeDigest('oas');
  assert.equal((await call('post', '/signing/sign', { body: { gun, tag: 'v1', digest: d, size: 10, custom: { build: 7 } } })).status, 201);
  assert.equal(
    (
      await call('post', '/signing/batch', {
        body: {
          gun,
          items: [
            { tag: 'v2', digest: d, size: 10 },
            { tag: 'v3', digest: fakeDigest('3'), size: 3 },
          ],
        },
      })
    ).status,
    201,
  );
  assert.equal(
    (await call('post', '/signing/sign', { body: { gun, tag: 'v1', digest: 'sha256:nope', size: 1 }, invalid: true })).status,
    400,
  );
  assert.equal((await call('post', '/signing/sign', { body: { gun, tag: 'v1', digest: d, size: 1 }, token: null })).status, 401);
  assert.equal(
    (await call('post', '/signing/sign', { body: { gun, tag: 'v1', digest: d, size: 1 }, token: s.token(['reader']) })).status,
    403,
  );
  assert.equal((await call('post', '/signing/sign', { body: { gun: newGun('none'), tag: 'v1', digest: d, size: 1 } })).status, 404);
  assert.equal(
    (await call('post', '/signing/batch', { body: { gun, items: [{ tag: 'x', digest: d, size: 0 }] }, invalid: true })).status,
    400,
  );

  // m-of-n: a 202 with the pending change.
  const offline = generateSigner('ecdsa');
  await addDelegation(s, gun, 'targets/releases', { extraKeys: [offline.key], threshold: 2 });
  assert.equal(
    (await call('post', '/signing/sign', { body: { gun, tag: 'r1', digest: d, size: 10, role: 'targets/releases' } })).status,
    202,
  );
  assert.equal(
    (await call('post', '/signing/batch', { body: { gun, role: 'targets/releases', items: [{ tag: 'r2', digest: d, size: 10 }] } })).status,
    202,
  );

  assert.equal(
    (await call('post', '/signing/promote', { body: { gun, from: { tag: 'v1' }, to: { tag: 'v1-copy', role: 'targets' } } })).status,
    201,
  );
  assert.equal(
    (await call('post', '/signing/promote', { body: { gun, from: { tag: 'nope' }, to: { role: 'targets', tag: 'x' } } })).status,
    409,
  );
  assert.equal((await call('post', '/signing/revoke', { body: { gun, tag: 'v3' } })).status, 200);
  assert.equal((await call('post', '/signing/revoke', { body: { gun, tag: 'v3' } })).status, 404);

  const signed = await call('post', '/signing/verify', { body: { image: `${gun}:v1` } });
  assert.equal(signed.body.verdict, 'signed');
  const denied = await call('get', '/signing/verify', { query: { image: `${gun}:nope` } });
  assert.equal(denied.body.verdict, 'denied');
  assert.equal((await call('get', '/signing/verify', { query: { image: `${gun}@${d}`, roles: 'targets' } })).body.verdict, 'signed');
  assert.equal((await call('post', '/signing/verify', { body: { image: 'Not A Ref' } })).status, 400);

  assert.equal((await call('get', '/signing/inspect', { query: { gun } })).status, 200);
  assert.equal((await call('get', '/signing/inspect', { query: { gun: newGun('nothing') } })).status, 404);
  assert.equal((await call('get', '/signing/public-key', { query: { gun } })).status, 200);
  assert.equal((await call('get', '/signing/public-key', { query: { gun, role: 'targets/nope' } })).status, 400);

  // Attestations: this server has no upstream (400 UPSTREAM_REQUIRED); the 201 is checked in attest.test.ts.
  const att = { gun, digest: d, predicateType: 'https://example.com/predicate/v1', predicate: { a: 1 } };
  const noUpstream = await call('post', '/signing/attest', { body: att });
  assert.equal(noUpstream.status, 400);
  assert.equal(noUpstream.body.error.code, 'UPSTREAM_REQUIRED');
  assert.equal((await call('post', '/signing/attest', { body: { ...att, predicate: 'x' }, invalid: true })).status, 400);
  assert.equal((await call('post', '/signing/attest', { body: att, token: null })).status, 401);
  assert.equal((await call('post', '/signing/attest', { body: att, token: s.token(['reader']) })).status, 403);
  assert.equal((await call('post', '/signing/attest', { body: { ...att, gun: newGun('none') } })).status, 404);
});
