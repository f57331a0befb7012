// Configuration from the environment (optionally merged over a JSON file named by
// TRUSTGATE_CONFIG), validated once at start: every bad value is reported by name, and the
// service does not start with any of them.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Algorithm } from '../core/crypto/signer.js';
import { DEFAULT_HTTP_TIMEOUTS, type HttpTimeouts } from '../http/server.js';
import { readProxyConfig, type ProxyConfig } from './proxy.js';
import { tsaChainFromPem } from '../core/crypto/timestamp.js';
import type { RegistryAuthConfig } from './registry-auth.js';

export interface Config {
  listen: { host: string; port: number };
  tls?: { cert: string; key: string };
  dataDir: string;
  keysDir: string;
  databaseUrl?: string;
  /** Passphrase for the key-encryption key; undefined means "generate a secret in dataDir". */
  keyPassphrase?: string;
  maxBodyBytes: number;
  gunPrefixes: string[];
  cacheMaxAge: { current: number; consistent: number };
  serverKeyAlgorithm: Algorithm;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Where private keys live: `file` (default, keysDir), `pkcs11` (an HSM token) or `keyv` (Redis/PostgreSQL). */
  keystore: 'file' | 'pkcs11' | 'keyv';
  /** TRUSTGATE_PKCS11_*: module path, token label, and the user PIN or (preferred) a file holding it. */
  pkcs11?: { module: string; tokenLabel: string; pin?: string; pinFile?: string };
  /** TRUSTGATE_KEYSTORE_URL: the keyv backend, postgres://… or redis://… */
  keystoreUrl?: string;
  /**
   * TRUSTGATE_AUTH: who may write trust data through the Notary API. `trustgate` (default):
   * trustgate tokens (src/auth/notary-auth.ts); `token`: Docker registry tokens (`auth`); `none`:
   * anyone (only when asked for by name).
   */
  authMode: 'trustgate' | 'token' | 'none';
  /** TRUSTGATE_AUTH_ANONYMOUS_READ (trustgate mode): reads need no token; default true. */
  anonymousRead: boolean;
  /** TRUSTGATE_AUTH_REALM in trustgate mode: the Bearer challenge's realm; default: this server's /api/v1/token. */
  authRealm?: string;
  /** Docker registry token auth for the Notary API (TRUSTGATE_AUTH=token); off when undefined. */
  auth?: RegistryAuthConfig;
  /** The verifying registry proxy (src/config/proxy.ts); runs only when TRUSTGATE_UPSTREAM is set. */
  proxy?: ProxyConfig;
  /** TRUSTGATE_PENDING_TTL_SECONDS: how long a management-API change waits for m-of-n signatures. */
  pendingTtlSeconds: number;
  /** TRUSTGATE_SIGN_CHECK_UPSTREAM: signing refuses digests the upstream registry does not have. */
  signCheckUpstream: boolean;
  /** TRUSTGATE_WORKERS: processes serving requests; 1 runs no cluster at all (src/cluster). */
  workers: number;
  /** Set when `auto` was held to one worker, saying why (logged at start). */
  workersNote?: string;
  /** Unknown TRUSTGATE_* names, each with the closest known one (logged at start as warnings). */
  warnings?: string[];
  /** TRUSTGATE_HTTP_*_TIMEOUT_MS: header, whole-request and keep-alive limits of every server (src/http/server.ts). */
  http: HttpTimeouts;
  /** TRUSTGATE_PROXY_REQUEST_TIMEOUT_MS: the proxy's whole-request limit; default 0 (none), so long blob uploads are not cut. */
  proxyRequestTimeoutMs: number;
  /** TRUSTGATE_SHUTDOWN_TIMEOUT_SECONDS: how long SIGTERM waits for requests in flight (default 30 s) before closing their connections. */
  shutdownTimeoutMs: number;
  /** TRUSTGATE_SIGN_MAX_BATCH: items one signing batch may hold (default 1000); a batch holds the event loop while it is checked and signed. */
  signMaxBatch: number;
  /** TRUSTGATE_TSA_URL: the RFC 3161 TSA that timestamps bundles; TRUSTGATE_TSA_CA: its chain (PEM file), read as DER, timeStamping certificate first. */
  tsa?: { url: string; chain?: Buffer[] };
}

/** Upper bound of TRUSTGATE_WORKERS=auto, so a large machine does not start dozens of processes (each has its own caches and store connections). */
export const AUTO_WORKERS_MAX = 16;

/** TRUSTGATE_AUTH_*: see src/auth/registry-token.ts. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/**
 * A start-up failure with the message an operator acts on: `exit` 2 when a setting must change,
 * 1 when the environment is at fault (a port in use, a store that cannot be reached).
 */
export class StartupError extends Error {
  override name = 'StartupError';
  constructor(
    message: string,
    readonly exit: 1 | 2,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

type Env = Record<string, string | undefined>;

/**
 * Every TRUSTGATE_* name trustgate reads (the server's and the CLI's, which often share a shell).
 * A name outside this list is warned about at start with the closest one here.
 */
export const KNOWN_VARIABLES: readonly string[] = [
  ...'CONFIG LISTEN TLS_CERT TLS_KEY DATA_DIR KEYS_DIR DATABASE_URL KEY_PASSPHRASE MAX_BODY_BYTES GUN_PREFIXES'.split(' '),
  ...'CACHE_MAX_AGE_CURRENT CACHE_MAX_AGE_CONSISTENT SERVER_KEY_ALGORITHM LOG_LEVEL KEYSTORE KEYSTORE_URL'.split(' '),
  ...'PKCS11_MODULE PKCS11_TOKEN_LABEL PKCS11_PIN PKCS11_PIN_FILE PENDING_TTL_SECONDS SIGN_CHECK_UPSTREAM WORKERS'.split(' '),
  ...'HTTP_HEADERS_TIMEOUT_MS HTTP_REQUEST_TIMEOUT_MS HTTP_KEEPALIVE_TIMEOUT_MS PROXY_REQUEST_TIMEOUT_MS SIGN_MAX_BATCH'.split(' '),
  ...'AUTH AUTH_ANONYMOUS_READ AUTH_REALM AUTH_SERVICE AUTH_ISSUER AUTH_ROOT_CERT_BUNDLE AUTH_TOKEN_KEY AUTH_TOKEN_CERT'.split(' '),
  ...'AUTH_USERS AUTH_TOKEN_TTL UPSTREAM PROXY_LISTEN REGISTRY_NAME PROXY_AUTH PROXY_ANONYMOUS_PULL UPSTREAM_USERNAME'.split(' '),
  ...'UPSTREAM_PASSWORD UPSTREAM_TOKEN UPSTREAM_TIMEOUT_MS POLICY VERDICT_TTL_SECONDS VERDICT_CACHE_MAX CACHE_URL'.split(' '),
  ...'MANIFEST_CACHE_MB SHUTDOWN_TIMEOUT_SECONDS URL TOKEN PASSPHRASE REGISTRY CLI FUZZ_SEED TSA_URL TSA_CA'.split(' '),
].map((n) => `TRUSTGATE_${n}`);

/** Levenshtein distance, for naming the variable a misspelt one was meant to be. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** Warnings for TRUSTGATE_* names trustgate does not read, each naming the closest known name. */
export function unknownVariables(names: Iterable<string>, known: readonly string[] = KNOWN_VARIABLES): string[] {
  const out: string[] = [];
  for (const name of names) {
    // TRUSTGATE_TEST_*: the test suite's own settings.
    if (!name.startsWith('TRUSTGATE_') || name.startsWith('TRUSTGATE_TEST_') || known.includes(name)) continue;
    const best = [...known].sort((x, y) => distance(name, x) - distance(name, y))[0]!;
    const near = distance(name, best) <= Math.max(2, Math.floor(name.length / 5));
    out.push(`${name} is not a trustgate setting and is ignored${near ? ` (did you mean ${best}?)` : ''}`);
  }
  return out;
}

function parseHostPort(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

/** A small reader that records a problem instead of throwing, so all of them are reported at once. */
class Reader {
  problems: string[] = [];
  constructor(private env: Env) {}
  str(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }
  int(name: string, def: number, min: number, max: number): number {
    const v = this.str(name);
    if (v === undefined) return def;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
      return def;
    }
    return Number(v);
  }
  oneOf<T extends string>(name: string, def: T, allowed: readonly T[]): T {
    const v = this.str(name);
    if (v === undefined) return def;
    if (!(allowed as readonly string[]).includes(v)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
      return def;
    }
    return v as T;
  }
  hostPort(name: string, def: string): { host: string; port: number } {
    const v = this.str(name) ?? def;
    const hp = parseHostPort(v);
    if (!hp) {
      this.problems.push(`${name} must be HOST:PORT (e.g. 127.0.0.1:4443), got ${JSON.stringify(v)}`);
      return parseHostPort(def)!;
    }
    return hp;
  }
}

/** Reads the environment (and the optional JSON file it names), or throws ConfigError. */
export function loadConfig(env: Env = process.env): Config {
  let merged: Env = env;
  if (env.TRUSTGATE_CONFIG) {
    try {
      const file = JSON.parse(readFileSync(env.TRUSTGATE_CONFIG, 'utf8')) as Record<string, unknown>;
      const fromFile: Env = {};
      for (const [k, v] of Object.entries(file)) fromFile[k] = typeof v === 'string' ? v : JSON.stringify(v);
      merged = { ...fromFile, ...env };
    } catch (e) {
      throw new ConfigError([`TRUSTGATE_CONFIG: cannot read ${env.TRUSTGATE_CONFIG}: ${(e as Error).message}`]);
    }
  }
  const r = new Reader(merged);
  const cert = r.str('TRUSTGATE_TLS_CERT');
  const key = r.str('TRUSTGATE_TLS_KEY');
  if (!!cert !== !!key) r.problems.push('TRUSTGATE_TLS_CERT and TRUSTGATE_TLS_KEY must be set together');
  const databaseUrl = r.str('TRUSTGATE_DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) r.problems.push('TRUSTGATE_DATABASE_URL must be a postgres:// URL');
  const prefixes = (r.str('TRUSTGATE_GUN_PREFIXES') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const cfg: Config = {
    listen: r.hostPort('TRUSTGATE_LISTEN', '127.0.0.1:4443'),
    ...(cert && key ? { tls: { cert, key } } : {}),
    dataDir: r.str('TRUSTGATE_DATA_DIR') ?? './data',
    keysDir: r.str('TRUSTGATE_KEYS_DIR') ?? './keys',
    ...(databaseUrl ? { databaseUrl } : {}),
    ...(r.str('TRUSTGATE_KEY_PASSPHRASE') ? { keyPassphrase: r.str('TRUSTGATE_KEY_PASSPHRASE') } : {}),
    maxBodyBytes: r.int('TRUSTGATE_MAX_BODY_BYTES', 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    gunPrefixes: prefixes,
    cacheMaxAge: {
      current: r.int('TRUSTGATE_CACHE_MAX_AGE_CURRENT', 300, 0, 31536000),
      consistent: r.int('TRUSTGATE_CACHE_MAX_AGE_CONSISTENT', 2592000, 0, 31536000),
    },
    serverKeyAlgorithm: r.oneOf('TRUSTGATE_SERVER_KEY_ALGORITHM', 'ecdsa', ['ecdsa', 'ed25519', 'rsa'] as const),
    logLevel: r.oneOf('TRUSTGATE_LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'] as const),
    keystore: r.oneOf('TRUSTGATE_KEYSTORE', 'file', ['file', 'pkcs11', 'keyv'] as const),
    pendingTtlSeconds: r.int('TRUSTGATE_PENDING_TTL_SECONDS', 7 * 24 * 3600, 60, 365 * 24 * 3600),
    signCheckUpstream: ['true', '1'].includes(r.oneOf('TRUSTGATE_SIGN_CHECK_UPSTREAM', 'false', ['true', 'false', '1', '0'] as const)),
    workers: 1,
    authMode: 'trustgate',
    anonymousRead: true,
    http: {
      headersMs: r.int('TRUSTGATE_HTTP_HEADERS_TIMEOUT_MS', DEFAULT_HTTP_TIMEOUTS.headersMs, 100, 600_000),
      requestMs: r.int('TRUSTGATE_HTTP_REQUEST_TIMEOUT_MS', DEFAULT_HTTP_TIMEOUTS.requestMs, 0, 86_400_000),
      keepAliveMs: r.int('TRUSTGATE_HTTP_KEEPALIVE_TIMEOUT_MS', DEFAULT_HTTP_TIMEOUTS.keepAliveMs, 100, 600_000),
    },
    proxyRequestTimeoutMs: r.int('TRUSTGATE_PROXY_REQUEST_TIMEOUT_MS', 0, 0, 86_400_000),
    signMaxBatch: r.int('TRUSTGATE_SIGN_MAX_BATCH', 1000, 1, 50_000),
    shutdownTimeoutMs: r.int('TRUSTGATE_SHUTDOWN_TIMEOUT_SECONDS', 30, 0, 3600) * 1000,
  };
  if (cfg.signCheckUpstream && !merged.TRUSTGATE_UPSTREAM)
    r.problems.push('TRUSTGATE_SIGN_CHECK_UPSTREAM needs TRUSTGATE_UPSTREAM (the registry to check digests against)');
  keystoreAndAuthConfig(r, cfg);
  workersConfig(r, cfg);
  tsaConfig(r, cfg);
  const proxy = readProxyConfig(merged);
  r.problems.push(...proxy.problems);
  if (proxy.config) cfg.proxy = proxy.config;
  if (r.problems.length) throw new ConfigError(r.problems);
  const warnings = unknownVariables(Object.keys(merged));
  if (warnings.length) cfg.warnings = warnings;
  return cfg;
}

/** TRUSTGATE_TSA_URL (http or https) and TRUSTGATE_TSA_CA, read and checked here so a bad file stops the start. */
function tsaConfig(r: Reader, cfg: Config): void {
  const url = r.str('TRUSTGATE_TSA_URL');
  const ca = r.str('TRUSTGATE_TSA_CA');
  if (ca && !url) r.problems.push('TRUSTGATE_TSA_CA needs TRUSTGATE_TSA_URL (the TSA whose chain it is)');
  if (!url) return;
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol))
    return void r.problems.push(`TRUSTGATE_TSA_URL must be an http(s) URL, got ${JSON.stringify(url)}`);
  cfg.tsa = { url };
  if (!ca) return;
  try {
    cfg.tsa.chain = tsaChainFromPem(readFileSync(ca, 'utf8'));
  } catch (e) {
    r.problems.push(`TRUSTGATE_TSA_CA: ${(e as Error).message}`);
  }
}

/** TRUSTGATE_WORKERS: `auto` or 1..64. An HSM keystore stays in one process (its sessions are per process). */
function workersConfig(r: Reader, cfg: Config): void {
  const v = r.str('TRUSTGATE_WORKERS');
  if (v === undefined) return;
  if (v === 'auto') {
    const n = Math.min(AUTO_WORKERS_MAX, availableParallelism());
    if (cfg.keystore === 'pkcs11' && n > 1)
      cfg.workersNote = 'TRUSTGATE_WORKERS=auto runs one process with TRUSTGATE_KEYSTORE=pkcs11 (HSM sessions are per process)';
    else cfg.workers = n;
    return;
  }
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 64) {
    r.problems.push(`TRUSTGATE_WORKERS must be auto or a whole number from 1 to 64, got ${JSON.stringify(v)}`);
    return;
  }
  if (cfg.keystore === 'pkcs11' && Number(v) > 1) {
    r.problems.push(
      `TRUSTGATE_WORKERS must be 1 with TRUSTGATE_KEYSTORE=pkcs11 (HSM sessions are per process and not used across processes), got ${v}`,
    );
    return;
  }
  cfg.workers = Number(v);
}

/** TRUSTGATE_KEYSTORE's companions and TRUSTGATE_AUTH_*, checked only when selected. */
function keystoreAndAuthConfig(r: Reader, cfg: Config): void {
  if (cfg.keystore === 'pkcs11') {
    const module = r.str('TRUSTGATE_PKCS11_MODULE');
    const tokenLabel = r.str('TRUSTGATE_PKCS11_TOKEN_LABEL');
    const pin = r.str('TRUSTGATE_PKCS11_PIN');
    const pinFile = r.str('TRUSTGATE_PKCS11_PIN_FILE');
    if (!module) r.problems.push('TRUSTGATE_PKCS11_MODULE must be set when TRUSTGATE_KEYSTORE=pkcs11');
    if (!tokenLabel) r.problems.push('TRUSTGATE_PKCS11_TOKEN_LABEL must be set when TRUSTGATE_KEYSTORE=pkcs11');
    if (!pin === !pinFile)
      r.problems.push('set exactly one of TRUSTGATE_PKCS11_PIN_FILE (preferred) and TRUSTGATE_PKCS11_PIN when TRUSTGATE_KEYSTORE=pkcs11');
    if (module && tokenLabel) cfg.pkcs11 = { module, tokenLabel, ...(pin ? { pin } : {}), ...(pinFile ? { pinFile } : {}) };
  }
  if (cfg.keystore === 'keyv') {
    const url = r.str('TRUSTGATE_KEYSTORE_URL');
    if (!url || !/^(postgres(ql)?|rediss?):\/\//.test(url))
      r.problems.push('TRUSTGATE_KEYSTORE_URL must be a postgres:// or redis:// URL when TRUSTGATE_KEYSTORE=keyv');
    else cfg.keystoreUrl = url;
  }
  cfg.authMode = r.oneOf('TRUSTGATE_AUTH', 'trustgate', ['trustgate', 'token', 'none'] as const);
  const anonymousRead = r.str('TRUSTGATE_AUTH_ANONYMOUS_READ');
  if (anonymousRead !== undefined) {
    if (cfg.authMode !== 'trustgate')
      r.problems.push(`TRUSTGATE_AUTH_ANONYMOUS_READ applies only with TRUSTGATE_AUTH=trustgate, not ${cfg.authMode}`);
    else cfg.anonymousRead = ['true', '1'].includes(r.oneOf('TRUSTGATE_AUTH_ANONYMOUS_READ', 'true', ['true', 'false', '1', '0'] as const));
  }
  if (cfg.authMode === 'trustgate') {
    const realm = r.str('TRUSTGATE_AUTH_REALM');
    if (realm && !/^https?:\/\/[^\s"]+$/.test(realm)) r.problems.push('TRUSTGATE_AUTH_REALM must be an http(s) URL');
    else if (realm) cfg.authRealm = realm;
  }
  if (cfg.authMode !== 'token') return;
  const need = (name: string): string => {
    const v = r.str(name);
    if (!v) r.problems.push(`${name} must be set when TRUSTGATE_AUTH=token`);
    return v ?? '';
  };
  const realm = need('TRUSTGATE_AUTH_REALM');
  if (realm && !/^https?:\/\/[^\s"]+$/.test(realm)) r.problems.push('TRUSTGATE_AUTH_REALM must be an http(s) URL');
  const auth: RegistryAuthConfig = {
    type: 'token',
    realm,
    service: need('TRUSTGATE_AUTH_SERVICE'),
    issuer: need('TRUSTGATE_AUTH_ISSUER'),
    rootCertBundle: need('TRUSTGATE_AUTH_ROOT_CERT_BUNDLE'),
    tokenTtl: r.int('TRUSTGATE_AUTH_TOKEN_TTL', 300, 10, 86400),
  };
  const issuerKey = r.str('TRUSTGATE_AUTH_TOKEN_KEY');
  const issuerCert = r.str('TRUSTGATE_AUTH_TOKEN_CERT');
  const users = r.str('TRUSTGATE_AUTH_USERS');
  if ((issuerKey || issuerCert || users) && !(issuerKey && issuerCert && users)) {
    r.problems.push(
      'TRUSTGATE_AUTH_TOKEN_KEY, TRUSTGATE_AUTH_TOKEN_CERT and TRUSTGATE_AUTH_USERS must be set together (built-in token endpoint)',
    );
  }
  if (issuerKey && issuerCert && users) Object.assign(auth, { issuerKey, issuerCert, users });
  cfg.auth = auth;
}
