// The README's "check it" block, run as written against `npm start`'s code on a fresh data
// directory: only the server address and notary's trust directory are replaced (a free port and
// a temporary directory, so the suite never depends on port 4443 or a shared /tmp/trust).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand } from '../helpers/services.js';
import { startTrustgateProcess, type TrustgateProcess } from '../helpers/trustgate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The first ```sh block after `heading` in the README. */
function block(after: string): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(after);
  assert.ok(at >= 0, `README has "${after}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `a sh block after "${after}"`);
  return m[1]!;
}

let dir: string;
let tg: TrustgateProcess;
let listen: string;
before(async () => {
  dir = await makeTempDir('operator-readme');
  listen = `127.0.0.1:${await freePort()}`;
  // As `npm start` in a fresh clone: data/ and keys/ under the working directory, no passphrase.
  tg = await startTrustgateProcess(
    { TRUSTGATE_LISTEN: listen, TRUSTGATE_DATA_DIR: path.join(dir, 'data'), TRUSTGATE_KEYS_DIR: path.join(dir, 'keys') },
    path.join(dir, 'trustgate.log'),
  );
});
after(async () => {
  await tg?.proc.stop();
  await removeTempDir(dir);
});

test("the README's first-run block works as written on a fresh data directory", async () => {
  const script = block('Once the service is up, check it:')
    .replaceAll('127.0.0.1:4443', listen)
    .replaceAll('/tmp/trust', path.join(dir, 'trust'));
  assert.match(script, /notary -s http:\/\/127\.0\.0\.1:\d+ -d \S+ init example\.com\/app -p/);
  const r = await runCommand('bash', ['-euo', 'pipefail', '-c', script], {
    cwd: dir,
    // What the README says answers notary's passphrase prompts.
    env: {
      ...process.env,
      NOTARY_ROOT_PASSPHRASE: 'readme-root-passphrase',
      NOTARY_TARGETS_PASSPHRASE: 'readme-targets-passphrase',
      NOTARY_SNAPSHOT_PASSPHRASE: 'readme-snapshot-passphrase',
    },
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^\{\}/m, 'the health answer');
  assert.match(r.stdout + r.stderr, /No targets present in this repository/, 'notary list reads the new repository');
  // The repository is on the server, made with the admin token the first start wrote.
  const root = await fetch(`http://${listen}/v2/example.com/app/_trust/tuf/root.json`);
  assert.equal(root.status, 200);
});
