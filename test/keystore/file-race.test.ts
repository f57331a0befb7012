import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { FileKeyStore } from '../../src/keystore/file.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';

// Several processes opening one empty keys directory at once must agree on one keystore.json,
// or keys made by one could not be decrypted by the others.
test('processes racing to create the file keystore all end up with the same one', async () => {
  const dir = await makeTempDir('keystore-race');
  try {
    const script = `import { FileKeyStore } from ${JSON.stringify(new URL('../../src/keystore/file.ts', import.meta.url).pathname)};
const s = FileKeyStore.open(process.argv[1], 'race-passphrase');
const rec = await s.generate('example.com/race', 'timestamp', 'ecdsa');
console.log(rec.id);`;
    const runs = Array.from(
      { length: 6 },
      () =>
        new Promise<string>((resolve, reject) => {
          const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], {
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let out = '';
          let err = '';
          p.stdout.on('data', (c) => (out += c));
          p.stderr.on('data', (c) => (err += c));
          p.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err))));
        }),
    );
    const ids = await Promise.all(runs);
    const store = FileKeyStore.open(dir, 'race-passphrase');
    for (const id of ids) {
      const signer = await store.signer(id);
      assert.ok(signer, `key ${id} made by a racing process opens in the shared keystore`);
      assert.equal((await signer.sign(Buffer.from('x'))).length, 64);
    }
  } finally {
    await removeTempDir(dir);
  }
});
