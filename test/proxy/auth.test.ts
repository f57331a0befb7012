// Client authentication at the proxy with trustgate's management tokens (Basic password or
// Bearer), anonymous pulls when configured, and signing events in the audit log with the actor.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeImageLayout, MEDIA_TYPES, runSkopeo, skopeoCopy } from '../helpers/oci.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { get, startStack, type Stack } from './support.js';
import { digestOf } from '../helpers/util.js';

let s: Stack;
let dir: string;
let reader: string;
before(async () => {
  dir = await makeTempDir('proxy-auth');
  s = await startStack({ env: { TRUSTGATE_PROXY_AUTH: 'token', TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true' } });
  reader = s.tg.token(['reader:127.0.0.1:*/team/**'], { name: 'puller' });
});
after(async () => {
  await s?.stop();
  await removeTempDir(dir);
});

test('pushes need a token with sign access; the signing is audited under the token', async () => {
  // The repository's trust is initialised by an admin's push; the CI token may sign with its targets key.
  const first = await makeImageLayout(path.join(dir, 'first'), { tag: 'v0' });
  await skopeoCopy(first.ref, `docker://${s.host}/team/app:v0`, ['--dest-creds', s.creds]);
  const root = JSON.parse((await s.tg.app.trust.current(s.gun('team/app'), 'root'))!.bytes.toString()).signed;
  const signer = s.tg.token(['signer:**'], { name: 'ci', keyIds: root.roles.targets.keyids });
  const img = await makeImageLayout(path.join(dir, 'a'), { tag: 'v1' });
  const anon = await get(`${s.px.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
  assert.equal(anon.status, 401);
  assert.equal(anon.headers.get('www-authenticate'), 'Basic realm="trustgate"');
  assert.equal(anon.json().errors[0].code, 'UNAUTHORIZED');
  const asReader = await get(`${s.px.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${reader}` } });
  assert.equal(asReader.status, 403);
  const r = await runSkopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', img.ref, `docker://${s.host}/team/app:v1`]);
  assert.notEqual(r.code, 0, 'an anonymous skopeo push is refused');
  const bad = await runSkopeo([
    'copy',
    '--dest-tls-verify=false',
    '--preserve-digests',
    '--dest-creds',
    'ci:tgt_not-a-token',
    img.ref,
    `docker://${s.host}/team/app:v1`,
  ]);
  assert.notEqual(bad.code, 0);
  await skopeoCopy(img.ref, `docker://${s.host}/team/app:v1`, ['--dest-creds', `ci:${signer}`]);
  const entry = s.tg.auditLog.query({ action: 'proxy.sign' }).at(-1);
  assert.ok(entry);
  assert.equal(entry.outcome, 'success');
  assert.equal(entry.actor.name, 'ci');
  assert.equal(entry.gun, s.gun('team/app'));
  assert.equal(entry.detail?.digest, img.manifest.digest);
});

test('anonymous pulls are allowed when configured; a reader token is limited to its repositories', async () => {
  const anon = await get(`${s.px.url}/v2/team/app/manifests/v1`);
  assert.equal(anon.status, 200, anon.body.toString());
  // skopeo without credentials: challenged at the ping, then pulls anonymously
  const out = await runSkopeo(['inspect', '--tls-verify=false', '--raw', `docker://${s.host}/team/app:v1`]);
  assert.equal(out.code, 0, out.stderr);
  const bearer = await get(`${s.px.url}/v2/team/app/manifests/v1`, { headers: { authorization: `Bearer ${reader}` } });
  assert.equal(bearer.status, 200);
  const basic = await get(`${s.px.url}/v2/team/app/manifests/v1`, {
    headers: { authorization: `Basic ${Buffer.from(`me:${reader}`).toString('base64')}` },
  });
  assert.equal(basic.status, 200);
  const other = await get(`${s.px.url}/v2/other/app/manifests/v1`, { headers: { authorization: `Bearer ${reader}` } });
  assert.equal(other.status, 403);
  const wrong = await get(`${s.px.url}/v2/team/app/manifests/v1`, { headers: { authorization: 'Bearer tgt_wrong' } });
  assert.equal(wrong.status, 401);
  const put = await get(`${s.px.url}/v2/team/app/manifests/v9`, {
    method: 'PUT',
    body: Buffer.from('{}'),
    headers: { 'content-type': MEDIA_TYPES.ociManifest, authorization: `Bearer ${reader}` },
  });
  assert.equal(put.status, 403);
});

test('without anonymous pulls, a pull needs a token', async () => {
  const t = await startStack({ reg: s.reg, env: { TRUSTGATE_PROXY_AUTH: 'token', TRUSTGATE_PROXY_ANONYMOUS_PULL: 'false' } });
  try {
    assert.equal((await get(`${t.px.url}/v2/team/app/manifests/v1`)).status, 401);
    assert.equal((await get(`${t.px.url}/v2/`)).status, 401);
    const out = await runSkopeo(['inspect', '--tls-verify=false', '--raw', `docker://${t.host}/team/app:v1`]);
    assert.notEqual(out.code, 0);
    const admin = t.tg.token(['admin'], { name: 'admin2' });
    assert.equal((await get(`${t.px.url}/v2/`, { headers: { authorization: `Bearer ${admin}` } })).status, 200);
  } finally {
    await t.stop();
  }
});

test('a cross-repository mount needs read access to the source repository too', async () => {
  const teamSigner = s.tg.token(['signer:127.0.0.1:*/team/**'], { name: 'team-ci' });
  const auth = { authorization: `Bearer ${teamSigner}` };
  // A blob in a repository the token may not read, put straight into the upstream.
  const secret = Buffer.from(`secret ${Date.now()}`);
  const digest = digestOf(secret);
  const start = await get(`${s.reg.url}/v2/secret/app/blobs/uploads/`, { method: 'POST' });
  const loc = new URL(start.headers.get('location')!, s.reg.url);
  loc.searchParams.set('digest', digest);
  assert.equal((await get(loc.toString(), { method: 'PUT', body: secret })).status, 201);
  assert.equal(
    (await get(`${s.px.url}/v2/secret/app/blobs/${digest}`, { headers: auth })).status,
    403,
    'the token cannot read it directly',
  );

  const mount = await get(`${s.px.url}/v2/team/mounted/blobs/uploads/?mount=${digest}&from=secret/app`, { method: 'POST', headers: auth });
  assert.equal(mount.status, 403, mount.body.toString());
  assert.equal(mount.json().errors[0].code, 'DENIED');
  assert.equal((await get(`${s.reg.url}/v2/team/mounted/blobs/${digest}`, { method: 'HEAD' })).status, 404, 'nothing was mounted upstream');
  // A source that is no repository name is refused, not forwarded.
  const odd = await get(
    `${s.px.url}/v2/team/mounted/blobs/uploads/?mount=${digest}&from=${encodeURIComponent('secret/app:pull repository:x')}`,
    { method: 'POST', headers: auth },
  );
  assert.equal(odd.status, 404, odd.body.toString());
  assert.equal(odd.json().errors[0].code, 'NAME_INVALID');
  // With read access to the source, the mount goes through.
  const both = s.tg.token(['signer:127.0.0.1:*/team/**', 'reader:127.0.0.1:*/secret/**'], { name: 'team-ci-2' });
  const ok = await get(`${s.px.url}/v2/team/mounted/blobs/uploads/?mount=${digest}&from=secret/app`, {
    method: 'POST',
    headers: { authorization: `Bearer ${both}` },
  });
  assert.equal(ok.status, 201, ok.body.toString());
});
