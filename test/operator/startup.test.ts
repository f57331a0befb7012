// Start-up failures as an operator meets them, with the real server process (`npm start`'s code):
// each is one line naming the cause and the fix, exit 2 for a setting and 1 for the rest, and no
// stack trace unless TRUSTGATE_LOG_LEVEL=debug.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand, startRedis, type RunResult } from '../helpers/services.js';
import { startTrustgateProcess, trustgateCommand } from '../helpers/trustgate.js';
import { until } from '../helpers/util.js';

let work: string;
before(async () => {
  work = await makeTempDir('operator-startup');
});
after(async () => {
  await removeTempDir(work);
});

/** Runs the server to its end (these starts are expected to fail). */
async function start(env: Record<string, string>, args: string[] = []): Promise<RunResult> {
  const { cmd, args: base, opts } = trustgateCommand({ TRUSTGATE_LISTEN: `127.0.0.1:${await freePort()}`, ...env });
  return runCommand(cmd, [...base, ...args], { ...opts, timeoutMs: 60_000 });
}

/** One message line, no stack frames. */
function oneLine(r: RunResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('trustgate:'));
  assert.equal(lines.length, 1, `one trustgate: line expected:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace:\n${r.stderr}`);
  return lines[0]!;
}

const dirs = (name: string) => ({ TRUSTGATE_DATA_DIR: join(work, name, 'data'), TRUSTGATE_KEYS_DIR: join(work, name, 'keys') });

describe('keystore passphrase', () => {
  let env: ReturnType<typeof dirs>;
  before(async () => {
    env = dirs('pass');
    // A first start sets the keystore up under a passphrase, then stops.
    const tg = await startTrustgateProcess({ ...env, TRUSTGATE_KEY_PASSPHRASE: 'the-right-one' }, join(work, 'pass.log'));
    await tg.proc.stop();
  });

  test('a wrong passphrase: exit 2, names TRUSTGATE_KEY_PASSPHRASE and the keys directory, no stack', async () => {
    const r = await start({ ...env, TRUSTGATE_KEY_PASSPHRASE: 'a-wrong-one' });
    assert.equal(r.code, 2, r.stderr);
    const line = oneLine(r);
    assert.match(line, /TRUSTGATE_KEY_PASSPHRASE/);
    assert.ok(line.includes(env.TRUSTGATE_KEYS_DIR), line);
    assert.match(line, /not the one its keys were sealed with/);
  });

  test('a missing passphrase: refused, and no keystore.secret is generated', async () => {
    const r = await start(env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(oneLine(r), /TRUSTGATE_KEY_PASSPHRASE is not set .* already holds keys: set TRUSTGATE_KEY_PASSPHRASE/);
    assert.doesNotMatch(r.stderr, /generated a key-encryption secret/);
    assert.equal(existsSync(join(env.TRUSTGATE_DATA_DIR, 'keystore.secret')), false);
  });

  test('TRUSTGATE_LOG_LEVEL=debug adds the stack trace', async () => {
    const r = await start({ ...env, TRUSTGATE_KEY_PASSPHRASE: 'a-wrong-one', TRUSTGATE_LOG_LEVEL: 'debug' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^\s+at /m);
  });
});

describe('keyv keystore passphrase', () => {
  test('a missing passphrase on a keyv keystore that holds keys: refused, and the secret made for it is removed', async () => {
    const redis = await startRedis();
    try {
      const env = { ...dirs('keyv'), TRUSTGATE_KEYSTORE: 'keyv', TRUSTGATE_KEYSTORE_URL: redis.url };
      const tg = await startTrustgateProcess({ ...env, TRUSTGATE_KEY_PASSPHRASE: 'the-right-one' }, join(work, 'keyv.log'));
      await tg.proc.stop();
      const r = await start(env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLine(r), /TRUSTGATE_KEY_PASSPHRASE is not set, but the keyv keystore at TRUSTGATE_KEYSTORE_URL already holds keys/);
      assert.equal(existsSync(join(env.TRUSTGATE_DATA_DIR, 'keystore.secret')), false, 'no stray keystore.secret');
    } finally {
      await redis.stop();
    }
  });
});

describe('environment and files', () => {
  test('the port in use: exit 1, names the address and TRUSTGATE_LISTEN', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const r = await start({ ...dirs('port'), TRUSTGATE_KEY_PASSPHRASE: 'p', TRUSTGATE_LISTEN: `127.0.0.1:${port}` });
      assert.equal(r.code, 1, r.stderr);
      const line = oneLine(r);
      assert.match(line, new RegExp(`cannot listen on http://127\\.0\\.0\\.1:${port}: the address is already in use`));
      assert.match(line, /set TRUSTGATE_LISTEN to a free address/);
    } finally {
      holder.close();
    }
  });

  test("the proxy's port in use: exit 1, names TRUSTGATE_PROXY_LISTEN", async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const r = await start({
        ...dirs('proxyport'),
        TRUSTGATE_KEY_PASSPHRASE: 'p',
        TRUSTGATE_UPSTREAM: `http://127.0.0.1:${await freePort()}`,
        TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${port}`,
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(oneLine(r), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*set TRUSTGATE_PROXY_LISTEN to a free address`));
    } finally {
      holder.close();
    }
  });

  test('a data directory that is a file: exit 1, names it and TRUSTGATE_DATA_DIR', async () => {
    const file = join(work, 'not-a-dir');
    writeFileSync(file, 'x');
    const r = await start({ TRUSTGATE_DATA_DIR: file, TRUSTGATE_KEYS_DIR: join(work, 'store-keys'), TRUSTGATE_KEY_PASSPHRASE: 'p' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(oneLine(r), /cannot use the data directory .*not-a-dir: ENOTDIR.*TRUSTGATE_DATA_DIR/);
  });

  test('a keys directory that cannot be made: exit 1, names the keystore', async () => {
    const file = join(work, 'keys-file');
    writeFileSync(file, 'x');
    const r = await start({
      TRUSTGATE_DATA_DIR: join(work, 'kf', 'data'),
      TRUSTGATE_KEYS_DIR: join(file, 'keys'),
      TRUSTGATE_KEY_PASSPHRASE: 'p',
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(oneLine(r), /cannot open the keystore in .*keys-file\/keys \(TRUSTGATE_KEYS_DIR\)/);
  });

  test('missing TLS files: exit 2, names both settings', async () => {
    const r = await start({
      ...dirs('tls'),
      TRUSTGATE_KEY_PASSPHRASE: 'p',
      TRUSTGATE_TLS_CERT: join(work, 'nope.crt'),
      TRUSTGATE_TLS_KEY: join(work, 'nope.key'),
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(oneLine(r), /cannot load the TLS certificate .*nope\.crt.*\(TRUSTGATE_TLS_CERT, TRUSTGATE_TLS_KEY\): ENOENT/);
  });
});

describe('configuration', () => {
  test('TRUSTGATE_UPSTREAM=localhost:5000 asks for the scheme, not a path', async () => {
    const r = await start({ ...dirs('up'), TRUSTGATE_UPSTREAM: 'localhost:5000' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /TRUSTGATE_UPSTREAM must be a URL with its scheme, e\.g\. http:\/\/localhost:5000/);
    assert.doesNotMatch(r.stderr, /without a path|must be an http/);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });

  test('a bad value: exit 2, named', async () => {
    const r = await start({ ...dirs('bad'), TRUSTGATE_LOG_LEVEL: 'loud' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /TRUSTGATE_LOG_LEVEL must be one of debug, info, warn, error, got "loud"/);
  });

  test('a misspelt variable is warned about with the closest name; an unreachable upstream is flagged; stopping is logged', async () => {
    const log = join(work, 'warn.log');
    const tg = await startTrustgateProcess(
      {
        ...dirs('warn'),
        TRUSTGATE_KEY_PASSPHRASE: 'p',
        TRUSTGATE_KEY_PASSPHRSE: 'typo',
        TRUSTGATE_UPSTREAM: `http://127.0.0.1:${await freePort()}`,
        TRUSTGATE_PROXY_LISTEN: `127.0.0.1:${await freePort()}`,
      },
      log,
      { logLine: /the upstream registry does not answer/ },
    );
    const text = readFileSync(log, 'utf8');
    assert.match(text, /TRUSTGATE_KEY_PASSPHRSE is not a trustgate setting and is ignored \(did you mean TRUSTGATE_KEY_PASSPHRASE\?\)/);
    assert.match(
      text,
      /"level":"warn","msg":"the upstream registry does not answer[^"]*","upstream":"http:\/\/127\.0\.0\.1:\d+","error":"ECONNREFUSED"/,
    );
    await tg.proc.stop();
    await until(
      'the shutdown line',
      () => /"msg":"shutting down: no new connections, finishing requests in flight","signal":"SIGTERM"/.test(readFileSync(log, 'utf8')),
      10_000,
    );
  });
});

describe('--help and --version', () => {
  test('--help prints the settings and examples within 100 columns, starts nothing, exits 0', async () => {
    const dir = dirs('help');
    const r = await start(dir, ['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /usage: node dist\/main\.js/);
    assert.match(r.stdout, /examples:\n {2}npm start/);
    for (const l of r.stdout.split('\n')) assert.ok(l.length <= 100, `over 100 columns: ${l}`);
    assert.equal(existsSync(dir.TRUSTGATE_DATA_DIR), false, 'no data directory was made');
  });

  test('--version prints the package version; an unknown argument is exit 2', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const v = await start(dirs('v'), ['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout, `trustgate ${pkg.version}\n`);
    const bad = await start(dirs('v'), ['--port=1']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown argument "--port=1".*see --help/);
  });
});
