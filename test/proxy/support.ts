// A real stack for proxy tests: a Debian docker-registry upstream, a trustgate app (its trust
// service and keystore) and the verifying proxy in front of the registry, all on loopback.
import { startProxy, type ProxyDeps, type StartedProxy } from '../../src/proxy/index.js';
import type { AppOverrides } from '../../src/app.js';
import { startRegistry, type RegistryService } from '../helpers/services.js';
import { startTrustgate, type RunningTrustgate } from '../helpers/trustgate.js';
import { MEDIA_TYPES } from '../helpers/oci.js';
import { digestOf } from '../helpers/util.js';

export interface Stack {
  reg: RegistryService;
  tg: RunningTrustgate;
  px: StartedProxy;
  /** host:port of the proxy, for image references. */
  host: string;
  /** An admin token of this stack's trustgate: pushes through the proxy need one. */
  token: string;
  /** skopeo's `--dest-creds`/`--creds` value for that token. */
  creds: string;
  /** The Authorization header for that token, for fetch pushes. */
  auth: { authorization: string };
  gun(repo: string): string;
  stop(): Promise<void>;
}

/**
 * Client authentication is the default (`token`), with anonymous pulls on unless `env` says
 * otherwise; pushes go with the stack's admin `token`. `dir`: trustgate's data and keys
 * directory, kept on stop (a restart uses it again).
 */
export async function startStack(
  opts: { env?: Record<string, string>; overrides?: AppOverrides; reg?: RegistryService; extra?: Partial<ProxyDeps>; dir?: string } = {},
): Promise<Stack> {
  const reg = opts.reg ?? (await startRegistry());
  const env = { TRUSTGATE_UPSTREAM: reg.url, TRUSTGATE_PROXY_ANONYMOUS_PULL: 'true', ...opts.env };
  const tg = await startTrustgate({
    env,
    ...(opts.overrides ? { overrides: opts.overrides } : {}),
    ...(opts.dir ? { dir: opts.dir } : {}),
  });
  const px = await startProxy(tg.app, opts.extra ?? {}, { host: '127.0.0.1', port: 0 });
  const host = px.url.replace(/^https?:\/\//, '');
  const token = tg.adminToken;
  return {
    reg,
    tg,
    px,
    host,
    token,
    creds: `admin:${token}`,
    auth: { authorization: `Bearer ${token}` },
    gun: (repo) => `${host}/${repo}`,
    async stop() {
      await px.close();
      await tg.stop();
      if (!opts.reg) await reg.stop();
    },
  };
}

/** Every manifest type, as a client that accepts them all sends. */
export const ACCEPT_ALL = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(
  ', ',
);

export interface Got {
  status: number;
  headers: Headers;
  body: Buffer;
  json(): any;
}

export async function get(url: string, init: Omit<RequestInit, 'body'> & { accept?: string; body?: Buffer | string } = {}): Promise<Got> {
  const headers = new Headers(init.headers);
  if (!headers.has('accept')) headers.set('accept', init.accept ?? ACCEPT_ALL);
  const { body: payload, accept: _a, ...rest } = init;
  const body = typeof payload === 'string' ? payload : payload ? new Uint8Array(payload) : undefined;
  const r = await fetch(url, { ...rest, ...(body !== undefined ? { body } : {}), headers, redirect: 'manual' });
  const bytes = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body: bytes, json: () => JSON.parse(bytes.toString('utf8')) };
}

/** The DENIED error of a 403 answer. */
export function denied(g: Got): { code: string; message: string; detail: { reason: string; role?: string } } {
  if (g.status !== 403) throw new Error(`expected 403, got ${g.status}: ${g.body.toString()}`);
  const e = g.json().errors[0];
  if (e.code !== 'DENIED') throw new Error(`expected DENIED, got ${e.code}`);
  return e;
}

/** PUTs a manifest straight to the upstream registry (bypassing the proxy). */
export async function putManifest(base: string, repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<Got> {
  return get(`${base}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType } });
}

/** Uploads a blob straight to the upstream registry (bypassing the proxy): one POST with the digest, then a monolithic PUT. */
export async function putBlob(base: string, repo: string, bytes: Buffer): Promise<string> {
  const digest = digestOf(bytes);
  const start = await get(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${start.body.toString()}`);
  const loc = new URL(start.headers.get('location')!, base);
  loc.searchParams.set('digest', digest);
  const put = await get(loc.toString(), { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${put.body.toString()}`);
  return digest;
}
