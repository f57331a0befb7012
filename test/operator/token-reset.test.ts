// A lost admin token is recovered offline: `node dist/main.js reset-admin-token` (the server's
// entry point, here through tsx) on the store of a running server revokes every admin token and
// writes a new one, audited; the running server refuses the old token at once. With the data
// directory and with PostgreSQL.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cli } from '../cli/support.js';
import { makeTempDir, removeTempDir, runCommand, startPostgres, type PostgresService, type RunResult } from '../helpers/services.js';
import { startTrustgateProcess, trustgateCommand, type TrustgateProcess } from '../helpers/trustgate.js';

let work: string;
let pg: PostgresService | undefined;
before(async () => {
  work = await makeTempDir('operator-token-reset');
  pg = await startPostgres();
});
after(async () => {
  await pg?.stop();
  await removeTempDir(work);
});

/** The server entry point with `args`, run to its end with only `env`'s TRUSTGATE_* settings. */
function server(args: string[], env: Record<string, string>): Promise<RunResult> {
  const { cmd, args: base, opts } = trustgateCommand(env);
  return runCommand(cmd, [...base, ...args], { ...opts, timeoutMs: 60_000 });
}

/** `trustgate token create` with `token`: the CLI's answer. */
const createToken = (url: string, token: string, name: string) =>
  cli(url, token).run(['token', 'create', '--name', name, '--scope', 'reader']);

function tokenReset(name: string, settings: () => Record<string, string>) {
  describe(name, () => {
    let tg: TrustgateProcess;
    let env: Record<string, string>;
    let dataDir: string;
    before(async () => {
      dataDir = join(work, name.replace(/\W/g, ''), 'data');
      env = {
        TRUSTGATE_DATA_DIR: dataDir,
        TRUSTGATE_KEYS_DIR: join(work, name.replace(/\W/g, ''), 'keys'),
        TRUSTGATE_KEY_PASSPHRASE: 'reset-passphrase',
        ...settings(),
      };
      tg = await startTrustgateProcess(env, join(work, `${name.replace(/\W/g, '')}.log`));
    });
    after(() => tg?.proc.stop());

    test('reset-admin-token revokes the admin tokens of a running server and writes a new one, audited', async () => {
      const old = tg.adminToken!;
      assert.ok(old, 'the first start wrote an admin token');
      const before = await createToken(tg.url, old, 'before-reset');
      assert.equal(before.code, 0, before.stderr);

      // Run with the server's settings, except the data directory, which is given as the option.
      const { TRUSTGATE_DATA_DIR: _dir, ...rest } = env;
      const r = await server(['reset-admin-token', '--data-dir', dataDir], rest);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stderr,
        /^trustgate: revoked 1 admin token\(s\) \([0-9a-f]{16}\); new admin token [0-9a-f]{16} printed below and written to .*admin-token \(mode 0600\); the old ones no longer work, also on a running server\n$/,
      );
      const fresh = r.stdout.trim();
      assert.match(fresh, /^tgt_[A-Za-z0-9_-]{43}$/);
      const file = join(dataDir, 'admin-token');
      assert.equal(readFileSync(file, 'utf8').trim(), fresh);
      assert.equal(statSync(file).mode & 0o777, 0o600);

      // The running server: the old token is refused at once, the new one is admin.
      const refused = await createToken(tg.url, old, 'after-reset');
      assert.equal(refused.code, 3);
      assert.match(refused.stderr, /^trustgate: not authenticated: .*\(set --token or TRUSTGATE_TOKEN\)\n$/);
      const ok = await createToken(tg.url, fresh, 'after-reset');
      assert.equal(ok.code, 0, ok.stderr);

      const res = await fetch(`${tg.url}/api/v1/audit?action=token.reset`, { headers: { Authorization: `Bearer ${fresh}` } });
      assert.equal(res.status, 200);
      const entries = (
        (await res.json()) as { entries: Array<{ actor: { id: string }; outcome: string; detail: Record<string, unknown> }> }
      ).entries;
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.actor.id, 'local-admin');
      assert.equal(entries[0]!.outcome, 'success');
      assert.equal((entries[0]!.detail.revoked as string[]).length, 1);
      // A non-admin token survives the reset.
      const reader = /tgt_[A-Za-z0-9_-]{43}/.exec(before.stdout)?.[0];
      assert.ok(reader, before.stdout);
      const still = await fetch(`${tg.url}/api/v1/repositories`, { headers: { Authorization: `Bearer ${reader}` } });
      assert.equal(still.status, 200);
      await still.body?.cancel();
    });
  });
}

tokenReset('data directory', () => ({}));
tokenReset('PostgreSQL', () => ({ TRUSTGATE_DATABASE_URL: pg!.url }));

describe('reset-admin-token usage', () => {
  test('--help and help reset-admin-token explain it, within 100 columns', async () => {
    for (const args of [
      ['reset-admin-token', '--help'],
      ['help', 'reset-admin-token'],
    ]) {
      const r = await server(args, {});
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^trustgate reset-admin-token: revoke every admin token and write a new one/);
      assert.match(r.stdout, /\nexamples:\n {2}npm run reset-admin-token -- --data-dir /);
      for (const line of r.stdout.split('\n')) assert.ok(line.length <= 100, line);
    }
    const top = await server(['--help'], {});
    assert.match(top.stdout, /node dist\/main\.js reset-admin-token \[--data-dir DIR\]/);
  });

  test('a data directory that does not exist is refused with exit 2, and nothing is made', async () => {
    const missing = join(work, 'no-such-dir');
    const r = await server(['reset-admin-token', '--data-dir', missing], {});
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `trustgate: reset-admin-token: no data directory ${missing}: give the server's one with --data-dir (or TRUSTGATE_DATA_DIR)\n`,
    );
    assert.equal(r.stdout, '');
    assert.throws(() => statSync(missing));
  });

  test('the CLI, which only talks HTTP, points to the server command', async () => {
    const r = await cli(undefined, undefined).run(['admin', 'reset-token']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^trustgate: unknown command "admin reset-token": a lost admin token is reset on the server, with access to its store: npm run reset-admin-token -- --data-dir DIR \(docs\/operations\.md\)\n/,
    );
    const h = await cli(undefined, undefined).run(['--help']);
    assert.match(h.stdout, /Not here: a lost admin token is reset on the server/);
  });

  test('an unknown argument is refused with exit 2', async () => {
    const r = await server(['reset-admin-token', '--force'], {});
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'trustgate: reset-admin-token: unexpected argument "--force" (see reset-admin-token --help)\n');
  });

  test('an unreachable database is exit 1 with the cause', async () => {
    const r = await server(['reset-admin-token'], { TRUSTGATE_DATABASE_URL: 'postgres://trustgate@127.0.0.1:1/trustgate' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^trustgate: reset-admin-token: cannot reset the admin token: .*ECONNREFUSED/);
  });
});
