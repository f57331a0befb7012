// V14: pushes through the proxy need a credential by default, and sign-on-push signs only with
// keys the pusher's token may use. Real docker-registry upstream, real skopeo, the trustgate app.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Logger } from '../../src/observability/log.js';
import { readProxyConfig } from '../../src/config/proxy.js';
import { startProxy } from '../../src/proxy/index.js';
import { makeImageLayout, MEDIA_TYPES, runSkopeo, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { get, startStack, type Stack } from '../proxy/support.js';

let s: Stack;
let dir: string;
before(async () => {
  dir = await makeTempDir('proxy-push');
  // The default client authentication (TRUSTGATE_PROXY_AUTH unset), anonymous pull off as by default.
  s = await startStack({ env: { TRUSTGATE_PROXY_ANONYMOUS_PULL: 'false' } });
});
after(async () => {
  await s?.stop();
  await removeTempDir(dir);
});

const layout = (name: string) => path.join(dir, `${name}-${randomBytes(4).toString('hex')}`);
const push = (ref: string, dst: string, creds?: string) =>
  runSkopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', ...(creds ? ['--dest-creds', creds] : []), ref, `docker://${dst}`]);
const upstreamTags = async (repo: string) => {
  const r = await get(`${s.reg.url}/v2/${repo}/tags/list`);
  return r.status === 200 ? ((r.json().tags ?? []) as string[]) : [];
};
const targetsOf = async (repo: string) => {
  const f = await s.tg.app.trust.current(s.gun(repo), 'targets');
  return (
    f &&
    (JSON.parse(f.bytes.toString('utf8')) as {
      signed: { version: number; targets: Record<string, unknown> };
      signatures: Array<{ keyid: string }>;
    })
  );
};
const pushDenials = (actor: string) =>
  s.tg.auditLog.query({ action: 'proxy.push' }).filter((e) => e.outcome === 'denied' && e.actor.name === actor);

test('V14: anonymous push through the proxy is refused in the default configuration', async () => {
  assert.equal(readProxyConfig({ TRUSTGATE_UPSTREAM: 'http://127.0.0.1:5000' }).config!.auth, 'token', 'token is the default');
  const img = await makeImageLayout(layout('anon'), { tag: 'v1' });
  const r = await push(img.ref, `${s.host}/evil/app:v1`);
  assert.notEqual(r.code, 0, 'skopeo without credentials is refused');
  // Every write route is refused before the upstream: upload start, manifest PUT, DELETE.
  const start = await get(`${s.px.url}/v2/evil/app/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 401);
  assert.equal(start.headers.get('www-authenticate'), 'Basic realm="trustgate"');
  const put = await get(`${s.px.url}/v2/evil/app/manifests/v1`, {
    method: 'PUT',
    body: img.manifest.bytes,
    headers: { 'content-type': MEDIA_TYPES.ociManifest },
  });
  assert.equal(put.status, 401);
  assert.equal(put.json().errors[0].code, 'UNAUTHORIZED');
  assert.equal((await get(`${s.px.url}/v2/evil/app/manifests/${img.manifest.digest}`, { method: 'DELETE' })).status, 401);
  // Nothing reached the upstream, and no trust data was made.
  assert.deepEqual(await upstreamTags('evil/app'), []);
  assert.equal((await get(`${s.reg.url}/v2/evil/app/blobs/${img.layers[0]!.digest}`, { method: 'HEAD' })).status, 404);
  assert.equal(await s.tg.app.trust.current(s.gun('evil/app'), 'root'), undefined);
  const denial = pushDenials('anonymous')[0];
  assert.ok(denial, 'the refused push is audited');
  assert.equal(denial.gun, s.gun('evil/app'));
});

test('V14: a read-only token cannot push', async () => {
  const reader = s.tg.token(['reader'], { name: 'read-only' });
  const img = await makeImageLayout(layout('reader'), { tag: 'v1' });
  const r = await push(img.ref, `${s.host}/readonly/app:v1`, `me:${reader}`);
  assert.notEqual(r.code, 0, 'a reader token is refused');
  const put = await get(`${s.px.url}/v2/readonly/app/manifests/v1`, {
    method: 'PUT',
    body: img.manifest.bytes,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, authorization: `Bearer ${reader}` },
  });
  assert.equal(put.status, 403);
  assert.equal(put.json().errors[0].code, 'DENIED');
  assert.deepEqual(await upstreamTags('readonly/app'), []);
  assert.equal((await get(`${s.reg.url}/v2/readonly/app/blobs/${img.layers[0]!.digest}`, { method: 'HEAD' })).status, 404);
  assert.equal(await s.tg.app.trust.current(s.gun('readonly/app'), 'root'), undefined);
  assert.ok(pushDenials('read-only').length > 0, 'audited with the token as actor');
});

test("V14: sign-on-push uses only the pusher's keys", async () => {
  // An admin's push initialises trust and is signed.
  const first = await makeImageLayout(layout('own-a'), { tag: 'v1' });
  await skopeoCopy(first.ref, `docker://${s.host}/team/own:v1`, ['--dest-creds', s.creds]);
  const before = await targetsOf('team/own');
  assert.ok(before?.signed.targets.v1, 'the admin push is signed');
  const root = JSON.parse((await s.tg.app.trust.current(s.gun('team/own'), 'root'))!.bytes.toString('utf8')).signed;
  const targetsKey: string = root.roles.targets.keyids[0];
  // Another repository's targets key: held by the server, but not a key of team/own's role.
  await skopeoCopy(first.ref, `docker://${s.host}/team/other:v1`, ['--dest-creds', s.creds]);
  const otherKey: string = JSON.parse((await s.tg.app.trust.current(s.gun('team/other'), 'root'))!.bytes.toString('utf8')).signed.roles
    .targets.keyids[0];
  const stranger = s.tg.token(['signer:**'], { name: 'stranger', keyIds: [otherKey] });

  const second = await makeImageLayout(layout('own-b'), { tag: 'v2' });
  const r = await push(second.ref, `${s.host}/team/own:v2`, `ci:${stranger}`);
  assert.notEqual(r.code, 0, 'a signer token without a key of the role is refused');
  const put = await get(`${s.px.url}/v2/team/own/manifests/v2`, {
    method: 'PUT',
    body: second.manifest.bytes,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, authorization: `Bearer ${stranger}` },
  });
  assert.equal(put.status, 403, put.body.toString());
  const e = put.json().errors[0];
  assert.equal(e.code, 'DENIED');
  assert.equal(e.detail.reason, 'cannot-sign');
  assert.match(e.message, /signs pushes to team\/own into targets, and this token cannot: .*none of the role's keys/);
  assert.deepEqual(await upstreamTags('team/own'), ['v1'], 'the manifest was not written upstream');
  assert.deepEqual(await targetsOf('team/own'), before, 'the trust data did not move');
  assert.ok(
    pushDenials('stranger').some((d) => d.detail?.reason !== undefined),
    'audited with the actor',
  );
  // A signer token cannot initialise a repository's trust on push either.
  const fresh = await get(`${s.px.url}/v2/team/fresh/manifests/v1`, {
    method: 'PUT',
    body: second.manifest.bytes,
    headers: { 'content-type': MEDIA_TYPES.ociManifest, authorization: `Bearer ${stranger}` },
  });
  assert.equal(fresh.status, 403, fresh.body.toString());
  assert.match(fresh.json().errors[0].message, /no trust data/);
  assert.deepEqual(await upstreamTags('team/fresh'), []);

  // With the role's key among its keyIds, the same push is signed, by that key only.
  const ci = s.tg.token(['signer:**'], { name: 'ci', keyIds: [targetsKey, otherKey] });
  await skopeoCopy(second.ref, `docker://${s.host}/team/own:v2`, ['--dest-creds', `ci:${ci}`]);
  const after = await targetsOf('team/own');
  assert.ok(after?.signed.targets.v2);
  assert.deepEqual(
    after.signatures.map((x) => x.keyid),
    [targetsKey],
  );
  const signed = s.tg.auditLog.query({ action: 'proxy.sign' }).at(-1);
  assert.equal(signed?.actor.name, 'ci');
  // The tag's commit journaled this entry, and the row went once it was written.
  await s.tg.app.trust.flushAcks();
  assert.ok(!(await s.tg.app.store.journal(1000)).some((r) => r.id === signed?.detail?.journal), JSON.stringify(signed));
  assert.equal(typeof signed?.detail?.journal, 'string');
});

test('V14: TRUSTGATE_PROXY_AUTH=none is explicit, warns at every start, and opens pulls only', async () => {
  const warnings: string[] = [];
  const log: Logger = (level, msg) => {
    if (level === 'warn') warnings.push(msg);
  };
  const open = await startStack({ reg: s.reg, env: { TRUSTGATE_PROXY_AUTH: 'none' }, overrides: { log } });
  try {
    assert.equal(warnings.filter((m) => m.includes('TRUSTGATE_PROXY_AUTH=none')).length, 1, warnings.join('\n'));
    const again = await startProxy(open.tg.app, {}, { host: '127.0.0.1', port: 0 });
    await again.close();
    assert.equal(warnings.filter((m) => m.includes('TRUSTGATE_PROXY_AUTH=none')).length, 2, 'warned again at the next start');
    // Pulls need no credentials; an anonymous push is still refused, a token's goes through.
    const img = await makeImageLayout(layout('open'), { tag: 'v1' });
    assert.notEqual((await push(img.ref, `${open.host}/team/open:v1`)).code, 0);
    assert.deepEqual(await upstreamTags('team/open'), []);
    await skopeoCopy(img.ref, `docker://${open.host}/team/open:v1`, ['--dest-creds', open.creds]);
    const pulled = await get(`${open.px.url}/v2/team/open/manifests/v1`);
    assert.equal(pulled.status, 200, pulled.body.toString());
    const inspect = await runSkopeo(['inspect', '--tls-verify=false', '--raw', `docker://${open.host}/team/open:v1`]);
    assert.equal(inspect.code, 0, inspect.stderr);
  } finally {
    await open.stop();
  }
});
