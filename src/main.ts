// Entry point for `npm start`: read configuration, open storage and keys, and listen.
// A TLS certificate that fails to load stops the start; it never falls back to plain HTTP.
// With TRUSTGATE_WORKERS > 1 this process becomes the cluster primary (src/cluster/primary.ts)
// and each worker it forks runs serve() below.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createApp } from './app.js';
import { runResetAdminToken } from './auth/admin-reset.js';
import { runPrimary } from './cluster/primary.js';
import { joinCluster, reportReady } from './cluster/worker.js';
import { loadConfig, StartupError, type Config } from './config/config.js';
import { checkUpstream, listenFailure, reportStartFailure, serverArgs } from './config/startup.js';
import { createServer, drain } from './http/server.js';
import { createLogger } from './observability/log.js';
import { removeLeftoverBackups } from './storage/backup-dirs.js';
import { startProxy } from './proxy/index.js';

const listenUrl = (config: Config, tls: boolean) =>
  `${tls ? 'https' : 'http'}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'reset-admin-token' || (argv[0] === 'help' && argv[1] === 'reset-admin-token')) {
    const rest = argv[0] === 'help' ? ['--help'] : argv.slice(1);
    process.exitCode = await runResetAdminToken(rest, (env) => {
      const c = loadConfig(env);
      return { dataDir: c.dataDir, databaseUrl: c.databaseUrl };
    });
    return;
  }
  const args = serverArgs(argv);
  if (args) {
    if (args.out) process.stdout.write(args.out);
    if (args.err) process.stderr.write(args.err);
    process.exitCode = args.exit;
    return;
  }
  const config = loadConfig();
  let tlsOptions: https.ServerOptions | undefined;
  if (config.tls) {
    try {
      tlsOptions = { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) };
      // Parse now, so a bad pair fails here rather than on the first connection.
      https.createServer(tlsOptions);
    } catch (e) {
      throw new StartupError(
        `cannot load the TLS certificate ${config.tls.cert} or key ${config.tls.key} (TRUSTGATE_TLS_CERT, TRUSTGATE_TLS_KEY): ${(e as Error).message}; give a readable PEM certificate and its private key`,
        2,
        e,
      );
    }
  }
  if (cluster.isPrimary) {
    const log = createLogger(config.logLevel);
    for (const w of config.warnings ?? []) log('warn', w);
    if (config.workersNote) log('info', config.workersNote);
    const prepare = async () => {
      const app = await createApp(config, { log });
      await app.close();
      return { storage: app.store.kind, keystore: app.keys.kind };
    };
    if (config.workers > 1) return runPrimary(config, { workers: config.workers, url: listenUrl(config, !!tlsOptions), log, prepare });
  }
  await serve(config, tlsOptions);
}

/** One serving process: the whole service, or one cluster worker. */
async function serve(config: Config, tlsOptions: https.ServerOptions | undefined): Promise<void> {
  const worker = cluster.isWorker;
  // One process alone on its data directory (a worker's primary has done this before forking).
  if (!worker)
    await removeLeftoverBackups(config.dataDir, createLogger(config.logLevel)).catch((e: Error) => {
      throw new StartupError(
        `cannot use the data directory ${config.dataDir}: ${e.message}; check that TRUSTGATE_DATA_DIR is a directory this user may write`,
        1,
        e,
      );
    });
  const app = await createApp(config);
  if (worker) joinCluster(app);
  const server = createServer(config.http, tlsOptions, app.listener);
  let listening!: () => void;
  const listened = new Promise<void>((resolve) => (listening = resolve));
  server.on('error', (e: NodeJS.ErrnoException) => {
    if (!server.listening) return fail(listenFailure(e, 'TRUSTGATE_LISTEN', listenUrl(config, !!tlsOptions)));
    app.log('error', 'server error', { error: e.message });
    process.exit(1);
  });
  // A worker reports to the primary, which logs the service's start once.
  server.listen(config.listen.port, config.listen.host, () => {
    listening();
    if (worker) return;
    app.log('info', 'trustgate listening', {
      url: listenUrl(config, !!tlsOptions),
      storage: app.store.kind,
      keystore: app.keys.kind,
    });
  });
  // The verifying registry proxy, when an upstream registry is configured.
  const proxy = config.proxy
    ? await startProxy(app, {
        ...(app.signing.cosignHook ? { cosign: app.signing.cosignHook } : {}),
        ...(app.signing.attestationHook ? { attestations: app.signing.attestationHook } : {}),
      }).catch((e: NodeJS.ErrnoException) => {
        const at = config.proxy!.listen;
        if (e.syscall === 'listen') throw listenFailure(e, 'TRUSTGATE_PROXY_LISTEN', `${at.host}:${at.port}`);
        throw new StartupError(`cannot start the registry proxy: ${e.message}`, 2, e);
      })
    : undefined;
  const proxyInfo = proxy ? { url: proxy.url, upstream: config.proxy!.upstream, policy: proxy.policy.current().source } : undefined;
  if (proxyInfo && !worker) {
    app.log('info', 'registry proxy listening', proxyInfo);
    void checkUpstream(config.proxy!.upstream, app.log);
  }
  // SIGTERM: not ready from now on, no new connections, requests in flight finish (within
  // TRUSTGATE_SHUTDOWN_TIMEOUT_SECONDS, then their connections are closed), exit 0.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    app.probes.draining = true;
    const timeoutMs = config.shutdownTimeoutMs;
    app.log('info', 'shutting down: no new connections, finishing requests in flight', { signal, pid: process.pid, timeoutMs });
    const servers = [server, ...(proxy ? [proxy.server] : [])];
    const overdue = setTimeout(() => {
      app.log('warn', 'shutdown timeout: closing connections still in use', { timeoutMs });
      for (const s of servers) s.closeAllConnections();
    }, timeoutMs);
    void Promise.all(servers.map((s) => drain(s)))
      .then(() => clearTimeout(overdue))
      .then(() => proxy?.close())
      .then(() => app.close())
      .catch((e: Error) => app.log('warn', 'shutdown: closing failed', { error: e.message }))
      .finally(() => {
        app.log('info', 'stopped', { pid: process.pid });
        process.exit(0);
      });
    setTimeout(() => process.exit(0), timeoutMs + 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (worker) {
    await listened;
    app.log('debug', 'worker listening', { pid: process.pid });
    reportReady(proxyInfo);
  }
}

/** Reports a start-up failure (one line; a stack only at debug level) and exits. */
function fail(e: unknown): never {
  process.exit(reportStartFailure(e, process.env.TRUSTGATE_LOG_LEVEL === 'debug'));
}

main().catch(fail);
