// The Containerfile, built and run with buildah (vfs storage, chroot isolation: no daemon, no
// Docker Hub). Its base image is assembled here: a minimal Debian bookworm from mmdebstrap plus
// this machine's Node runtime (the binary, npm and the headers, laid out as the official image
// has them under /usr/local) and its CA certificates. That base is cached between runs in
// $TRUSTGATE_TEST_CACHE_DIR (default ~/.cache/trustgate-test), keyed by Node version; so is npm's
// cache, mounted into the build, where the better-sqlite3 addon this checkout compiled is left as
// a prebuilt, as its install script would download one (TRUSTGATE_TEST_CONTAINER_FROM_SOURCE=1
// compiles it in the image instead). The image is then run with `buildah run` on a free
// loopback port (the chroot shares this machine's network), and must answer its health check
// from a process that is not root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForHttp } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, runCommand, runCommandOk, startProcess, tailFile, type ManagedProcess } from '../helpers/services.js';
import { until } from '../helpers/util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Bump when the base recipe below changes, so a cached base is not reused. */
const BASE_RECIPE = 1;
const NODE_PREFIX = path.dirname(path.dirname(process.execPath));
const CACHE = path.join(process.env.TRUSTGATE_TEST_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'trustgate-test'), 'container');
const IMAGE_UID = 10001;

/** Seconds since `t0`, for the timings reported. */
const since = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

/** The cached base root file system (a tar), made with mmdebstrap when missing. */
async function baseRootfs(): Promise<string> {
  const tar = path.join(CACHE, `base-bookworm-node-v${process.versions.node}-${process.arch}-r${BASE_RECIPE}.tar`);
  if (fs.existsSync(tar)) return tar;
  await fsp.mkdir(CACHE, { recursive: true });
  for (const p of ['bin/node', 'lib/node_modules/npm', 'include/node/node_version.h'])
    assert.ok(fs.existsSync(path.join(NODE_PREFIX, p)), `the Node runtime at ${NODE_PREFIX} has no ${p}`);
  const localCas = '/usr/local/share/ca-certificates';
  const hooks = [
    'mkdir -p "$1/usr/local/bin" "$1/usr/local/lib/node_modules" "$1/usr/local/include" "$1/usr/local/etc"',
    `copy-in ${path.join(NODE_PREFIX, 'bin/node')} /usr/local/bin`,
    `copy-in ${path.join(NODE_PREFIX, 'lib/node_modules/npm')} /usr/local/lib/node_modules`,
    `copy-in ${path.join(NODE_PREFIX, 'include/node')} /usr/local/include`,
    'ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"',
    'ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"',
    // This machine's extra CAs (e.g. a TLS-inspecting egress proxy), so npm reaches its registry.
    ...(fs.existsSync(localCas) && fs.readdirSync(localCas).length ? [`copy-in ${localCas} /usr/local/share`] : []),
    'chroot "$1" update-ca-certificates',
    'echo cafile=/etc/ssl/certs/ca-certificates.crt > "$1/usr/local/etc/npmrc"',
    'chroot "$1" node --version',
  ];
  const tmp = `${tar.slice(0, -'.tar'.length)}.${process.pid}.tmp.tar`; // mmdebstrap writes a tar for a .tar name
  try {
    await runCommandOk(
      'mmdebstrap',
      [
        '--variant=minbase',
        '--include=ca-certificates',
        // The mirror may serve a snapshot whose Release files are past their Valid-Until.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        ...['doc', 'man', 'info', 'locale'].map((d) => `--dpkgopt=path-exclude=/usr/share/${d}/*`),
        ...hooks.map((h) => `--customize-hook=${h}`),
        'bookworm',
        tmp,
        'http://deb.debian.org/debian',
      ],
      { timeoutMs: 600_000 },
    );
    await fsp.rename(tmp, tar);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  return tar;
}

/**
 * npm's cache for the build, with better-sqlite3's prebuilt addon where its install script looks
 * first (the file it would download), made from the addon this checkout compiled.
 */
async function npmCache(): Promise<string> {
  const dir = path.join(CACHE, 'npm');
  await fsp.mkdir(path.join(dir, '_prebuilds'), { recursive: true });
  if (process.env.TRUSTGATE_TEST_CONTAINER_FROM_SOURCE) {
    await fsp.rm(path.join(dir, '_prebuilds'), { recursive: true, force: true });
    return dir;
  }
  const require = createRequire(path.join(ROOT, 'package.json'));
  const pkgDir = path.dirname(require.resolve('better-sqlite3/package.json'));
  const pkg = require('better-sqlite3/package.json') as { name: string; version: string };
  const util = require('prebuild-install/util') as { getDownloadUrl(o: object): string; cachedPrebuild(url: string): string };
  const rc = (require('prebuild-install/rc') as (p: object) => object)(pkg);
  const url = util.getDownloadUrl({ ...rc, pkg });
  const file = path.join(dir, '_prebuilds', path.basename(util.cachedPrebuild(url)));
  if (!fs.existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    await runCommandOk('tar', ['-C', pkgDir, '-czf', tmp, 'build/Release/better_sqlite3.node']);
    await fsp.rename(tmp, file);
  }
  return dir;
}

/** The live processes under `root` (its children, theirs, …), from /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const todo = [root];
  for (let i = 0; i < 10_000 && todo.length; i++) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

const cmdline = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
};

/** Real, effective, saved and filesystem uid of a process. */
const uids = (pid: number) =>
  /^Uid:\s+(.*)$/m
    .exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!
    .split(/\s+/)
    .map(Number);

interface ImageConfig {
  User?: string;
  Cmd?: string[];
  WorkingDir?: string;
  Volumes?: Record<string, unknown>;
  ExposedPorts?: Record<string, unknown>;
  Env?: string[];
  Healthcheck?: { Test?: string[] };
}

test(
  'the container image builds from the Containerfile, runs as a non-root user and answers its health check',
  { timeout: 900_000 },
  async (t) => {
    const t0 = Date.now();
    const timings: string[] = [];
    const rootfs = await baseRootfs();
    timings.push(`base rootfs ${since(t0)}`);
    const dir = await makeTempDir('buildah');
    const store = ['--storage-driver', 'vfs', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot')];
    const buildah = (args: string[], timeoutMs = 120_000) => runCommandOk('buildah', [...store, ...args], { timeoutMs });
    const tag = `localhost/trustgate-test:${process.pid}`;
    const base = `localhost/trustgate-test-base:node-${process.versions.node}`;
    let run: ManagedProcess | undefined;
    let serverPid: number | undefined;
    try {
      let t1 = Date.now();
      const from = (await buildah(['from', 'scratch'])).stdout.trim();
      await buildah(['add', from, rootfs, '/'], 300_000);
      await buildah(['config', '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', from]);
      await buildah(['commit', '--rm', from, base], 300_000);
      timings.push(`base import ${since(t1)}`);

      t1 = Date.now();
      const cache = await npmCache();
      // docker format: the OCI image format has no HEALTHCHECK.
      await buildah(
        [
          'build',
          '--isolation',
          'chroot',
          '--format',
          'docker',
          '--jobs',
          '2',
          '--volume',
          `${cache}:/root/.npm`,
          '--build-arg',
          `BASE_IMAGE=${base}`,
          '-t',
          tag,
          '-f',
          path.join(ROOT, 'Containerfile'),
          ROOT,
        ],
        840_000,
      );
      timings.push(`image build ${since(t1)}`);

      const inspect = JSON.parse((await buildah(['inspect', '--type', 'image', tag])).stdout) as { Docker?: { config?: ImageConfig } };
      const cfg = inspect.Docker?.config ?? {};
      assert.equal(cfg.User, 'trustgate:trustgate');
      assert.deepEqual(cfg.Cmd, ['node', 'dist/main.js']);
      assert.equal(cfg.WorkingDir, '/app');
      assert.deepEqual(Object.keys(cfg.Volumes ?? {}).sort(), ['/var/lib/trustgate/data', '/var/lib/trustgate/keys']);
      assert.deepEqual(Object.keys(cfg.ExposedPorts ?? {}).sort(), ['4443/tcp', '5000/tcp']);
      assert.ok(cfg.Env?.includes('TRUSTGATE_DATA_DIR=/var/lib/trustgate/data'), String(cfg.Env));
      assert.deepEqual(cfg.Healthcheck?.Test, ['CMD', 'node', 'deploy/healthcheck.mjs']);

      t1 = Date.now();
      const ctr = (await buildah(['from', tag])).stdout.trim();
      // Only production dependencies: no compiler, no test tools.
      const listed = await buildah(['run', '--isolation', 'chroot', ctr, '--', 'sh', '-c', 'ls node_modules; ls node_modules/.bin']);
      for (const dev of ['typescript', 'tsx', 'eslint', 'prettier', 'supertest', 'vite', 'preact', 'playwright-core'])
        assert.ok(!listed.stdout.split('\n').includes(dev), `${dev} is in the image`);
      assert.ok(listed.stdout.split('\n').includes('better-sqlite3'));

      const port = await freePort();
      const env = [`TRUSTGATE_LISTEN=127.0.0.1:${port}`, 'TRUSTGATE_KEY_PASSPHRASE=container-test-passphrase', 'TRUSTGATE_LOG_LEVEL=info'];
      run = startProcess(
        'buildah',
        [...store, 'run', '--isolation', 'chroot', ...env.flatMap((e) => ['--env', e]), ctr, '--', 'node', 'dist/main.js'],
        {
          logFile: path.join(dir, 'run.log'),
          stopTimeoutMs: 10_000,
        },
      );
      const url = `http://127.0.0.1:${port}`;
      await waitForHttp(`${url}/_notary_server/health`, 60_000, { check: () => run!.assertAlive(), okStatus: (s) => s === 200 });
      timings.push(`start to healthy ${since(t1)}`);

      serverPid = await until(
        'the server process',
        () => descendants(run!.child.pid!).find((p) => /(^|\/)node dist\/main\.js$/.test(cmdline(p))),
        10_000,
      );
      assert.deepEqual(uids(serverPid), [IMAGE_UID, IMAGE_UID, IMAGE_UID, IMAGE_UID], 'the server runs as the image user');
      // SQLite, through the addon the image carries, in the data volume, owned by that user.
      assert.match(tailFile(run.logFile), /"storage":"sqlite"/);
      // The dashboard built in the build stage, served with its CSP.
      const ui = await fetch(`${url}/ui/`);
      assert.equal(ui.status, 200);
      assert.match(await ui.text(), /<script type="module" crossorigin src="\/ui\/assets\//);
      assert.match(ui.headers.get('content-security-policy') ?? '', /default-src 'self'/);

      // The HEALTHCHECK command itself, in the image: 0 while the server answers.
      const hc = await runCommand(
        'buildah',
        [...store, 'run', '--isolation', 'chroot', '--env', env[0]!, ctr, '--', 'node', 'deploy/healthcheck.mjs'],
        {
          timeoutMs: 30_000,
        },
      );
      assert.equal(hc.code, 0, hc.stderr);
      const down = await runCommand(
        'buildah',
        [
          ...store,
          'run',
          '--isolation',
          'chroot',
          '--env',
          `TRUSTGATE_LISTEN=127.0.0.1:${await freePort()}`,
          ctr,
          '--',
          'node',
          'deploy/healthcheck.mjs',
        ],
        { timeoutMs: 30_000 },
      );
      assert.equal(down.code, 1, 'the health check fails where nothing listens');
      timings.push(`total ${since(t0)}`);
      t.diagnostic(timings.join(', '));
    } catch (e) {
      if (run) t.diagnostic(`buildah run log:\n${tailFile(run.logFile)}`);
      throw e;
    } finally {
      await run?.stop();
      // The chroot may have put the server in a session of its own, out of reach of stop().
      if (serverPid) {
        try {
          process.kill(serverPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await runCommand('buildah', [...store, 'rm', '--all'], { timeoutMs: 60_000 });
      await removeTempDir(dir);
    }
  },
);
