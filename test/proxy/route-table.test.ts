// The proxy's route table (PROXY_ROUTES in src/proxy/server.ts): every route declares its access,
// writes need `push`, and every write route refuses an anonymous request with 401 on a running
// proxy, with pulls anonymous or open, leaving the upstream as it was.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PROXY_ROUTES } from '../../src/proxy/server.js';
import { MEDIA_TYPES } from '../helpers/oci.js';
import { get, putBlob, putManifest, startStack, type Stack } from './support.js';

let s: Stack;
before(async () => {
  s = await startStack();
});
after(() => s?.stop());

const REPO = 'table/app';
const BLOB = `sha256:${'b'.repeat(64)}`;
/** A path each write route matches, by operation. */
const WRITE_PATHS: Record<string, string> = {
  PutManifest: `/v2/${REPO}/manifests/anon`,
  DeleteManifest: `/v2/${REPO}/manifests/v1`,
  StartBlobUpload: `/v2/${REPO}/blobs/uploads/`,
  WriteBlobUpload: `/v2/${REPO}/blobs/uploads/0b6c4d2e-0000-4000-8000-000000000000`,
  DeleteBlob: `/v2/${REPO}/blobs/${BLOB}`,
};
const writes = PROXY_ROUTES.filter((r) => r.permission === 'push');

test('every proxy route declares methods, operation and a permission; writes need push', () => {
  const seen = new Set<string>();
  for (const r of PROXY_ROUTES) {
    assert.ok(r.methods.length > 0 && r.operation, String(r.pattern));
    assert.ok(['pull', 'push', 'catalog', 'ping'].includes(r.permission), `${r.operation}: ${r.permission}`);
    for (const m of r.methods) {
      const key = `${m} ${r.pattern}`;
      assert.ok(!seen.has(key), `${key} is declared twice`);
      seen.add(key);
      assert.equal(r.permission === 'push', m !== 'GET' && m !== 'HEAD', `${r.operation} ${m} needs ${r.permission}`);
    }
  }
  assert.deepEqual(writes.map((r) => r.operation).sort(), Object.keys(WRITE_PATHS).sort());
  for (const r of writes) assert.match(WRITE_PATHS[r.operation]!, r.pattern);
});

/** An anonymous request to every write route of `base` is refused with 401; the upstream keeps its content. */
async function anonymousWritesRefused(base: string): Promise<void> {
  const config = Buffer.from('{}');
  const configDigest = await putBlob(s.reg.url, REPO, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [],
    }),
  );
  assert.equal((await putManifest(s.reg.url, REPO, 'v1', manifest, MEDIA_TYPES.ociManifest)).status, 201);
  const paths: Record<string, string> = { ...WRITE_PATHS, DeleteBlob: `/v2/${REPO}/blobs/${configDigest}` };
  for (const r of writes) {
    for (const method of r.methods) {
      const path = paths[r.operation]!;
      const body = method === 'PUT' || method === 'PATCH' ? manifest : undefined;
      const g = await get(`${base}${path}`, { method, ...(body ? { body, headers: { 'content-type': MEDIA_TYPES.ociManifest } } : {}) });
      assert.equal(g.status, 401, `${method} ${path}: ${g.body.toString()}`);
      assert.equal(g.json().errors[0].code, 'UNAUTHORIZED');
      assert.match(g.headers.get('www-authenticate') ?? '', /^Basic /);
    }
  }
  assert.equal((await get(`${s.reg.url}/v2/${REPO}/manifests/v1`)).status, 200, 'the manifest is still upstream');
  assert.equal((await get(`${s.reg.url}/v2/${REPO}/manifests/anon`)).status, 404, 'nothing was pushed');
  assert.equal((await get(`${s.reg.url}/v2/${REPO}/blobs/${configDigest}`)).status, 200, 'the blob is still upstream');
}

test('an anonymous request to each write route is refused with 401 (anonymous pulls on)', () => anonymousWritesRefused(s.px.url));

test('an anonymous request to each write route is refused with 401 (pulls open: TRUSTGATE_PROXY_AUTH=none)', async () => {
  const open = await startStack({ reg: s.reg, env: { TRUSTGATE_PROXY_AUTH: 'none' } });
  try {
    await anonymousWritesRefused(open.px.url);
  } finally {
    await open.stop();
  }
});
