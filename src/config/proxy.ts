// The proxy's settings, read from the same environment (and TRUSTGATE_CONFIG file) as the rest.
// The proxy runs only when TRUSTGATE_UPSTREAM is set.
import { isValidGun } from '../core/tuf/gun.js';

export interface ProxyConfig {
  listen: { host: string; port: number };
  /** Base URL of the upstream registry, e.g. http://127.0.0.1:5001 */
  upstream: string;
  upstreamUsername?: string;
  upstreamPassword?: string;
  upstreamToken?: string;
  upstreamTimeoutMs: number;
  /** Registry part of GUNs; default: the proxy's listen address. */
  registryName?: string;
  /** Policy file (YAML or JSON); default: the built-in policy. */
  policyPath?: string;
  /** redis://… for a shared verdict cache; default in process. */
  cacheUrl?: string;
  cacheMax: number;
  verdictTtlMs: number;
  /** Memory for verified manifests (0 = fetch each pull from the upstream). */
  manifestCacheBytes: number;
  /** Let clients without credentials pull (when client authentication is on). */
  anonymousPull: boolean;
  /**
   * `token` (default): clients authenticate with trustgate tokens. `none` (only when named):
   * pulls are open to anyone. Pushes need a token with sign access in both.
   */
  auth: 'none' | 'token';
}

type Env = Record<string, string | undefined>;

/**
 * Why a registry name cannot begin the GUNs of the repositories behind the proxy, or undefined.
 * Every GUN is `<registry name>/<repository>`, and the trust server refuses any other shape.
 */
export function registryNameProblem(name: string): string | undefined {
  if (isValidGun(`${name}/x`)) return undefined;
  return 'cannot begin a GUN: use /-separated segments of letters, digits and ._:@- (an IPv6 address needs a host name instead)';
}

export function readProxyConfig(env: Env): { config?: ProxyConfig; problems: string[] } {
  const problems: string[] = [];
  const str = (k: string) => (env[k] === undefined || env[k] === '' ? undefined : env[k]);
  const upstream = str('TRUSTGATE_UPSTREAM');
  if (!upstream) return { problems };
  const schemeless = !/^[a-z][a-z0-9+.-]*:\/\//i.test(upstream);
  if (schemeless)
    problems.push(`TRUSTGATE_UPSTREAM must be a URL with its scheme, e.g. http://${upstream}, got ${JSON.stringify(upstream)}`);
  try {
    const u = new URL(upstream);
    if (schemeless) {
      // reported above: `host:port` parses as a scheme and a path
    } else if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push('TRUSTGATE_UPSTREAM must be an http:// or https:// URL');
    else if (u.pathname !== '/' && u.pathname !== '') problems.push('TRUSTGATE_UPSTREAM must be the registry root URL, without a path');
  } catch {
    if (!schemeless) problems.push(`TRUSTGATE_UPSTREAM must be a URL, got ${JSON.stringify(upstream)}`);
  }
  const listenText = str('TRUSTGATE_PROXY_LISTEN') ?? '127.0.0.1:5000';
  const lm = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listenText);
  if (!lm || Number(lm[3]) > 65535) problems.push(`TRUSTGATE_PROXY_LISTEN must be HOST:PORT, got ${JSON.stringify(listenText)}`);
  const int = (k: string, def: number, min: number, max: number) => {
    const v = str(k);
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      problems.push(`${k} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
      return def;
    }
    return Number(v);
  };
  const bool = (k: string) => {
    const v = str(k);
    if (v === undefined) return false;
    if (!['true', 'false', '1', '0'].includes(v)) problems.push(`${k} must be true or false, got ${JSON.stringify(v)}`);
    return v === 'true' || v === '1';
  };
  const cacheUrl = str('TRUSTGATE_CACHE_URL');
  if (cacheUrl && !/^rediss?:\/\//.test(cacheUrl)) problems.push('TRUSTGATE_CACHE_URL must be a redis:// or rediss:// URL');
  const auth = str('TRUSTGATE_PROXY_AUTH') ?? 'token';
  if (auth !== 'none' && auth !== 'token') problems.push(`TRUSTGATE_PROXY_AUTH must be none or token, got ${JSON.stringify(auth)}`);
  const config: ProxyConfig = {
    listen: lm ? { host: lm[1] ?? lm[2]!, port: Number(lm[3]) } : { host: '127.0.0.1', port: 5000 },
    upstream: upstream.replace(/\/+$/, ''),
    upstreamTimeoutMs: int('TRUSTGATE_UPSTREAM_TIMEOUT_MS', 30_000, 100, 600_000),
    cacheMax: int('TRUSTGATE_VERDICT_CACHE_MAX', 100_000, 1, 10_000_000),
    verdictTtlMs: int('TRUSTGATE_VERDICT_TTL_SECONDS', 60, 0, 86_400) * 1000,
    manifestCacheBytes: int('TRUSTGATE_MANIFEST_CACHE_MB', 64, 0, 65_536) * 1024 * 1024,
    anonymousPull: bool('TRUSTGATE_PROXY_ANONYMOUS_PULL'),
    auth: auth === 'token' ? 'token' : 'none',
  };
  const opt = (k: string, f: keyof ProxyConfig) => {
    const v = str(k);
    if (v !== undefined) (config as unknown as Record<string, unknown>)[f] = v;
  };
  opt('TRUSTGATE_UPSTREAM_USERNAME', 'upstreamUsername');
  opt('TRUSTGATE_UPSTREAM_PASSWORD', 'upstreamPassword');
  opt('TRUSTGATE_UPSTREAM_TOKEN', 'upstreamToken');
  opt('TRUSTGATE_REGISTRY_NAME', 'registryName');
  if (config.registryName !== undefined) {
    const bad = registryNameProblem(config.registryName);
    if (bad) problems.push(`TRUSTGATE_REGISTRY_NAME ${JSON.stringify(config.registryName)} ${bad}`);
  }
  opt('TRUSTGATE_POLICY', 'policyPath');
  if (cacheUrl) config.cacheUrl = cacheUrl;
  return { config, problems };
}
