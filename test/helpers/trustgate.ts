// Starts a real trustgate (the same createApp that `npm start` uses) on a free loopback port,
// with its own temporary data and keys directories.
import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp, type App, type AppOverrides } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { createServer } from '../../src/http/server.js';
import { freePort, waitForHttp } from './ports.js';
import { makeTempDir, removeTempDir, startProcess, tailFile, type ManagedProcess } from './services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningTrustgate {
  app: App;
  url: string;
  port: number;
  dir: string;
  /** An admin token (the first-start one in <dataDir>/admin-token, else a new one) for the Notary and management APIs. */
  adminToken: string;
  stop(): Promise<void>;
}

/** `Authorization` header values for a trustgate token. */
export const bearer = (token: string) => `Bearer ${token}`;
export const basicAuth = (token: string, user = 'trustgate') => `Basic ${Buffer.from(`${user}:${token}`).toString('base64')}`;

/** The admin token of an app: the first-start file when it is there, else a new token. */
export function adminTokenOf(app: App): string {
  const file = path.join(app.config.dataDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  return app.management.tokens.create({ name: 'test-admin', scopes: ['admin'], createdBy: 'test' }).token;
}

export async function startTrustgate(
  opts: { env?: Record<string, string>; tls?: { cert: string; key: string }; overrides?: AppOverrides; dir?: string } = {},
): Promise<RunningTrustgate> {
  const dir = opts.dir ?? (await makeTempDir('trustgate'));
  const config = loadConfig({
    TRUSTGATE_LISTEN: '127.0.0.1:0',
    TRUSTGATE_DATA_DIR: `${dir}/data`,
    TRUSTGATE_KEYS_DIR: `${dir}/keys`,
    TRUSTGATE_KEY_PASSPHRASE: 'test-keystore-passphrase',
    TRUSTGATE_LOG_LEVEL: 'error',
    ...opts.env,
  });
  const app = await createApp(config, opts.overrides);
  const server = createServer(config.http, opts.tls ? { cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) } : undefined, app.listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    app,
    port,
    dir,
    adminToken: adminTokenOf(app),
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await app.close();
      if (!opts.dir) await removeTempDir(dir);
    },
  };
}

/**
 * `npm start`'s code (`node --import tsx src/main.ts`) as a process of its own on a free loopback
 * port, logging to `logFile`; resolves once its health check answers 200. Only `env`'s
 * TRUSTGATE_* settings apply, not the caller's. `adminToken`: the first-start token of
 * TRUSTGATE_DATA_DIR, when given.
 */
export async function startTrustgateProcess(env: Record<string, string>, logFile: string): Promise<{ url: string; proc: ManagedProcess; adminToken?: string }> {
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRUSTGATE_')));
  const proc = startProcess(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...clean, TRUSTGATE_LISTEN: `127.0.0.1:${port}`, ...env },
    logFile,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/_notary_server/health`, 60_000, { check: () => proc.assertAlive(), okStatus: (s) => s === 200 });
  } catch (e) {
    await proc.stop();
    throw new Error(`trustgate (${logFile}) did not start: ${(e as Error).message}\n${tailFile(logFile)}`);
  }
  // The first-start admin token, when the data directory is known and it made one.
  const tokenFile = env.TRUSTGATE_DATA_DIR ? path.join(env.TRUSTGATE_DATA_DIR, 'admin-token') : undefined;
  const adminToken = tokenFile && existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined;
  return { url, proc, ...(adminToken ? { adminToken } : {}) };
}
