// A query parameter given twice is refused with 400 on every API that reads query parameters,
// rather than read by its first value.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startMgmt, type Mgmt } from '../management/support.js';
import { startStack, type Stack } from '../proxy/support.js';

let m: Mgmt;
let stack: Stack;
before(async () => {
  m = await startMgmt();
  stack = await startStack({ env: { TRUSTGATE_PROXY_AUTH: 'token' } });
});
after(async () => {
  await stack?.stop();
  await m?.stop();
});

test('repeated query parameter: management API answers 400', async () => {
  const one = await m.call('get', '/audit?since=2020-01-01T00:00:00Z');
  assert.equal(one.status, 200);
  for (const q of ['since=2020-01-01T00:00:00Z&since=2030-01-01T00:00:00Z', 'since=2020-01-01T00:00:00Z&%73ince=2030-01-01T00:00:00Z']) {
    const res = await m.call('get', `/audit?${q}`);
    assert.equal(res.status, 400, q);
    assert.equal(res.body.error.code, 'INVALID_REQUEST');
    assert.match(res.body.error.message, /"since" is given more than once/);
  }
});

test('repeated query parameter: signing API answers 400', async () => {
  const auth = { Authorization: `Bearer ${m.admin}` };
  const gun = 'registry.example.com:5000/q/app';
  for (const path of [
    `inspect?gun=${gun}&gun=${gun}x`,
    `public-key?gun=${gun}&role=targets&role=targets/releases`,
    `verify?image=${gun}:v1&image=${gun}:v2`,
  ]) {
    const res = await fetch(`${m.tg.url}/api/v1/signing/${path}`, { headers: auth });
    assert.equal(res.status, 400, path);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'INVALID_REQUEST');
    assert.match(body.error.message, /is given more than once/);
  }
});

test('repeated query parameter: Notary changefeed answers 400 INVALID_PARAMETERS', async () => {
  const ok = await fetch(`${m.tg.url}/v2/_trust/changefeed?change_id=0&records=10`);
  assert.equal(ok.status, 200);
  for (const q of ['change_id=0&change_id=5&records=10', 'change_id=0&records=10&records=-10']) {
    const res = await fetch(`${m.tg.url}/v2/_trust/changefeed?${q}`);
    assert.equal(res.status, 400, q);
    const body = (await res.json()) as { errors: Array<{ code: string }> };
    assert.equal(body.errors[0]!.code, 'INVALID_PARAMETERS');
  }
});

test('repeated query parameter: the proxy refuses a blob mount naming two sources', async () => {
  const res = await fetch(`${stack.px.url}/v2/q/app/blobs/uploads/?mount=sha256:${'0'.repeat(64)}&from=q/one&from=q/two`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${stack.tg.adminToken}` },
  });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  assert.match(body.errors[0]!.message, /"from" is given more than once/);
});
