// Start/stop REAL external services (docker-registry, PostgreSQL, Redis,
// notary-server, SoftHSM2) for integration tests. Each service lives in its
// own mkdtemp directory, listens on 127.0.0.1 only, logs stdout+stderr to
// <tmp>/<name>.log, and runs in its own process group so stop() can kill the
// whole tree. Set TRUSTGATE_TEST_KEEP_TMP=1 to keep the temp dirs for debugging.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, waitForHttp, waitForPort } from './ports.js';

// ---------------------------------------------------------------------------
// Generic process helpers (also used by oci.ts, notary-cli.ts, tls.ts)
// ---------------------------------------------------------------------------

export interface RunOptions {
  cwd?: string;
  /** Full environment for the child (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then stdin is closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Kill the process group after this long (default 60s). */
  timeoutMs?: number;
  uid?: number;
  gid?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run a command to completion with a hard timeout; never rejects on non-zero exit. */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      // 'ignore' gives the child /dev/null, so interactive prompts hit EOF instead of hanging.
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // own process group, so a timeout kills grandchildren too
      uid: opts.uid,
      gid: opts.gid,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`failed to spawn ${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {}); // child may exit before reading; EPIPE is not our failure
      child.stdin.end(opts.input);
    }
  });
}

/** Like runCommand but throws (with stdout/stderr) unless the exit code is 0. */
export async function runCommandOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (code=${r.code} signal=${r.signal}${r.timedOut ? ' TIMED OUT' : ''})\n` +
        `--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
    );
  }
  return r;
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: group already gone.
  }
}

// Safety net: if a test forgets stop(), don't leave daemons behind after node exits.
const live = new Set<number>();
process.once('exit', () => {
  for (const pid of live) killGroup(pid, 'SIGKILL');
});

export interface ManagedProcess {
  child: ChildProcess;
  logFile: string;
  /** Throws (with the log tail) if the process has already exited. */
  assertAlive(): void;
  /** Signal the process group, wait for exit, escalate to SIGKILL. Idempotent. */
  stop(): Promise<void>;
}

export interface StartProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
  uid?: number;
  gid?: number;
  /** Signal for graceful stop (default SIGTERM). */
  stopSignal?: NodeJS.Signals;
  /** How long to wait after stopSignal before SIGKILL (default 5s). */
  stopTimeoutMs?: number;
}

/** Spawn a long-running daemon with stdout+stderr appended to logFile. */
export function startProcess(cmd: string, args: readonly string[], opts: StartProcessOptions): ManagedProcess {
  const fd = fs.openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
      detached: true,
      uid: opts.uid,
      gid: opts.gid,
    });
  } finally {
    fs.closeSync(fd); // the child holds its own copy
  }
  const pid = child.pid;
  if (pid) live.add(pid);
  child.unref(); // a forgotten stop() must not keep the test runner alive

  let exitInfo: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = `exited code=${code} signal=${signal}`;
      resolve();
    });
    child.once('error', (e) => {
      exitInfo = `spawn error: ${e.message}`;
      resolve();
    });
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo === null) {
        killGroup(pid, opts.stopSignal ?? 'SIGTERM');
        const graceful = await within(exited, opts.stopTimeoutMs ?? 5000);
        if (!graceful) {
          killGroup(pid, 'SIGKILL');
          await within(exited, 2000);
        }
      }
      killGroup(pid, 'SIGKILL'); // reap any straggling group members
      if (pid) live.delete(pid);
    })();
    return stopping;
  };

  return {
    child,
    logFile: opts.logFile,
    assertAlive() {
      if (exitInfo !== null) {
        throw new Error(`${cmd} ${exitInfo}\n--- ${opts.logFile} (tail) ---\n${tailFile(opts.logFile)}`);
      }
    },
    stop,
  };
}

/** Resolve true if `p` settles within `ms`, else false; clears its timer so it never holds the event loop open. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Last `bytes` of a file, for error messages. */
export function tailFile(file: string, bytes = 4000): string {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
  } catch {
    return '(no log)';
  }
}

/** mkdtemp under os.tmpdir(), prefixed so leftovers are easy to spot. */
export function makeTempDir(name: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `trustgate-${name}-`));
}

/** rm -rf, unless TRUSTGATE_TEST_KEEP_TMP is set. */
export async function removeTempDir(dir: string): Promise<void> {
  if (process.env.TRUSTGATE_TEST_KEEP_TMP) return;
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Start a daemon, wait for readiness, and on any failure clean up and rethrow with the log tail. */
async function launch(
  dir: string,
  cmd: string,
  args: readonly string[],
  opts: Omit<StartProcessOptions, 'logFile'> & { logName: string },
  ready: (proc: ManagedProcess) => Promise<void>,
): Promise<ManagedProcess> {
  const proc = startProcess(cmd, args, { ...opts, logFile: path.join(dir, opts.logName) });
  try {
    await ready(proc);
    return proc;
  } catch (e) {
    const log = tailFile(proc.logFile);
    await proc.stop();
    await removeTempDir(dir);
    throw new Error(`${path.basename(cmd)} did not become ready: ${(e as Error).message}\n--- log tail ---\n${log}`);
  }
}

/** A handle to a running service. */
export interface Service {
  url: string;
  /** Temp directory holding data, config and logs. */
  dir: string;
  logFile: string;
  stop(): Promise<void>;
}

function stopAndClean(proc: ManagedProcess, dir: string): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= proc.stop().then(() => removeTempDir(dir)));
}

// ---------------------------------------------------------------------------
// docker-registry (distribution v2)
// ---------------------------------------------------------------------------

export interface RegistryService extends Service {
  /** host:port, as used in image references (127.0.0.1:PORT/ns/app:tag). */
  host: string;
  port: number;
}

export async function startRegistry(): Promise<RegistryService> {
  const dir = await makeTempDir('registry');
  const port = await freePort();
  const storage = path.join(dir, 'storage');
  await fsp.mkdir(storage);
  // Minimal config; JSON-quoted scalars are valid YAML. No auth, deletes on,
  // background upload purging and storage health checks off (less noise/timers).
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(storage)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
    '  secret: trustgate-test-secret',
    'health:',
    '  storagedriver:',
    '    enabled: false',
    '',
  ].join('\n');
  const configFile = path.join(dir, 'config.yml');
  await fsp.writeFile(configFile, config);
  // REGISTRY_* env vars override the config file; drop any inherited ones.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
  const url = `http://127.0.0.1:${port}`;
  const proc = await launch(dir, 'docker-registry', ['serve', configFile], { env, logName: 'registry.log' }, (p) =>
    waitForHttp(`${url}/v2/`, 20_000, { check: () => p.assertAlive(), okStatus: (s) => s === 200 }),
  );
  return { url, host: `127.0.0.1:${port}`, port, dir, logFile: proc.logFile, stop: stopAndClean(proc, dir) };
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/** Directory holding initdb/postgres: $PG_BINDIR, else newest /usr/lib/postgresql/N/bin, else PATH. */
function pgBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = '/usr/lib/postgresql';
  try {
    const versions = fs
      .readdirSync(root)
      .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(root, versions[0], 'bin');
  } catch {
    // not a Debian-style install
  }
  return '';
}

/** uid/gid of an OS user from /etc/passwd. */
function lookupUser(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no passwd file
  }
  return null;
}

export interface PostgresService extends Service {
  /** postgres://postgres@127.0.0.1:PORT/trustgate */
  url: string;
  host: string;
  port: number;
  user: string;
  database: string;
  /** Stops the server (fast shutdown: sessions are ended), keeping its data; not for an external server. */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port and data; resolves once it accepts connections. */
  resume(): Promise<void>;
}

/**
 * Fresh throwaway PostgreSQL cluster (trust auth, fsync off) with database `trustgate`.
 * If TRUSTGATE_TEST_DATABASE_URL is set, that server is used instead and stop() is a no-op
 * (tests must then clean up their own tables).
 */
export async function startPostgres(): Promise<PostgresService> {
  const external = process.env.TRUSTGATE_TEST_DATABASE_URL;
  if (external) {
    const u = new URL(external);
    return {
      url: external,
      host: u.hostname,
      port: Number(u.port || 5432),
      user: decodeURIComponent(u.username),
      database: u.pathname.replace(/^\//, ''),
      dir: '',
      logFile: '',
      stop: async () => {},
      halt: () => Promise.reject(new Error('an external PostgreSQL (TRUSTGATE_TEST_DATABASE_URL) is not restarted by tests')),
      resume: () => Promise.reject(new Error('an external PostgreSQL is not restarted by tests')),
    };
  }

  const bin = pgBinDir();
  const exe = (name: string): string => (bin ? path.join(bin, name) : name);
  const dir = await makeTempDir('postgres');
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  await fsp.mkdir(sock);

  // PostgreSQL refuses to run as root: run initdb/postgres as the `postgres` OS user
  // (spawn's uid/gid options, equivalent to `runuser -u postgres --`).
  let ids: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    const pgUser = lookupUser('postgres');
    if (!pgUser) throw new Error('running as root but there is no `postgres` OS user to run PostgreSQL as');
    ids = pgUser;
    for (const p of [dir, sock]) await fsp.chown(p, pgUser.uid, pgUser.gid);
  }
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir, LC_ALL: 'C', LANG: 'C', PGDATA: data };
  delete env.PGHOST;
  delete env.PGPORT;
  delete env.PGDATABASE;
  delete env.PGUSER;
  delete env.PGPASSWORD;

  try {
    await runCommandOk(
      exe('initdb'),
      ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { env, timeoutMs: 120_000, ...ids },
    );
  } catch (e) {
    await removeTempDir(dir);
    throw e;
  }

  const port = await freePort();
  const args = [
    '-D',
    data,
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-k',
    sock,
    // Durability is pointless for throwaway test data; these make it much faster.
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=200',
  ];
  const ready = async (p: ManagedProcess, create: boolean) => {
    await waitForPort(port, 30_000, { check: () => p.assertAlive() });
    // The port opens before recovery finishes; pg_isready exit 0 means "accepting connections".
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      p.assertAlive();
      const r = await runCommand(exe('pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'], { env, timeoutMs: 5000 });
      if (r.code === 0) {
        if (create)
          await runCommandOk(exe('createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'trustgate'], {
            env,
            timeoutMs: 30_000,
          });
        return;
      }
      await sleep(100);
    }
    throw new Error('pg_isready never succeeded');
  };
  // SIGINT = "fast" shutdown (SIGTERM would wait for clients to disconnect).
  const opts = { env, logName: 'postgres.log', stopSignal: 'SIGINT' as const, ...ids };
  let proc = await launch(dir, exe('postgres'), args, opts, (p) => ready(p, true));
  let halted = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/trustgate`,
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'trustgate',
    dir,
    logFile: proc.logFile,
    stop: async () => {
      if (!halted) await stopAndClean(proc, dir)();
      else await removeTempDir(dir);
    },
    async halt() {
      await proc.stop();
      halted = true;
    },
    async resume() {
      proc = startProcess(exe('postgres'), args, { ...opts, logFile: path.join(dir, opts.logName) });
      halted = false;
      await ready(proc, false);
    },
  };
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

export interface RedisService extends Service {
  /** redis://127.0.0.1:PORT */
  url: string;
  host: string;
  port: number;
}

/** redis-server on loopback, no RDB/AOF persistence. */
export async function startRedis(): Promise<RedisService> {
  const dir = await makeTempDir('redis');
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--logfile',
    '', // '' = stdout, which goes to our log file
  ];
  const proc = await launch(dir, 'redis-server', args, { logName: 'redis.log' }, (p) =>
    waitForPort(port, 15_000, { check: () => p.assertAlive() }),
  );
  return { url: `redis://127.0.0.1:${port}`, host: '127.0.0.1', port, dir, logFile: proc.logFile, stop: stopAndClean(proc, dir) };
}

// ---------------------------------------------------------------------------
// Reference notary-server
// ---------------------------------------------------------------------------

export interface NotaryServerOptions {
  /** Serve https with this cert/key (PEM paths). */
  tls?: { cert: string; key: string; /** CA to trust when probing readiness. */ caCert?: string };
}

export interface NotaryServerService extends Service {
  /** http(s)://127.0.0.1:PORT */
  url: string;
  port: number;
}

/** The reference notary-server with in-memory storage and a local (in-process) signer. */
export async function startNotaryServer(opts: NotaryServerOptions = {}): Promise<NotaryServerService> {
  const dir = await makeTempDir('notary-server');
  const port = await freePort();
  const server: Record<string, string> = { http_addr: `127.0.0.1:${port}` };
  if (opts.tls) {
    server.tls_cert_file = opts.tls.cert;
    server.tls_key_file = opts.tls.key;
  }
  const config = {
    server,
    trust_service: { type: 'local' },
    storage: { backend: 'memory' },
    logging: { level: 'error' },
  };
  const configFile = path.join(dir, 'server-config.json');
  await fsp.writeFile(configFile, JSON.stringify(config, null, 2));
  const scheme = opts.tls ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${port}`;
  const ca = opts.tls?.caCert ? await fsp.readFile(opts.tls.caCert) : undefined;
  const proc = await launch(dir, 'notary-server', ['-config', configFile], { logName: 'notary-server.log' }, (p) =>
    opts.tls && !ca
      ? waitForPort(port, 20_000, { check: () => p.assertAlive() })
      : waitForHttp(`${url}/_notary_server/health`, 20_000, { ca, check: () => p.assertAlive(), okStatus: (s) => s === 200 }),
  );
  return { url, port, dir, logFile: proc.logFile, stop: stopAndClean(proc, dir) };
}

// ---------------------------------------------------------------------------
// SoftHSM2
// ---------------------------------------------------------------------------

/** Path of libsofthsm2.so: $SOFTHSM2_MODULE, well-known paths, else `dpkg -L`. */
export async function findSoftHsmModule(): Promise<string> {
  const candidates = [
    process.env.SOFTHSM2_MODULE,
    '/usr/lib/softhsm/libsofthsm2.so',
    `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/softhsm/libsofthsm2.so`,
    '/usr/local/lib/softhsm/libsofthsm2.so',
  ];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  // Debian 12 ships the .so in package libsofthsm2 (softhsm2 depends on it).
  for (const pkg of ['libsofthsm2', 'softhsm2']) {
    const r = await runCommand('dpkg', ['-L', pkg], { timeoutMs: 10_000 }).catch(() => null);
    const hit = r?.stdout.split('\n').find((l) => l.endsWith('/libsofthsm2.so') && fs.existsSync(l));
    if (hit) return hit;
  }
  throw new Error('libsofthsm2.so not found (install softhsm2 or set SOFTHSM2_MODULE)');
}

export interface SoftHsm {
  /** PKCS#11 module path (libsofthsm2.so). */
  module: string;
  /** softhsm2.conf path; must be in SOFTHSM2_CONF of whatever process loads the module. */
  conf: string;
  label: string;
  pin: string;
  soPin: string;
  /** Slot id the token was reassigned to (SoftHSM renumbers slots on init). */
  slot: string | null;
  dir: string;
  /** process.env plus SOFTHSM2_CONF, for child processes. */
  env: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

/** Create a private SoftHSM2 token store with one initialized token. */
export async function initSoftHsm(opts: { label?: string; pin?: string; soPin?: string } = {}): Promise<SoftHsm> {
  const label = opts.label ?? 'trustgate';
  const pin = opts.pin ?? '1234';
  const soPin = opts.soPin ?? '5678';
  const dir = await makeTempDir('softhsm');
  const tokens = path.join(dir, 'tokens');
  await fsp.mkdir(tokens);
  const conf = path.join(dir, 'softhsm2.conf');
  await fsp.writeFile(
    conf,
    [`directories.tokendir = ${tokens}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'),
  );
  const env: NodeJS.ProcessEnv = { ...process.env, SOFTHSM2_CONF: conf };
  try {
    const module = await findSoftHsmModule();
    const r = await runCommandOk('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], {
      env,
      timeoutMs: 30_000,
    });
    const slot = /reassigned to slot (\d+)/.exec(r.stdout)?.[1] ?? null;
    return { module, conf, label, pin, soPin, slot, dir, env, cleanup: () => removeTempDir(dir) };
  } catch (e) {
    await removeTempDir(dir);
    throw e;
  }
}
