// The upstream registry client: keep-alive connections, the proxy's own credentials (Basic, a
// static Bearer token, or the registry token flow: on a `WWW-Authenticate: Bearer realm=…`
// challenge, fetch a token for the challenged scope from the realm and retry), streaming bodies
// both ways. A request with a body cannot be replayed, so once the upstream is known to use
// tokens, a token for the request's scope is fetched before the body is sent.
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RawGetClient, RawGetError, type RawResponse } from './rawget.js';

export interface UpstreamOptions {
  url: string;
  username?: string;
  password?: string;
  /** A static bearer token (instead of Basic or the token flow). */
  token?: string;
  /** Connection and idle-response timeout. */
  timeoutMs?: number;
  maxSockets?: number;
}

export class UpstreamError extends Error {
  override name = 'UpstreamError';
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
  scope?: string;
}

/** Parses `Bearer realm="…",service="…",scope="…"`. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return {
    scheme,
    ...(params.realm ? { realm: params.realm } : {}),
    ...(params.service ? { service: params.service } : {}),
    ...(params.scope ? { scope: params.scope } : {}),
  };
}

export interface UpstreamRequest {
  method: string;
  /** Path and query, e.g. `/v2/team/app/manifests/latest`. */
  path: string;
  headers?: OutgoingHttpHeaders;
  /** Token scope for the request (`repository:team/app:pull`); used when the upstream uses tokens. */
  scope?: string;
  /** A body to stream (not replayable). */
  body?: Readable;
  /** A body held in memory (replayable). */
  data?: Buffer;
  /** Aborts the upstream request. */
  signal?: AbortSignal;
}

export class Upstream {
  readonly origin: string;
  private base: URL;
  private agent: http.Agent;
  private tokens = new Map<string, { token: string; until: number }>();
  private bearer?: Challenge;
  private basic?: string;
  /** Blob bodies from a plain-http upstream, without node's HTTP client on the body path. */
  private raw?: RawGetClient;

  constructor(readonly opts: UpstreamOptions) {
    this.base = new URL(opts.url);
    this.origin = this.base.origin;
    const Agent = this.base.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 256, scheduling: 'lifo', timeout: opts.timeoutMs ?? 60_000 });
    if (opts.username !== undefined) this.basic = 'Basic ' + Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64');
    if (this.base.protocol === 'http:') {
      this.raw = new RawGetClient({
        host: this.base.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: Number(this.base.port || 80),
        hostHeader: this.base.host,
        origin: this.origin,
        timeoutMs: opts.timeoutMs ?? 60_000,
      });
    }
  }

  /**
   * A GET whose 200/206 body is copied from the upstream's socket to the client (rawget.ts), with
   * the proxy's credentials for `scope`. Undefined, with nothing sent to the client, when the
   * upstream is https, no token for the scope is at hand yet, or the answer is of another kind
   * (a challenge, a redirect, an error): the caller then asks through request().
   */
  async streamGet(r: {
    path: string;
    headers: OutgoingHttpHeaders;
    scope?: string;
    signal?: AbortSignal;
  }): Promise<RawResponse | undefined> {
    if (!this.raw) return undefined;
    const authorization = this.authorization(r.scope);
    if (this.bearer && !authorization?.startsWith('Bearer ')) return undefined; // request() runs the token flow first
    try {
      return await this.raw.get(r.path, authorization ? { ...r.headers, authorization } : r.headers, r.signal);
    } catch (e) {
      throw e instanceof RawGetError ? new UpstreamError(e.message) : e;
    }
  }

  private get mod() {
    return this.base.protocol === 'https:' ? https : http;
  }

  /**
   * A GET of a small body (a manifest) read whole, at most `limit` bytes: over the raw path when
   * it can (see streamGet), else through request(). Resolves with any status the upstream gave.
   */
  async getWhole(
    r: { path: string; headers: OutgoingHttpHeaders; scope?: string },
    limit: number,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
    const raw = await this.streamGet(r);
    if (raw) {
      const body = await raw.collect(limit).catch((e: Error) => {
        throw e instanceof RawGetError ? new UpstreamError(e.message) : e;
      });
      return { status: raw.head.status, headers: raw.head.headers, body };
    }
    const up = await this.request({ method: 'GET', ...r });
    return { status: up.statusCode ?? 502, headers: up.headers, body: await Upstream.readBody(up, limit) };
  }

  /** Sends a request and resolves with the response head; the body is for the caller to read. */
  async request(r: UpstreamRequest): Promise<IncomingMessage> {
    const replayable = !r.body;
    if (!replayable && this.bearer && r.scope) await this.ensureToken(r.scope);
    let res = await this.once(r, this.authorization(r.scope));
    if (res.statusCode === 401 && replayable) {
      const ch = parseChallenge(res.headers['www-authenticate'] as string | undefined);
      if (ch?.scheme === 'bearer' && ch.realm && !this.opts.token) {
        res.resume();
        this.bearer = { scheme: 'bearer', realm: ch.realm, ...(ch.service ? { service: ch.service } : {}) };
        const scope = ch.scope ?? r.scope ?? '';
        await this.ensureToken(scope, true);
        // Later requests of the same kind find the token under their own scope too.
        if (r.scope !== undefined && r.scope !== scope) this.tokens.set(r.scope, this.tokens.get(scope)!);
        res = await this.once(r, this.authorization(scope));
      }
    }
    return res;
  }

  private authorization(scope: string | undefined): string | undefined {
    if (this.opts.token) return `Bearer ${this.opts.token}`;
    if (this.bearer) {
      const t = this.tokens.get(scope ?? '');
      if (t && t.until > Date.now()) return `Bearer ${t.token}`;
    }
    return this.basic;
  }

  /** Fetches a token for `scope` from the challenge's realm (with the Basic credentials, if any). */
  private async ensureToken(scope: string, force = false): Promise<void> {
    const have = this.tokens.get(scope);
    if (!force && have && have.until > Date.now()) return;
    const realm = new URL(this.bearer!.realm!);
    if (this.bearer!.service) realm.searchParams.set('service', this.bearer!.service);
    for (const s of scope.split(' ').filter(Boolean)) realm.searchParams.append('scope', s);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.basic) headers.Authorization = this.basic;
    const res = await fetch(realm, { headers, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000) }).catch((e: Error) => {
      throw new UpstreamError(`token service ${realm.origin} unreachable: ${e.message}`);
    });
    if (res.status !== 200) throw new UpstreamError(`token service ${realm.origin} answered ${res.status}`);
    const body = (await res.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) throw new UpstreamError('token service answered without a token');
    const life = Math.max(10, body.expires_in ?? 60) * 1000;
    if (this.tokens.size > 4096) this.tokens.clear();
    this.tokens.set(scope, { token, until: Date.now() + life - Math.min(30_000, life / 4) });
  }

  private once(r: UpstreamRequest, authorization: string | undefined): Promise<IncomingMessage> {
    return new Promise<IncomingMessage>((resolve, reject) => {
      const headers: OutgoingHttpHeaders = { ...r.headers };
      if (authorization) headers.authorization = authorization;
      if (r.data) headers['content-length'] = r.data.length;
      const req = this.mod.request(
        {
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port,
          method: r.method,
          path: r.path,
          headers,
          agent: this.agent,
          signal: r.signal,
        },
        resolve,
      );
      req.setTimeout(this.opts.timeoutMs ?? 60_000, () => req.destroy(new UpstreamError(`upstream ${this.origin} timed out`)));
      req.once('error', (e) =>
        reject(e instanceof UpstreamError ? e : new UpstreamError(`upstream ${this.origin} unavailable: ${e.message}`)),
      );
      if (r.body) {
        pipeline(r.body, req).catch((e: Error) => req.destroy(e));
      } else req.end(r.data);
    });
  }

  /** A whole message body, up to `limit` bytes (more is an error). */
  static readBody(res: IncomingMessage, limit: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > limit) {
          res.destroy();
          return reject(new UpstreamError(`upstream response larger than ${limit} bytes`));
        }
        chunks.push(c);
      });
      res.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n)));
      res.once('error', reject);
      res.once('close', () => {
        if (!res.complete) reject(new UpstreamError('the message ended before its body was complete'));
      });
    });
  }

  close(): void {
    this.agent.destroy();
    this.raw?.close();
  }
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'authorization',
  'expect',
  'proxy-connection',
]);

/** Request or response headers without hop-by-hop ones (and without credentials). */
export function endToEnd(h: IncomingHttpHeaders, drop: readonly string[] = []): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || drop.includes(k)) continue;
    out[k] = v;
  }
  return out;
}
