// The management API as an operator types at it: key ID prefixes (as docker takes them), the
// API's own 404 for unknown /api/v1 paths, and one service-log line per change.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveKeyId } from '../../src/management/key-ids.js';
import { ApiError } from '../../src/http/api-error.js';
import { cli } from '../cli/support.js';
import { enc, expectError, expectStatus, newGun, startMgmt, type Mgmt } from '../management/support.js';

let m: Mgmt;
let gun: string;
let keys: Array<{ id: string; role: string }>;
before(async () => {
  m = await startMgmt();
  gun = newGun('prefix');
  expectStatus(await m.call('post', '/repositories', { body: { gun, rootKey: 'keystore' } }), 201);
  const list = await m.call('get', `/repositories/${enc(gun)}/keys`);
  keys = list.body.keys;
});
after(async () => {
  await m?.stop();
});

const keyOf = (role: string) => keys.find((k) => k.role === role)!.id;

describe('key ID prefixes', () => {
  test('a 12-character prefix exports the key it names; the answer gives the full ID', async () => {
    const id = keyOf('targets');
    const r = await m.call('post', `/repositories/${enc(gun)}/keys/${id.slice(0, 12)}/export`, {
      body: { passphrase: 'export-passphrase-1' },
    });
    expectStatus(r, 200);
    assert.equal(r.body.keyId, id);
  });

  test('a prefix in a body: rotate keyId and token keyIds', async () => {
    const targets = keyOf('targets');
    const rot = await m.call('post', `/repositories/${enc(gun)}/keys/targets/rotate`, { body: { keyId: targets.slice(0, 16) } });
    expectStatus(rot, 200);
    keys = (await m.call('get', `/repositories/${enc(gun)}/keys`)).body.keys;
    const fresh = keyOf('targets');
    assert.notEqual(fresh, targets);
    const tok = await m.call('post', '/tokens', { body: { name: 'prefix-ci', scopes: [`signer:${gun}`], keyIds: [fresh.slice(0, 12)] } });
    expectStatus(tok, 201);
    assert.deepEqual(tok.body.info.keyIds, [fresh]);
  });

  test('an unknown prefix is a 404 KEY_NOT_FOUND saying what it looked for; shorter than 12 is a 400', async () => {
    const r = await m.call('post', `/repositories/${enc(gun)}/keys/${'0123456789ab'}/export`, {
      body: { passphrase: 'export-passphrase-1' },
    });
    expectError(r, 404, 'KEY_NOT_FOUND');
    assert.match(r.body.error.message, new RegExp(`no key ID of .*prefix.* starts with 0123456789ab`));
    const short = await m.call('delete', `/repositories/${enc(gun)}/keys/${keyOf('snapshot').slice(0, 11)}`);
    expectError(short, 400, 'INVALID_REQUEST');
    assert.match(short.body.error.message, /64 lower-case hex characters, or a unique prefix of at least 12/);
    const tok = await m.call('post', '/tokens', { body: { name: 'nope', scopes: [`signer:${gun}`], keyIds: ['abcdefabcdef'] } });
    expectError(tok, 404, 'KEY_NOT_FOUND');
  });

  test('an ambiguous prefix is a 400 AMBIGUOUS_KEY_ID naming the candidates', () => {
    const a = 'abcdef012345' + '0'.repeat(52);
    const b = 'abcdef012345' + '1'.repeat(52);
    assert.throws(
      () => resolveKeyId('abcdef012345', [a, b, 'f'.repeat(64)], gun),
      (e: unknown) =>
        e instanceof ApiError && e.status === 400 && e.code === 'AMBIGUOUS_KEY_ID' && e.message.includes(a) && e.message.includes(b),
    );
    assert.equal(resolveKeyId('abcdef0123450', [a, b], gun), a);
  });

  test('the CLI takes a prefix: key export', async () => {
    const id = keyOf('targets');
    const out = join(m.tg.dir, 'exported.key');
    const pass = join(m.tg.dir, 'pass.txt');
    writeFileSync(pass, 'export-passphrase-2\n');
    const r = await cli(m.tg.url, m.admin).run(['key', 'export', gun, id.slice(0, 12), '-o', out, '--passphrase-file', pass]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`wrote the key ${id.slice(0, 12)} to`));
  });
});

describe('unknown /api/v1 paths', () => {
  test("answer the management API's 404 body, not a Notary one", async () => {
    for (const [method, path] of [
      ['get', '/nope'],
      ['post', `/repositories/${enc(gun)}/nope`],
    ] as const) {
      const r = await fetch(`${m.tg.url}/api/v1${path}`, { method, headers: { Authorization: `Bearer ${m.admin}` } });
      assert.equal(r.status, 404);
      const body = (await r.json()) as { error?: { code: string; message: string }; errors?: unknown };
      assert.equal(body.error?.code, 'NOT_FOUND', JSON.stringify(body));
      assert.equal(body.errors, undefined);
    }
    // Notary paths keep notary's vocabulary.
    const n = await fetch(`${m.tg.url}/v2/${gun}/_trust/tuf/nope.json`);
    assert.equal(n.status, 404);
    assert.match(await n.text(), /METADATA_NOT_FOUND/);
  });
});

describe('the service log', () => {
  test('names each management API change: actor, action, gun', async () => {
    const g = newGun('logged');
    expectStatus(await m.call('post', '/repositories', { body: { gun: g, rootKey: 'keystore' } }), 201);
    const lines = m.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'management API change');
    const line = lines.find((l) => l.action === 'repository.create' && l.gun === g);
    assert.ok(line, `no line for repository.create of ${g}:\n${m.logs.slice(-5).join('\n')}`);
    assert.equal(line.level, 'info');
    assert.equal(typeof line.actor, 'string');
    // Reads are not changes.
    const before = lines.length;
    expectStatus(await m.call('get', `/repositories/${enc(g)}`), 200);
    assert.equal(m.logs.filter((l) => l.includes('"management API change"')).length, before);
  });
});
