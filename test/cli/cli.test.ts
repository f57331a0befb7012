// The `trustgate` CLI as a CI job runs it: a child process against a running trustgate, with
// URL and token from the environment or flags, checking exit codes (0 ok, 3 denied/unsigned,
// 1 error, 2 usage), one-line errors, readable and JSON output, and progress on batches.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bearer, fakeDigest, newGun, startSigningServer, targetsOf, versions, type SigningServer } from '../signing/support.js';
import { unchanged } from '../helpers/unchanged.js';
import { cli, lines, type Cli } from './support.js';

let s: SigningServer;
let admin: Cli;
let dir: string;
before(async () => {
  s = await startSigningServer();
  admin = cli(s.tg.url, s.adminToken);
  dir = mkdtempSync(join(tmpdir(), 'trustgate-cli-'));
});
after(() => s.stop());

/** Asserts an exit code and that stderr is one line (when the command failed). */
function exits(r: { code: number | null; stdout: string; stderr: string }, code: number): void {
  assert.equal(r.code, code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  if (code !== 0) {
    const errs = lines(r.stderr).filter((l) => l.startsWith('trustgate:'));
    assert.equal(errs.length, 1, `one error line expected, got:\n${r.stderr}`);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  }
}

describe('usage and connection errors', () => {
  test('no command, unknown command, missing arguments and bad values exit 2 without contacting the server', async () => {
    exits(await admin.run([]), 2);
    exits(await admin.run(['frobnicate']), 2);
    exits(await admin.run(['sign', 'registry.example.com/app@' + fakeDigest('x')]), 2); // no --tag
    exits(await admin.run(['sign', 'registry.example.com/app:v1']), 2); // no digest
    const bad = await admin.run(['sign', 'registry.example.com/app@sha256:1234', '--tag', 'v1']);
    exits(bad, 2);
    assert.match(bad.stderr, /sha256:<64/);
    exits(await admin.run(['sign', `registry.example.com/app@${fakeDigest('x')}`, '--tag', 'bad/tag']), 2);
    exits(await admin.run(['sign', `registry.example.com/app@${fakeDigest('x')}`, '--tag', 'v1', '--size', '0']), 2);
    exits(await admin.run(['verify', 'registry.example.com/app', '--nope']), 2);
    // Option names are looked up as own entries: Object.prototype's members are unknown options too.
    for (const name of ['constructor', 'toString', '__proto__']) {
      const r = await admin.run(['verify', 'registry.example.com/app:v1', `--${name}`]);
      exits(r, 2);
      assert.match(r.stderr, new RegExp(`unknown option --${name}`));
      exits(await admin.run([`--${name}`, 'verify', 'registry.example.com/app:v1']), 2);
    }
    const help = await admin.run(['--help']);
    exits(help, 0);
    assert.match(help.stdout, /^ {2}sign +sign an image digest/m);
    const signHelp = await admin.run(['help', 'sign']);
    exits(signHelp, 0);
    assert.match(signHelp.stdout, /sign IMAGE@DIGEST/);
  });

  test('no server URL: exit 2; an unreachable server: exit 1 with a one-line reason', async () => {
    const none = await cli(undefined, undefined).run(['verify', 'registry.example.com/app:v1']);
    exits(none, 2);
    assert.match(none.stderr, /TRUSTGATE_URL/);
    const down = await cli('http://127.0.0.1:9', 'x').run(['verify', 'registry.example.com/app:v1']);
    exits(down, 1);
    assert.match(down.stderr, /cannot reach trustgate/);
  });

  test('a missing or wrong token is denied: exit 3', async () => {
    const r = await cli(s.tg.url, undefined).run(['verify', 'registry.example.com/app:v1']);
    exits(r, 3);
    assert.match(r.stderr, /not authenticated/);
    const w = await cli(s.tg.url, 'tgt_' + 'A'.repeat(43)).run(['inspect', 'registry.example.com/app']);
    exits(w, 3);
  });
});

describe('a repository from init to revoke', () => {
  const gun = newGun('cli');
  const d1 = fakeDigest('cli v1');

  test('repo init, sign, verify (0), verify an unsigned tag (3), inspect as a table and as JSON', async () => {
    const init = await admin.run(['repo', 'init', gun]);
    exits(init, 0);
    assert.match(init.stdout, /initialised trust/);

    const signed = await admin.run(['sign', `${gun}@${d1}`, '--tag', 'v1', '--size', '321']);
    exits(signed, 0);
    assert.match(signed.stdout, /signed 1 tag\(s\) in targets of .*: v1; targets is now version 2/);
    assert.deepEqual((await targetsOf(s, gun))!.targets.v1!.length, 321);

    const ok = await admin.run(['verify', `${gun}:v1`]);
    exits(ok, 0);
    assert.match(ok.stdout, new RegExp(`is signed: ${d1}`));
    const okJson = JSON.parse((await admin.run(['verify', `${gun}:v1`, '--json'])).stdout);
    assert.equal(okJson.verdict, 'signed');
    assert.equal(okJson.roles[0].role, 'targets');

    const no = await admin.run(['verify', `${gun}:v2`]);
    exits(no, 3);
    assert.match(no.stderr, /not trusted: not-signed/);
    const wrong = await admin.run(['verify', `${gun}:v1@${fakeDigest('other')}`]);
    exits(wrong, 3);
    assert.match(wrong.stderr, /digest-mismatch/);

    const table = await admin.run(['inspect', gun]);
    exits(table, 0);
    const out = table.stdout;
    assert.match(out, new RegExp(`^\\nSignatures for ${gun.replace(/[.]/g, '\\.')}\\n`));
    assert.match(out, /^SIGNED TAG\s+DIGEST\s+SIGNERS$/m);
    assert.match(out, new RegExp(`^v1\\s+${d1.slice(7)}\\s+\\(Repo Admin\\)$`, 'm'));
    assert.match(out, /^Administrative keys for /m);
    assert.match(out, /^ {2}Repository Key:\t[0-9a-f]{64}$/m);
    const j = JSON.parse((await admin.run(['inspect', gun, '--json'])).stdout);
    assert.deepEqual(j.signedTags, [{ tag: 'v1', digest: d1, size: 321, signers: ['Repo Admin'] }]);
  });

  test('a token that may only read is denied signing: exit 3, nothing published', async () => {
    const reader = cli(s.tg.url, s.token([`reader:${gun}`]));
    const r = await unchanged(s, gun, () => reader.run(['sign', `${gun}@${fakeDigest('x')}`, '--tag', 'v9', '--size', '5']));
    exits(r, 3);
    assert.match(r.stderr, /denied/);
    exits(await reader.run(['verify', `${gun}:v1`]), 0);
  });

  test('server-side refusals are errors (exit 1): an unknown role, nothing published', async () => {
    const r = await unchanged(s, gun, () =>
      admin.run(['sign', `${gun}@${fakeDigest('x')}`, '--tag', 'v9', '--size', '5', '--role', 'targets/nope']),
    );
    exits(r, 1);
    assert.match(r.stderr, /ROLE_NOT_FOUND/);
  });

  test('one digest under several tags is one publish', async () => {
    const before = await versions(s, gun);
    const r = await admin.run(['sign', `${gun}@${fakeDigest('multi')}`, '-t', 'a', '-t', 'b', '--tag', 'c', '--size', '9']);
    exits(r, 0);
    assert.equal((await versions(s, gun)).targets, before.targets! + 1);
  });

  test('a batch file of 1,000 tags: progress on stderr, one new version, all tags signed', async () => {
    const before = await versions(s, gun);
    const file = join(dir, 'batch.json');
    writeFileSync(
      file,
      JSON.stringify({
        gun,
        items: Array.from({ length: 1000 }, (_, i) => ({ tag: `b-${i}`, digest: fakeDigest(`b${i}`), size: 1000 + i })),
      }),
    );
    const r = await admin.run(['sign', '--batch', file]);
    exits(r, 0);
    assert.match(r.stderr, /checked 1000 item\(s\); signing in 1 request/);
    assert.match(r.stderr, /\[1\/1\] 1000\/1000 \(100%\) published: targets v\d+/);
    assert.equal((await versions(s, gun)).targets, before.targets! + 1);
    assert.equal(Object.keys((await targetsOf(s, gun))!.targets).filter((t) => t.startsWith('b-')).length, 1000);
    // --chunk splits it into several publishes, reported one by one.
    const file2 = join(dir, 'batch2.json');
    writeFileSync(
      file2,
      JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ image: `${gun}@${fakeDigest(`c${i}`)}`, tag: `c-${i}`, size: 10 }))),
    );
    const r2 = await admin.run(['sign', '--batch', file2, '--chunk', '10']);
    exits(r2, 0);
    assert.equal(lines(r2.stderr).filter((l) => /^\[\d\/3\]/.test(l)).length, 3);
    // A bad line is reported with its index and nothing is sent.
    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        gun,
        items: [
          { tag: 'ok', digest: fakeDigest('ok'), size: 1 },
          { tag: 'no', digest: 'sha256:zz', size: 1 },
        ],
      }),
    );
    const rb = await unchanged(s, gun, () => admin.run(['sign', '--batch', bad]));
    exits(rb, 2);
    assert.match(rb.stderr, /items\[1\]\.digest/);
  });

  test('revoke, then the tag no longer verifies', async () => {
    exits(await admin.run(['revoke', `${gun}:v1`]), 0);
    exits(await admin.run(['verify', `${gun}:v1`]), 3);
    const again = await admin.run(['revoke', `${gun}:v1`]);
    exits(again, 1);
    assert.match(again.stderr, /TAG_NOT_FOUND/);
  });
});

describe('sign reports the tags it signed', () => {
  const gun = newGun('cli-count');
  const esc = (x: string) => x.replace(/[.]/g, '\\.');

  test('one new tag in a role that lists 3 says "signed 1 tag(s)" and names it; a batch of 2 says 2 and names both', async () => {
    exits(await admin.run(['repo', 'init', gun]), 0);
    exits(await admin.run(['sign', `${gun}@${fakeDigest('old')}`, '-t', 'a', '-t', 'b', '-t', 'c', '--size', '7']), 0);
    assert.equal(Object.keys((await targetsOf(s, gun))!.targets).length, 3);

    const one = await admin.run(['sign', `${gun}@${fakeDigest('new')}`, '--tag', 'v4', '--size', '8']);
    exits(one, 0);
    const v = (await versions(s, gun)).targets;
    assert.equal(lines(one.stdout)[0], `signed 1 tag(s) in targets of ${gun}: v4; targets is now version ${v}`);
    assert.doesNotMatch(one.stdout, /signed 4 tag/);

    const file = join(dir, 'count.json');
    writeFileSync(
      file,
      JSON.stringify({
        gun,
        items: [
          { tag: 'v5', digest: fakeDigest('v5'), size: 9 },
          { tag: 'v6', digest: fakeDigest('v6'), size: 9 },
        ],
      }),
    );
    const two = await admin.run(['sign', '--batch', file]);
    exits(two, 0);
    assert.match(two.stdout, new RegExp(`^signed 2 tag\\(s\\) in targets of ${esc(gun)}: v5, v6; targets is now version ${v! + 1}$`, 'm'));
    assert.match(two.stdout, new RegExp(`^  ${esc(gun)}:v5 -> ${fakeDigest('v5')} \\(9 bytes\\)$`, 'm'));
    assert.equal(Object.keys((await targetsOf(s, gun))!.targets).length, 6);

    // Several -t tags of one digest: each is named once.
    const multi = await admin.run(['sign', `${gun}@${fakeDigest('m')}`, '-t', 'x', '-t', 'y', '--size', '3']);
    exits(multi, 0);
    assert.match(multi.stdout, /^signed 2 tag\(s\) in targets of .*: x, y; /m);
  });
});

describe('keys, signers and tokens', () => {
  const gun = newGun('cli-keys');
  before(async () => {
    exits(await admin.run(['repo', 'init', gun]), 0);
  });

  test('key list shows the roles and where each key is held', async () => {
    const r = await admin.run(['key', 'list', gun]);
    exits(r, 0);
    assert.match(r.stdout, /^ROLE\s+KEY ID\s+ALGORITHM\s+HELD/m);
    assert.match(r.stdout, /^targets\s+[0-9a-f]{64}\s+/m);
    assert.match(r.stdout, /^root\s+[0-9a-f]{64}\s+/m);
    const j = JSON.parse((await admin.run(['key', 'list', gun, '--json'])).stdout);
    assert.ok(j.keys.some((k: { role: string }) => k.role === 'snapshot'));
  });

  test('key rotate gives targets a new key; key export writes an encrypted PEM (0600); key import stores a key made elsewhere', async () => {
    const before = JSON.parse((await admin.run(['key', 'list', gun, '--json'])).stdout).keys.filter(
      (k: { role: string; inMetadata: boolean }) => k.role === 'targets' && k.inMetadata,
    );
    exits(await admin.run(['key', 'rotate', gun, 'targets']), 0);
    const after = JSON.parse((await admin.run(['key', 'list', gun, '--json'])).stdout).keys.filter(
      (k: { role: string; inMetadata: boolean }) => k.role === 'targets' && k.inMetadata,
    );
    assert.notDeepEqual(
      after.map((k: { id: string }) => k.id),
      before.map((k: { id: string }) => k.id),
    );

    const pass = join(dir, 'pass');
    writeFileSync(pass, 'correct horse battery\n');
    const out = join(dir, 'targets.key');
    const id = after[0].id as string;
    exits(await admin.run(['key', 'export', gun, id, '-o', out, '--passphrase-file', pass]), 0);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.match(readFileSync(out, 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
    const noPass = await admin.run(['key', 'export', gun, id, '-o', join(dir, 'x.key')], { env: { TRUSTGATE_PASSPHRASE: undefined } });
    exits(noPass, 2);

    // Import a key made elsewhere (a notary-style PKCS#8 PEM, unencrypted) for targets.
    const fresh = join(dir, 'fresh.key');
    const { generateKeyPairSync } = await import('node:crypto');
    writeFileSync(
      fresh,
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    );
    const imp = await admin.run(['key', 'import', gun, fresh, '--role', 'targets']);
    exits(imp, 0);
    assert.match(imp.stdout, /imported key/);
  });

  test('signer add --generate delegates targets/<name> and targets/releases; signer remove takes it away', async () => {
    const add = await admin.run(['signer', 'add', gun, 'alice', '--generate']);
    exits(add, 0);
    assert.match(add.stdout, /added signer alice/);
    const j = JSON.parse((await admin.run(['inspect', gun, '--json'])).stdout);
    assert.deepEqual(
      j.signers.map((x: { name: string }) => x.name),
      ['alice'],
      'targets/releases is not a signer (docker hides it)',
    );
    exits(await admin.run(['signer', 'remove', gun, 'alice']), 0);
    const k = JSON.parse((await admin.run(['inspect', gun, '--json'])).stdout);
    assert.ok(!k.signers.some((x: { name: string }) => x.name === 'alice'));
  });

  test('token create prints a token that works with its scope and no more', async () => {
    const r = await admin.run(['token', 'create', '--name', 'ci-reader', '--scope', `reader:${gun}`]);
    exits(r, 0);
    const token = r.stdout.trim();
    assert.match(token, /^tgt_[A-Za-z0-9_-]{43}$/);
    const res = await s.agent.get('/api/v1/signing/inspect').query({ gun }).set(bearer(token));
    assert.equal(res.status, 200);
    const viaFlag = await cli(s.tg.url, undefined).run(['--token', token, 'inspect', gun]);
    exits(viaFlag, 0);
    exits(await cli(s.tg.url, token).run(['sign', `${gun}@${fakeDigest('t')}`, '--tag', 'x', '--size', '1']), 3);
    exits(await admin.run(['token', 'create', '--name', 'bad', '--scope', 'root']), 1);
    exits(await admin.run(['token', 'create', '--name', 'nameonly']), 2);
  });
});
