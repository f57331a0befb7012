// Entry point for `npm start`: read configuration, open storage and keys, and listen.
// A TLS certificate that fails to load stops the start; it never falls back to plain HTTP.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createApp } from './app.js';
import { ConfigError, loadConfig } from './config/config.js';
import { startProxy } from './proxy/index.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`trustgate: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  let tlsOptions: https.ServerOptions | undefined;
  if (config.tls) {
    try {
      tlsOptions = { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) };
      // Parse now, so a bad pair fails here rather than on the first connection.
      https.createServer(tlsOptions);
    } catch (e) {
      process.stderr.write(`trustgate: cannot load TLS certificate or key: ${(e as Error).message}\n`);
      process.exit(2);
    }
  }
  const app = await createApp(config);
  const server = tlsOptions ? https.createServer(tlsOptions, app.listener) : http.createServer(app.listener);
  server.keepAliveTimeout = 65_000;
  server.on('error', (e) => {
    app.log('error', 'server error', { error: e.message });
    process.exit(1);
  });
  server.listen(config.listen.port, config.listen.host, () => {
    app.log('info', 'trustgate listening', {
      url: `${tlsOptions ? 'https' : 'http'}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`,
      storage: app.store.kind,
      keystore: app.keys.kind,
    });
  });
  // The verifying registry proxy, when an upstream registry is configured.
  const proxy = config.proxy
    ? await startProxy(app, app.signing.cosignHook ? { cosign: app.signing.cosignHook } : {}).catch((e: Error) => {
        app.log('error', 'cannot start the registry proxy', { error: e.message });
        process.exit(2);
      })
    : undefined;
  if (proxy) app.log('info', 'registry proxy listening', { url: proxy.url, upstream: config.proxy!.upstream, policy: proxy.policy.current().source });
  const stop = () => {
    void proxy?.close();
    server.close(() => void app.close().then(() => process.exit(0)));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
