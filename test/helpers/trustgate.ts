// The one place tests start trustgate: in this process (`startTrustgate`: the same createApp
// that `npm start` uses, on an http server of its own) or as a process of its own
// (`startTrustgateProcess`: `node --import tsx src/main.ts`), each on a free loopback port with
// its own data and keys directories.
import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp, type App, type AppOverrides } from '../../src/app.js';
import type { AuditLog } from '../../src/audit/log.js';
import { FileAuditTrail } from '../../src/audit/trail.js';
import { TokenStore } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config/config.js';
import { createServer } from '../../src/http/server.js';
import { createLogger, type Level } from '../../src/observability/log.js';
import { freePort, waitForHttp } from './ports.js';
import { makeTempDir, removeTempDir, startProcess, tailFile, type ManagedProcess } from './services.js';
import { until } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningTrustgate {
  app: App;
  url: string;
  port: number;
  dir: string;
  /** An admin token (the first-start one in <dataDir>/admin-token, else a new one) for the Notary and management APIs. */
  adminToken: string;
  /** A new token with these scopes (and, for signers, the keystore keys it may sign with). */
  token(scopes: string[], opts?: { keyIds?: string[]; name?: string }): string;
  /** The data directory's audit log (synchronous, for assertions); throws for an app that keeps it in PostgreSQL. */
  readonly auditLog: AuditLog;
  /** The data directory's token file (synchronous); throws for an app that keeps tokens in PostgreSQL. */
  readonly tokenFile: TokenStore;
  /** token() through the app's token store, wherever it keeps tokens (PostgreSQL too). */
  tokenAsync(scopes: string[], opts?: { keyIds?: string[]; name?: string }): Promise<string>;
  /** The server's clock (`overrides.now` when given, else the wall clock moved by `advance`). */
  now(): number;
  /** Moves the server's clock forward (or back) by ms; no effect when `overrides.now` was given. */
  advance(ms: number): void;
  /** The log lines written, when `logs` asked for them. */
  logs: string[];
  stop(): Promise<void>;
}

export interface TrustgateOptions {
  /** TRUSTGATE_* settings over the test defaults (temporary directories, a fixed passphrase, log level error). */
  env?: Record<string, string>;
  /** Serve https with this certificate. */
  tls?: { cert: string; key: string };
  overrides?: AppOverrides;
  /** The data and keys directory to use (for restarts); it is then kept on stop. */
  dir?: string;
  /** Listen on this port (when the configuration must name the URL before start), else a free one. */
  port?: number;
  /** Collect log lines from this level up into `logs` (instead of stderr). */
  logs?: Level;
}

/** `Authorization` header values for a trustgate token. */
export const bearer = (token: string) => `Bearer ${token}`;
export const basicAuth = (token: string, user = 'trustgate') => `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}`;

/**
 * Settings for the registry token scheme with trustgate's own token endpoint: `certs` (from
 * makeTestCerts) sign and verify the tokens, `users` is the users file, `realm` the URL clients
 * are sent to for a token.
 */
export function tokenAuthEnv(o: {
  certs: { caCert: string; cert: string; key: string };
  users: string;
  realm: string;
  service: string;
  issuer: string;
}): Record<string, string> {
  return {
    TRUSTGATE_AUTH: 'token',
    TRUSTGATE_AUTH_REALM: o.realm,
    TRUSTGATE_AUTH_SERVICE: o.service,
    TRUSTGATE_AUTH_ISSUER: o.issuer,
    TRUSTGATE_AUTH_ROOT_CERT_BUNDLE: o.certs.caCert,
    TRUSTGATE_AUTH_TOKEN_KEY: o.certs.key,
    TRUSTGATE_AUTH_TOKEN_CERT: o.certs.cert,
    TRUSTGATE_AUTH_USERS: o.users,
  };
}

let tokens = 0;

const newTokenOpts = (scopes: string[], opts: { keyIds?: string[]; name?: string }) => ({
  name: opts.name ?? `test-${++tokens}`,
  scopes: scopes as never,
  ...(opts.keyIds ? { keyIds: opts.keyIds } : {}),
  createdBy: 'test',
});

/** The data directory's token file of each app, for synchronous token(). */
const tokenFiles = new WeakMap<App, TokenStore>();

function tokenFileOf(app: App): TokenStore {
  if (app.config.databaseUrl) throw new Error('this app keeps tokens in PostgreSQL: use tokenAsync()');
  let file = tokenFiles.get(app);
  if (!file) tokenFiles.set(app, (file = new TokenStore(app.config.dataDir)));
  return file;
}

function auditLogOf(app: App): AuditLog {
  const a = app.management.audit;
  if (!(a instanceof FileAuditTrail)) throw new Error('this app keeps its audit log in PostgreSQL');
  return a.log;
}

/** A new token in an app's data directory (the app reads it on the next request). */
function newToken(app: App, scopes: string[], opts: { keyIds?: string[]; name?: string } = {}): string {
  return tokenFileOf(app).create(newTokenOpts(scopes, opts)).token;
}

async function newTokenAsync(app: App, scopes: string[], opts: { keyIds?: string[]; name?: string } = {}): Promise<string> {
  return (await app.management.tokens.create(newTokenOpts(scopes, opts))).token;
}

/** The admin token of an app: the first-start file when it is there, else a new token. */
async function adminTokenOf(app: App): Promise<string> {
  return firstStartToken(app.config.dataDir) ?? newTokenAsync(app, ['admin'], { name: 'test-admin' });
}

const firstStartToken = (dataDir: string): string | undefined => {
  const file = path.join(dataDir, 'admin-token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
};

/** The app `npm start` builds, served over http (or https with `tls`) on loopback. */
export async function startTrustgate(opts: TrustgateOptions = {}): Promise<RunningTrustgate> {
  const dir = opts.dir ?? (await makeTempDir('trustgate'));
  let offset = 0;
  const now = opts.overrides?.now ?? (() => Date.now() + offset);
  const logs: string[] = [];
  const config = loadConfig({
    TRUSTGATE_LISTEN: '127.0.0.1:0',
    TRUSTGATE_DATA_DIR: `${dir}/data`,
    TRUSTGATE_KEYS_DIR: `${dir}/keys`,
    TRUSTGATE_KEY_PASSPHRASE: 'test-keystore-passphrase',
    TRUSTGATE_LOG_LEVEL: opts.logs ?? 'error',
    ...opts.env,
  });
  const app = await createApp(config, {
    ...(opts.logs ? { log: createLogger(opts.logs, (l) => logs.push(l)) } : {}),
    ...opts.overrides,
    now,
  });
  const server = createServer(
    config.http,
    opts.tls ? { cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) } : undefined,
    app.listener,
  );
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    app,
    port,
    dir,
    adminToken: await adminTokenOf(app),
    get auditLog() {
      return auditLogOf(app);
    },
    get tokenFile() {
      return tokenFileOf(app);
    },
    token: (scopes, o) => newToken(app, scopes, o),
    tokenAsync: (scopes, o) => newTokenAsync(app, scopes, o),
    now,
    advance: (ms) => void (offset += ms),
    logs,
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await app.close();
      tokenFiles.get(app)?.lock.close();
      if (!opts.dir) await removeTempDir(dir);
    },
  };
}

/**
 * The command line of `npm start`'s code (`node --import tsx src/main.ts`) with only `env`'s
 * TRUSTGATE_* settings, not the caller's: for runCommand when the run is expected to end.
 */
export function trustgateCommand(env: Record<string, string>): {
  cmd: string;
  args: string[];
  opts: { cwd: string; env: NodeJS.ProcessEnv };
} {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRUSTGATE_')));
  return { cmd: process.execPath, args: ['--import', 'tsx', 'src/main.ts'], opts: { cwd: ROOT, env: { ...clean, ...env } } };
}

export interface TrustgateProcess {
  url: string;
  proc: ManagedProcess;
  /** The first-start admin token of TRUSTGATE_DATA_DIR, when given and made. */
  adminToken?: string;
}

export interface ProcessOptions {
  /** How long to wait for the health check (default 60 s). */
  timeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopTimeoutMs?: number;
  /** Also wait until the log matches this (e.g. the primary's "trustgate listening"). */
  logLine?: RegExp;
  /** Do not wait: return as soon as the process is spawned (for runs expected to fail). */
  noWait?: boolean;
}

/**
 * `npm start`'s code as a process of its own, logging to `logFile`, on TRUSTGATE_LISTEN (default:
 * a free loopback port); resolves once its health check answers 200.
 */
export async function startTrustgateProcess(
  env: Record<string, string>,
  logFile: string,
  opts: ProcessOptions = {},
): Promise<TrustgateProcess> {
  const listen = env.TRUSTGATE_LISTEN ?? `127.0.0.1:${await freePort()}`;
  const { cmd, args, opts: run } = trustgateCommand({ TRUSTGATE_LISTEN: listen, ...env });
  const proc = startProcess(cmd, args, { ...run, logFile, ...(opts.stopTimeoutMs ? { stopTimeoutMs: opts.stopTimeoutMs } : {}) });
  const url = `http://${listen}`;
  if (opts.noWait) return { url, proc };
  const timeout = opts.timeoutMs ?? 60_000;
  try {
    await waitForHttp(`${url}/_notary_server/health`, timeout, { check: () => proc.assertAlive(), okStatus: (s) => s === 200 });
    const line = opts.logLine;
    if (line)
      await until(`the log to show ${line}`, () => line.test(tailFile(logFile, 1 << 20)), timeout, { check: () => proc.assertAlive() });
  } catch (e) {
    await proc.stop();
    throw new Error(`trustgate (${logFile}) did not start: ${(e as Error).message}\n${tailFile(logFile)}`);
  }
  const adminToken = env.TRUSTGATE_DATA_DIR ? firstStartToken(env.TRUSTGATE_DATA_DIR) : undefined;
  return { url, proc, ...(adminToken ? { adminToken } : {}) };
}
