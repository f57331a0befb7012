// Builds the verifying registry proxy from the app (trust service, keystore, metrics, clock) and
// the proxy's configuration.
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { allows, type Scope } from '../auth/tokens.js';
import { createServer, proxyTimeouts } from '../http/server.js';
import type { KeyStore } from '../keystore/types.js';
import type { Logger } from '../observability/log.js';
import type { ProxyActivity } from '../observability/proxy-activity.js';
import { UpstreamRegistry } from '../registry/artifacts.js';
import { TrustChanges } from '../trust/changes.js';
import type { TrustService } from '../trust/service.js';
import { ProxyAuth, type TokenSource } from './auth.js';
import { VerdictCache } from './cache.js';
import type { ProxyConfig } from '../config/proxy.js';
import type { AttestationHook, AuditSink, CosignHook } from '../trust/hooks.js';
import { ProxyMetrics } from './metrics.js';
import { PolicySource } from './policy.js';
import { RegistryProxy } from './server.js';
import { PushSigner } from './signing.js';
import { Upstream } from '../registry/client.js';
import { Verifier } from '../trust/verifier.js';

export interface ProxyDeps {
  trust: TrustService;
  keys: KeyStore;
  log: Logger;
  registry: Registry;
  now?: () => number;
  /** The Notary API listener, served under `/v2/<gun>/_trust/` on the proxy's address. */
  notary?: (req: IncomingMessage, res: ServerResponse) => void;
  tokens?: TokenSource;
  audit?: AuditSink;
  cosign?: CosignHook;
  /** Checks `require.attestations`; its written attestations drop the GUN's cached verdicts. */
  attestations?: AttestationHook;
  scheme?: 'http' | 'https';
  /** The app's change pipeline, so signed pushes queue with other changes of the same GUN. */
  changes?: TrustChanges;
  /** /livez and /readyz, answered on the proxy's port too. */
  probes?: { handle(req: IncomingMessage, res: ServerResponse): boolean };
  /** Refusals and verdict-cache hits, for the management API's GET /proxy/denials. */
  activity?: ProxyActivity;
}

export interface RunningProxyParts {
  proxy: RegistryProxy;
  verifier: Verifier;
  cache: VerdictCache;
  policy: PolicySource;
  signer: PushSigner;
  metrics: ProxyMetrics;
  close(): Promise<void>;
}

export async function createRegistryProxy(config: ProxyConfig, deps: ProxyDeps): Promise<RunningProxyParts> {
  const now = deps.now ?? Date.now;
  const policy = new PolicySource(config.policyPath, deps.log);
  const cache = await VerdictCache.create({
    ...(config.cacheUrl ? { url: config.cacheUrl } : {}),
    max: config.cacheMax,
    maxTtlMs: config.verdictTtlMs,
    now,
    log: deps.log,
    fresh: () => deps.trust.fresh(),
  });
  const verifier = new Verifier(deps.trust, { now });
  const onChange = ({ gun }: { gun: string }) => void cache.invalidate(gun);
  // After a change feed outage: anything may have changed meanwhile.
  const onResync = () => void cache.clear().catch(() => undefined);
  deps.trust.events.on('change', onChange);
  deps.trust.events.on('resync', onResync);
  policy.onChange(() => void cache.clear().catch(() => undefined));
  // An attestation written through trustgate may admit a pull that was denied and cached.
  deps.attestations?.onWritten?.((gun) => void cache.invalidate(gun).catch(() => undefined));
  const upstream = new Upstream({
    url: config.upstream,
    timeoutMs: config.upstreamTimeoutMs,
    ...(config.upstreamUsername !== undefined ? { username: config.upstreamUsername, password: config.upstreamPassword ?? '' } : {}),
    ...(config.upstreamToken ? { token: config.upstreamToken } : {}),
  });
  if (config.auth === 'token' && !deps.tokens) throw new Error('TRUSTGATE_PROXY_AUTH=token needs a token store');
  const auth = new ProxyAuth(deps.tokens, { openPulls: config.auth === 'none', anonymousPull: config.anonymousPull });
  const metrics = new ProxyMetrics(deps.registry);
  const changes = deps.changes ?? new TrustChanges({ trust: deps.trust, keys: deps.keys, log: deps.log, now });
  const signer = new PushSigner(changes, deps.keys, new UpstreamRegistry(upstream));
  const proxy = new RegistryProxy({
    upstream,
    verifier,
    cache,
    policy,
    signer,
    auth,
    metrics,
    log: deps.log,
    now,
    manifestCacheBytes: config.manifestCacheBytes,
    manifestCacheTtlMs: config.verdictTtlMs,
    ...(config.registryName ? { registryName: config.registryName } : {}),
    ...(deps.scheme ? { scheme: deps.scheme } : {}),
    ...(deps.notary ? { notary: deps.notary } : {}),
    ...(deps.audit ? { audit: deps.audit } : {}),
    ...(deps.cosign ? { cosign: deps.cosign } : {}),
    ...(deps.attestations ? { attestations: deps.attestations } : {}),
    ...(deps.probes ? { probes: deps.probes } : {}),
    ...(deps.activity ? { activity: deps.activity } : {}),
  });
  deps.activity?.attach(() => ({ kind: cache.kind, hits: cache.hits, misses: cache.misses }));
  return {
    proxy,
    verifier,
    cache,
    policy,
    signer,
    metrics,
    async close() {
      deps.trust.events.off('change', onChange);
      deps.trust.events.off('resync', onResync);
      deps.activity?.detach();
      policy.close();
      await proxy.close();
      await cache.close();
    },
  };
}

/** What startProxy takes from the app (app.ts's App is one). */
export interface ProxyHost {
  config: {
    proxy?: ProxyConfig;
    tls?: { cert: string; key: string };
    http: Parameters<typeof proxyTimeouts>[0];
    proxyRequestTimeoutMs: Parameters<typeof proxyTimeouts>[1];
  };
  management: { tokens: Pick<TokenSource, 'authenticate'>; audit: AuditSink; changes: TrustChanges };
  trust: TrustService;
  keys: KeyStore;
  log: Logger;
  metrics: { registry: Registry };
  now: () => number;
  listener: (req: IncomingMessage, res: ServerResponse) => void;
  probes?: ProxyDeps['probes'];
  proxyActivity?: ProxyActivity;
}

export interface StartedProxy extends RunningProxyParts {
  url: string;
  address: AddressInfo;
  server: Server;
}

/**
 * Starts the proxy of an app on its configured listen address (http, or https with the app's TLS
 * certificate). `listen` overrides the address (tests use port 0).
 */
export async function startProxy(
  app: ProxyHost,
  extra: Partial<ProxyDeps> = {},
  listen?: { host: string; port: number },
): Promise<StartedProxy> {
  const config = app.config.proxy;
  if (!config) throw new Error('the proxy is not configured (TRUSTGATE_UPSTREAM is not set)');
  const tls = app.config.tls;
  // Clients authenticate with the management API's tokens; signing events go to its audit log.
  const tokens: TokenSource = {
    authenticate: (t) => app.management.tokens.authenticate(t),
    allows: (scopes, perm, gun) => allows(scopes as Scope[], perm, gun),
  };
  if (config.auth === 'none') {
    app.log('warn', 'TRUSTGATE_PROXY_AUTH=none: the registry proxy serves pulls to anyone (pushes still need a token with sign access)', {
      listen: listen ?? config.listen,
    });
  }
  const parts = await createRegistryProxy(config, {
    tokens,
    audit: app.management.audit,
    trust: app.trust,
    keys: app.keys,
    log: app.log,
    registry: app.metrics.registry,
    now: app.now,
    notary: app.listener,
    scheme: tls ? 'https' : 'http',
    changes: app.management.changes,
    ...(app.probes ? { probes: app.probes } : {}),
    ...(app.proxyActivity ? { activity: app.proxyActivity } : {}),
    ...extra,
  });
  const timeouts = proxyTimeouts(app.config.http, app.config.proxyRequestTimeoutMs);
  const server = createServer(timeouts, tls ? { cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : undefined);
  const at = listen ?? config.listen;
  const address = await parts.proxy.listen(at.host, at.port, server);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { ...parts, address, server, url: `${tls ? 'https' : 'http'}://${host}:${address.port}` };
}
