// Regression: on Node 20, exporting a key made by generateKeyPairSync (as the file keystore does,
// as JWK) while the garbage collector frees the key-generation job deadlocks the process (it hung
// test/management/scale.test.ts after a few hundred repositories). Keys are now made as PKCS#8
// bytes and read back (newPrivateKey). Run in a child process: a regression hangs the child, not
// the test runner, and is reported after the bound.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('keys made by generateSigner and exported as JWK many times over never deadlock (Node 20 key-generation job)', () => {
  const script = `
    import { generateSigner } from './src/core/crypto/signer.ts';
    for (let i = 0; i < 5000; i++) generateSigner('ecdsa').privateKey.export({ format: 'jwk' });
    process.stdout.write('done');
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    timeout: 120_000,
    encoding: 'utf8',
  });
  assert.equal(r.signal, null, `the child was stopped after 120 s (deadlocked?): ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'done');
});
