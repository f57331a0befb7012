// Key material hygiene: after a real notary CLI session against trustgate (keys made, used and
// rotated on the server), neither the logs nor the HTTP answers nor the files at rest contain a
// private key's bytes or the key-encryption passphrase; a wrong passphrase is refused without
// being echoed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FileKeyStore } from '../../src/keystore/file.js';
import { openKeyStore } from '../../src/keystore/open.js';
import { loadConfig } from '../../src/config/config.js';
import type { KeyStore } from '../../src/keystore/types.js';
import { makeTempDir, removeTempDir } from '../helpers/services.js';
import { startTrustgate } from '../helpers/trustgate.js';
import { notaryCli } from '../helpers/notary-cli.js';

const PASSPHRASE = 'hygiene-passphrase-6f2c91';

/** Every textual form in which a stored private key could leak. */
async function secretForms(keys: KeyStore): Promise<string[]> {
  const out: string[] = [];
  for (const rec of await keys.list()) {
    const k = await keys.exportPrivate(rec.id);
    const der = k.export({ format: 'der', type: 'pkcs8' });
    const jwk = k.export({ format: 'jwk' });
    out.push(der.toString('base64'), der.toString('hex'), der.toString('base64').slice(24, 64));
    if (jwk.d) out.push(jwk.d, Buffer.from(jwk.d, 'base64url').toString('hex'), Buffer.from(jwk.d, 'base64url').toString('base64'));
    der.fill(0);
  }
  return out;
}

async function readTree(dir: string): Promise<string> {
  let out = '';
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out += await fsp.readFile(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name), 'latin1');
  }
  return out;
}

test('no key bytes or passphrase in logs, responses or key files after a notary session', async () => {
  const logs: string[] = [];
  const tg = await startTrustgate({
    env: { TRUSTGATE_KEY_PASSPHRASE: PASSPHRASE, TRUSTGATE_LOG_LEVEL: 'debug' },
    overrides: { log: (level, msg, fields) => logs.push(JSON.stringify({ level, msg, ...fields })) },
  });
  const cli = await notaryCli({ server: tg.url, token: tg.adminToken });
  const gun = 'example.com/hygiene/app';
  const responses: string[] = [];
  try {
    assert.equal(tg.app.keys.kind, 'file');
    await cli.runOk(['init', gun, '-p']);
    await cli.runOk(['key', 'rotate', gun, 'snapshot', '-r']);
    await cli.runOk(['key', 'rotate', gun, 'timestamp', '-r']);
    const file = path.join(cli.trustDir, 'artifact');
    await fsp.writeFile(file, 'x');
    await cli.runOk(['add', gun, 'v1', file]);
    await cli.runOk(['publish', gun]);
    for (const f of ['root.json', 'targets.json', 'snapshot.json', 'timestamp.json', 'timestamp.key', 'snapshot.key']) {
      responses.push(await (await fetch(`${tg.url}/v2/${gun}/_trust/tuf/${f}`)).text());
    }
    responses.push(await (await fetch(`${tg.url}/v2/${gun}/_trust/tuf/timestamp.key`, { method: 'POST' })).text());
    // An error path, too: a bad publish body.
    responses.push(
      await (
        await fetch(`${tg.url}/v2/${gun}/_trust/tuf/`, {
          method: 'POST',
          body: 'junk',
          headers: { 'Content-Type': 'multipart/form-data; boundary=x' },
        })
      ).text(),
    );

    const forms = await secretForms(tg.app.keys);
    assert.ok(forms.length >= 9, 'the server holds timestamp and snapshot keys');
    const logText = logs.join('\n');
    const respText = responses.join('\n');
    const atRest = await readTree(path.join(tg.dir, 'keys'));
    assert.ok(atRest.includes('ciphertext'), 'the key files were read');
    for (const f of forms) {
      assert.ok(!logText.includes(f), 'key bytes in the logs');
      assert.ok(!respText.includes(f), 'key bytes in a response');
      assert.ok(!atRest.includes(f), 'key bytes at rest unencrypted');
    }
    assert.ok(!logText.includes(PASSPHRASE) && !respText.includes(PASSPHRASE) && !atRest.includes(PASSPHRASE));
  } finally {
    await cli.cleanup();
    await tg.stop();
  }
});

test('a wrong key-encryption passphrase is refused without echoing either passphrase', async () => {
  const dir = await makeTempDir('hygiene-pass');
  try {
    const config = loadConfig({ TRUSTGATE_KEYS_DIR: path.join(dir, 'keys'), TRUSTGATE_DATA_DIR: path.join(dir, 'data') });
    const first = await openKeyStore(config, () => PASSPHRASE);
    await first.keys.generate('example.com/hygiene/p', 'timestamp', 'ecdsa');
    await first.close();
    const wrong = 'wrong-passphrase-b71';
    await assert.rejects(
      openKeyStore(config, () => wrong),
      (e: Error) =>
        /wrong key-encryption passphrase/.test(e.message) &&
        !e.message.includes(wrong) &&
        !e.message.includes(PASSPHRASE) &&
        !(e.stack ?? '').includes(wrong),
    );
    assert.throws(
      () => FileKeyStore.open(path.join(dir, 'keys'), wrong),
      (e: Error) => !String(e).includes(wrong),
    );
  } finally {
    await removeTempDir(dir);
  }
});
