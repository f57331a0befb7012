// The `trustgate` CLI answers --help and --version for every command and group, and
// `trustgate help <command>`; help stays within 100 columns and shows examples. `backup -o` to a
// file that exists fails before the server makes a copy.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cli, type Cli } from '../cli/support.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const offline = cli(undefined, undefined);

const COMMANDS = [
  'sign',
  'verify',
  'inspect',
  'revoke',
  'promote',
  'attest',
  'repo init',
  'repo trust-reset',
  'key list',
  'key rotate',
  'key export',
  'key import',
  'signer add',
  'signer remove',
  'token create',
  'backup',
];

function narrow(text: string): void {
  for (const l of text.split('\n')) assert.ok(l.length <= 100, `over 100 columns (${l.length}): ${l}`);
}

test('trustgate --version and -V print the package version, also after a command', async () => {
  for (const args of [['--version'], ['-V'], ['key', 'list', '--version']]) {
    const r = await offline.run(args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `trustgate ${pkg.version}\n`);
  }
});

test('trustgate --help lists every command within 100 columns', async () => {
  const r = await offline.run(['--help']);
  assert.equal(r.code, 0);
  narrow(r.stdout);
  for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^ {2}${c} +\\S`, 'm'), c);
  assert.match(r.stdout, /examples:/);
  assert.deepEqual((await offline.run(['help'])).stdout, r.stdout);
});

test('every command: --help and `help <command>` give usage, examples, within 100 columns', async () => {
  for (const c of COMMANDS) {
    const words = c.split(' ');
    const a = await offline.run([...words, '--help']);
    assert.equal(a.code, 0, `${c}: ${a.stderr}`);
    assert.match(a.stdout, new RegExp(`^usage: trustgate ${c}`), c);
    assert.match(a.stdout, /\nexamples:\n {2}\S/, `${c} has examples`);
    narrow(a.stdout);
    const b = await offline.run(['help', ...words]);
    assert.equal(b.code, 0);
    assert.equal(b.stdout, a.stdout, `help ${c} is ${c} --help`);
  }
});

test('a group: `key --help` lists its commands (exit 0); `key` alone lists them on stderr (exit 2)', async () => {
  const r = await offline.run(['key', '--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const c of ['key list', 'key rotate', 'key export', 'key import']) assert.match(r.stdout, new RegExp(`trustgate ${c} `));
  narrow(r.stdout);
  const bare = await offline.run(['key']);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /trustgate key list REPO/);
  assert.match(bare.stderr, /trustgate: key needs a command/);
  const unknown = await offline.run(['help', 'nope']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "nope"/);
});

let tg: RunningTrustgate;
before(async () => {
  tg = await startTrustgate();
});
after(async () => {
  await tg?.stop();
});

test('backup -o an existing file fails before the server copies the store', async () => {
  const admin: Cli = cli(tg.url, tg.adminToken);
  const file = join(tg.dir, 'exists.db');
  writeFileSync(file, 'keep me');
  const r = await admin.run(['backup', '-o', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^trustgate: cannot write .*exists\.db: it exists already/);
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
  assert.equal((await tg.app.management.audit.query({ action: 'backup.create' })).length, 0, 'the server made no copy');
  // A new file still works.
  const ok = await admin.run(['backup', '-o', join(tg.dir, 'new.db')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await tg.app.management.audit.query({ action: 'backup.create' })).length, 1);
});
